"""Superset's configuration for Spanda (SUPERSET_CONFIG_PATH points here, or at a copy).

Superset imports this file in its own virtualenv (.venv-superset, decision 0034): it
imports nothing from Spanda. Beyond Superset's defaults:

* no secret in the file: Superset reads SUPERSET_SECRET_KEY (its own variable) from
  the environment and refuses to start on its default key;
* every DuckDB connection Superset opens is locked down as `spanda sql` locks its own
  (docs/sql.md): the iceberg and avro extensions are loaded from the extension
  directory `spanda bi refresh` installed them into, then only the directories of the
  tables the file exposes (listed in its table `spanda_bi.allowed_directories`) stay
  readable, every other file, URL and ATTACH is refused, and the configuration is
  locked. A SQL Lab query or a virtual dataset therefore reads the exposed silver/gold
  tables and nothing else: bronze's files are out of reach even by path.
"""

import threading
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

# No Celery and no cache server: the dashboard's queries run in the web process, and
# a chart shows the file's current pins, not a cached answer from before a refresh.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

_LOCK_TABLE = "spanda_bi.allowed_directories"
# Connections of one process share the file's DuckDB instance: lock it once, one at a time.
_LOCKING = threading.Lock()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_duckdb(dbapi_connection: Any) -> bool:
    return type(dbapi_connection).__module__.split(".")[0] in ("duckdb", "duckdb_engine")


@event.listens_for(Engine, "connect")
def _lock_duckdb(dbapi_connection: Any, _record: Any) -> None:
    """Load the extensions, then shut DuckDB off from every file but the exposed tables'.

    A DuckDB file without Spanda's lock table is locked all the same (no file access at
    all): Superset must never be a way around the lakehouse's access rules."""
    if not _is_duckdb(dbapi_connection):
        return
    with _LOCKING:
        _lock(dbapi_connection)


def _lock(con: Any) -> None:
    # DuckDB shares one database instance between the connections a process opens on
    # the same file: a second connection (a dashboard runs its charts' queries at once)
    # finds the instance already locked by this hook, with these very settings.
    locked = con.execute("SELECT current_setting('lock_configuration')").fetchone()
    if locked and locked[0] is True:
        return
    allowed: list[str] = []
    try:
        listed = con.execute(f"SELECT directory FROM {_LOCK_TABLE}").fetchall()
    except Exception:  # not a Spanda file: nothing is readable
        listed = []
    if listed:
        con.execute("LOAD avro")
        con.execute("LOAD iceberg")
        allowed = [str(row[0]) for row in listed if row[0]]
    if allowed:
        con.execute(f"SET allowed_directories = [{', '.join(_literal(d) for d in allowed)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
