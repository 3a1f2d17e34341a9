# Apache Superset from its own lock (requirements-superset.lock): it pins SQLAlchemy < 2
# and pandas < 2.2, which the platform cannot share (decision 0034). Configured by
# spanda_assets/lib/bi/superset_config.py, which imports nothing from Spanda. Its metadata
# database is SQLite under SUPERSET_HOME (a volume); it reads the lakehouse through the
# DuckDB file `spanda bi refresh` writes.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    SUPERSET_HOME=/var/lib/superset SUPERSET_CONFIG_PATH=/opt/superset/superset_config.py \
    FLASK_APP=superset DO_NOT_TRACK=1
WORKDIR /opt/superset
COPY requirements-superset.lock ./
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache --compile-bytecode -r requirements-superset.lock \
    && useradd --create-home --uid 1002 superset \
    && mkdir -p /var/lib/superset && chown superset /var/lib/superset
COPY spanda_assets/lib/bi/superset_config.py ./superset_config.py
USER superset
EXPOSE 8088
CMD ["gunicorn", "--bind", "0.0.0.0:8088", "--workers", "2", "--timeout", "120", \
     "superset.app:create_app()"]
