"""Arrow-native, streamed reads from the operational database.

Two paths:

* **connectorx** (SQLite, PostgreSQL, SQL Server): Rust reads straight into
  Arrow record batches of a bounded size; the fastest path measured here.
* **SQLAlchemy** (any dialect, e.g. SQL Server through pymssql): server-side
  cursor with `yield_per`, rows turned into Arrow batches of the declared types.

Both take a SQL string compiled by SQLAlchemy for the source's dialect, so the
query text is the same whichever path reads it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from spanda_assets.lib.errors import ConfigError

READERS = ("auto", "connectorx", "sqlalchemy")


class BatchReader(Protocol):
    name: str

    def read(self, sql: str, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        """Yield batches whose columns are named as in the SELECT (source names)."""
        ...


def connectorx_url(url: str) -> str | None:
    """Translate a SQLAlchemy URL for connectorx, or None if connectorx cannot read it."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        if not u.database or u.database == ":memory:":
            return None
        return f"sqlite://{Path(u.database).resolve()}"
    scheme = {"postgresql": "postgresql", "mssql": "mssql"}.get(backend)
    if scheme is None:
        return None
    return u.set(drivername=scheme).render_as_string(hide_password=False)


class ConnectorXReader:
    name = "connectorx"

    def __init__(self, url: str) -> None:
        cx_url = connectorx_url(url)
        if cx_url is None:
            raise ConfigError(f"connectorx cannot read {make_url(url).get_backend_name()} sources")
        self._url = cx_url

    def read(self, sql: str, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        import connectorx as cx

        reader = cx.read_sql(self._url, sql, return_type="arrow_stream", batch_size=batch_rows)
        batch: pa.RecordBatch
        for batch in reader:
            if batch.num_rows:
                yield batch


class FallbackReader:
    """connectorx first; SQLAlchemy when connectorx cannot type a column.

    connectorx types SQLite columns by their declared type, but for declarations
    it does not know (NUMERIC, DECIMAL) it looks at the first value, and a NULL
    there stops it before any row is read. The slower SQLAlchemy path reads such
    tables instead; the casts to the declared types happen downstream either way.
    """

    def __init__(self, primary: ConnectorXReader, secondary: SqlAlchemyReader) -> None:
        self._primary = primary
        self._secondary = secondary
        self.name = primary.name
        self.fallback_reason = ""

    def read(self, sql: str, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        if self.name == self._secondary.name:  # stay on one path for the whole extract
            yield from self._secondary.read(sql, schema, batch_rows)
            return
        try:
            first = self._primary.read(sql, schema, batch_rows)
            head = next(first, None)
        except BaseException as exc:
            # connectorx reports typing problems as RuntimeError, or as a Rust panic
            # (pyo3's PanicException derives from BaseException).
            if not isinstance(exc, RuntimeError) and type(exc).__name__ != "PanicException":
                raise
            self.name = self._secondary.name
            self.fallback_reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            yield from self._secondary.read(sql, schema, batch_rows)
            return
        if head is not None:
            yield head
            yield from first


class SqlAlchemyReader:
    name = "sqlalchemy"

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, sql: str, schema: pa.Schema, batch_rows: int) -> Iterator[pa.RecordBatch]:
        with self._engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(
                sa.text(sql)
            )
            for rows in result.partitions(batch_rows):
                columns: list[Sequence[object]] = (
                    list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
                )
                arrays = [
                    _to_arrow(values, field.type)
                    for values, field in zip(columns, schema, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, names=schema.names)


def _to_arrow(values: object, arrow_type: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Let the caster report the offending row with its key.
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())  # type: ignore[attr-defined]


def make_reader(kind: str, url: str, engine: Engine) -> BatchReader:
    if kind not in READERS:
        raise ConfigError(f"SPANDA_READER must be one of {READERS}, got {kind!r}")
    if kind == "auto":
        backend = make_url(url).get_backend_name()
        kind = "connectorx" if backend in ("sqlite", "postgresql") else "sqlalchemy"
    if kind == "connectorx":
        return FallbackReader(ConnectorXReader(url), SqlAlchemyReader(engine))
    return SqlAlchemyReader(engine)


def prefetch(batches: Iterator[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Read the next batches on a thread while the caller writes the current one.

    The queue is bounded, so at most `depth` batches wait in memory.  An error on
    the reading side is re-raised in the caller.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def pump() -> None:
        try:
            for b in batches:
                while not stop.is_set():
                    try:
                        q.put(b, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:
            q.put(exc)

    thread = threading.Thread(target=pump, name="spanda-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, pa.RecordBatch)
            yield item
    finally:
        stop.set()
        # Drain so the pump thread is never stuck on a full queue.
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
