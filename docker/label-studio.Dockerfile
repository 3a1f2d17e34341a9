# Label Studio from its own lock (requirements-label-studio.lock): its pins (pandas 3,
# pyarrow < 25) cannot share the platform's environment (docs/decisions/0028). The
# platform speaks to it over HTTP only.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LABEL_STUDIO_BASE_DATA_DIR=/label-studio/data
WORKDIR /opt/label-studio
COPY requirements-label-studio.lock ./
RUN pip install --no-cache-dir "uv==0.13.9" \
    && uv pip install --system --no-cache --compile-bytecode -r requirements-label-studio.lock \
    && useradd --create-home --uid 1001 labelstudio \
    && mkdir -p /label-studio/data && chown labelstudio /label-studio/data
USER labelstudio
EXPOSE 8080
# --internal-host: listen on the container's network (the port is published on 127.0.0.1).
CMD ["label-studio", "start", "--no-browser", "--internal-host", "0.0.0.0", "-p", "8080", \
     "--data-dir", "/label-studio/data"]
