"""Connecting to the operational database and reading its declared schema.

Driver errors are turned into `SourceUnreachableError`/`SourceTableError`
messages that say which database (password hidden), which table and what to do.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from spanda_assets.lib.errors import SourceTableError, SourceUnreachableError, redact_url
from spanda_assets.lib.sources import SourceTable

_AUTH_HINTS = (
    "password authentication failed",
    "login failed",
    "authentication failed",
    "access denied",
    "18456",  # SQL Server: login failed
)


def make_engine(url: str, connect_timeout: int = 10) -> Engine:
    """An engine whose first connection fails fast instead of hanging."""
    u = make_url(url)
    backend = u.get_backend_name()
    connect_args: dict[str, object] = {}
    if backend == "postgresql":
        connect_args["connect_timeout"] = connect_timeout
    elif backend == "mssql" and u.get_driver_name() == "pymssql":
        connect_args["login_timeout"] = connect_timeout
        connect_args["timeout"] = 0
    is_file_db = backend == "sqlite" and u.database not in (None, "", ":memory:")
    if is_file_db and not Path(str(u.database)).is_file():
        raise SourceUnreachableError(
            f"no operational database at {u.database}: run `spanda seed` to create the demo "
            "database, or set SPANDA_SOURCE_URL to your database's SQLAlchemy URL"
        )
    return sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)


def explain_connect_error(url: str, exc: BaseException) -> SourceUnreachableError:
    text = str(exc).lower()
    where = redact_url(url)
    if any(h in text for h in _AUTH_HINTS):
        return SourceUnreachableError(
            f"the operational database at {where} refused the login (wrong user or password). "
            "Check the credentials in SPANDA_SOURCE_URL; nothing was read or written."
        )
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceUnreachableError(
        f"cannot reach the operational database at {where}: {redact_url(first_line)}. Check that "
        "the server is running and SPANDA_SOURCE_URL names the right host and port; nothing was "
        "read or written."
    )


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise explain_connect_error(engine.url.render_as_string(hide_password=False), exc) from exc
    except OSError as exc:
        raise explain_connect_error(engine.url.render_as_string(hide_password=False), exc) from exc


def effective_schema(engine: Engine, source: SourceTable) -> str | None:
    """SQLite has no schemas: `dbo` only applies to servers."""
    return None if engine.dialect.name == "sqlite" else source.schema


def reflect_table(engine: Engine, source: SourceTable) -> sa.Table:
    """Read the table's declared columns, checking the configured key and cursor exist."""
    schema = effective_schema(engine, source)
    label = f"{schema}.{source.table}" if schema else source.table
    try:
        table = sa.Table(source.table, sa.MetaData(), schema=schema, autoload_with=engine)
    except sa.exc.NoSuchTableError as exc:
        raise SourceTableError(
            f"source table {label} does not exist in {redact_url(str(engine.url))}. Check the "
            "name (and schema) in the sources file, or run `spanda seed` for the demo database; "
            "nothing was written."
        ) from exc
    except sa.exc.DBAPIError as exc:
        raise explain_connect_error(engine.url.render_as_string(hide_password=False), exc) from exc
    columns = [c.name for c in table.columns]
    for role, names in (("cursor", [source.cursor]), ("primary key", list(source.primary_key))):
        for name in names:
            if name not in columns:
                raise SourceTableError(
                    f"source table {label} has no {role} column {name!r} (its columns: "
                    f"{', '.join(columns)}). Fix '{role.replace(' ', '_')}' for {source.table} in "
                    "the sources file; nothing was written."
                )
    return table
