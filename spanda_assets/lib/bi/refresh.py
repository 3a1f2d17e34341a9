"""The DuckDB file BI tools read: each exposed table as main published it, pinned.

`spanda bi refresh`, the build of the Superset dashboard and the asset
`bi/lakehouse_file` write SPANDA_HOME/bi/lakehouse.duckdb (decision 0034):

* for every table of the exposed namespaces (gold by default; silver on request; never
  bronze, which holds personal data, nor submissions), a table `<namespace>.<table>`
  holding the rows of main at the snapshot main held at refresh time, so every chart of
  a dashboard reads one consistent set of snapshots until the next refresh;
* `spanda_bi.snapshots`: which snapshot each table holds and when main published it;
* `spanda_bi.allowed_directories`: the directories a BI connection may read (Superset's
  configuration locks every DuckDB connection to them, lib/bi/superset_config.py):
  none for a copied file, so a SQL Lab user reads the file's tables and nothing else.

Copying is the default because a directory cannot be opened halfway: a connection
allowed to read a table's directory (for a view over `iceberg_scan`) can also read
every data file in it with `read_parquet`, and every snapshot with `snapshot_from_id`,
which includes rows an audit branch holds back and rows erased after a consent
withdrawal. `copy=False` (`--views`) makes zero-copy views instead, with the iceberg and
avro extensions installed beside the file from their PyPI package files: for one
trusted analyst on the platform's host, never for a shared Superset. Tables on object
storage are always copied (the BI host then needs no storage credentials).

The file is written next to the old one and renamed over it, so a reader sees the old
set of pins or the new one, never a mix. Superset opens a connection per query
(NullPool), so the next query after a refresh reads the new file.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import duckdb
from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.table.snapshots import ancestors_of

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.sql import (
    EXTENSIONS,
    extension_path,
    locked_config,
    pick_snapshot,
    table_directories,
)

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

# Only the de-identified, audited layers may leave the platform through BI.
EXPOSABLE = ("gold", "silver")
DEFAULT_NAMESPACES = ("gold",)
BI_DIR = "bi"
FILE_NAME = "lakehouse.duckdb"
EXTENSION_DIR = "duckdb_extensions"
META_SCHEMA = "spanda_bi"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Exposed:
    """One table the file exposes, and the snapshot its view reads (None: main holds
    nothing yet; the view is an empty table of the table's schema)."""

    qualified: str
    snapshot_id: int | None
    metadata_location: str
    published_at: dt.datetime | None
    mode: str  # view | copy | empty


@dataclass
class Refreshed:
    path: Path
    extension_directory: Path
    copy: bool
    tables: list[Exposed] = field(default_factory=list)
    seconds: float = 0.0

    def snapshot_of(self, qualified: str) -> int | None:
        return next(t.snapshot_id for t in self.tables if t.qualified == qualified)


def bi_dir(home: Path | None = None) -> Path:
    return (home or settings.spanda_home()) / BI_DIR


def default_path(home: Path | None = None) -> Path:
    """Where the BI file lives: SPANDA_HOME/bi/lakehouse.duckdb."""
    return bi_dir(home) / FILE_NAME


def extension_directory(path: Path) -> Path:
    """The extensions a reader loads live beside the file (one directory to mount)."""
    return path.parent / EXTENSION_DIR


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _published_at(table: Table, snapshot_id: int | None) -> dt.datetime | None:
    """When main moved to `snapshot_id` (the snapshot log's last entry for it)."""
    moments = [e.timestamp_ms for e in table.metadata.snapshot_log if e.snapshot_id == snapshot_id]
    if not moments:
        return None
    return _EPOCH + dt.timedelta(milliseconds=moments[-1])


def _check_namespaces(namespaces: tuple[str, ...]) -> None:
    refused = [n for n in namespaces if n not in EXPOSABLE]
    if refused or not namespaces:
        raise ConfigError(
            f"BI may expose {' and '.join(EXPOSABLE)} only (bronze holds personal data); "
            f"refused: {', '.join(refused) or 'nothing asked'}"
        )


def _open(path: Path, ext_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), config=locked_config(path.parent, ext_dir))


def _install_extensions(con: duckdb.DuckDBPyConnection) -> None:
    """Copy the package files into the extension directory (a reader's `LOAD iceberg`
    finds them there) and load them here to check the views bind."""
    for name in EXTENSIONS:
        con.execute(f"FORCE INSTALL {_literal(str(extension_path(name)))}")
        con.execute(f"LOAD {name}")


def refresh(
    catalog: Catalog | None = None,
    path: Path | None = None,
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES,
    copy: bool = True,
) -> Refreshed:
    """Write the BI file for the tables of `namespaces` at main's current snapshots.

    Raises ConfigError for bronze or submissions."""
    _check_namespaces(namespaces)
    started = time.perf_counter()
    cat = catalog or open_catalog(CatalogConfig.from_env())
    target = (path or default_path()).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    (target.parent / "tmp").mkdir(exist_ok=True)
    ext_dir = extension_directory(target)
    ext_dir.mkdir(exist_ok=True)
    # unique across hosts and containers that share the directory (a pid is not)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    result = Refreshed(target, ext_dir, copy)
    allowed: set[str] = set()
    con = _open(tmp, ext_dir)
    try:
        if not copy:
            _install_extensions(con)
        for namespace in namespaces:
            con.execute(f"CREATE SCHEMA {_ident(namespace)}")
            try:
                names = sorted(ident[-1] for ident in cat.list_tables(namespace))
            except NoSuchNamespaceError:  # not created yet: it exposes nothing (any other
                # failure, a catalog outage, must not replace a good file by an empty one)
                names = []
            for name in names:
                table = cat.load_table((namespace, name))
                exposed = _expose(con, table, namespace, name, copy)
                if exposed.mode == "view":
                    allowed |= table_directories(table)
                result.tables.append(exposed)
        _write_meta(con, result.tables, sorted(allowed))
        con.execute("CHECKPOINT")
    except BaseException:
        con.close()
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".wal").unlink(missing_ok=True)
        raise
    con.close()
    os.replace(tmp, target)
    result.seconds = time.perf_counter() - started
    return result


def _expose(
    con: duckdb.DuckDBPyConnection, table: Table, namespace: str, name: str, copy: bool
) -> Exposed:
    qualified = f"{namespace}.{name}"
    pick = pick_snapshot(table, qualified, None)
    snapshot_id = pick.snapshot_id if pick else None
    target = f"{_ident(namespace)}.{_ident(name)}"
    published = _published_at(table, snapshot_id)
    if snapshot_id is None:
        # Nothing published yet: an empty table of the right columns, nothing to read.
        empty = table.schema().as_arrow().empty_table()
        con.register("_spanda_empty", empty)
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM _spanda_empty")
        con.unregister("_spanda_empty")
        return Exposed(qualified, None, table.metadata_location, published, "empty")
    scheme = urlparse(table.metadata_location).scheme or "file"
    if copy or scheme != "file":
        reader = table.scan(snapshot_id=snapshot_id).to_arrow_batch_reader()
        con.register("_spanda_rows", reader)
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM _spanda_rows")
        con.unregister("_spanda_rows")
        return Exposed(qualified, snapshot_id, table.metadata_location, published, "copy")
    args = f"{_literal(table.metadata_location)}, snapshot_from_id={int(snapshot_id)}"
    con.execute(f"CREATE VIEW {target} AS SELECT * FROM iceberg_scan({args})")
    con.execute(f"SELECT * FROM {target} LIMIT 0")  # binds now, not in a reader
    return Exposed(qualified, snapshot_id, table.metadata_location, published, "view")


def _write_meta(con: duckdb.DuckDBPyConnection, tables: list[Exposed], allowed: list[str]) -> None:
    con.execute(f"CREATE SCHEMA {META_SCHEMA}")
    con.execute(
        f"CREATE TABLE {META_SCHEMA}.snapshots (table_name VARCHAR NOT NULL, snapshot_id "
        "BIGINT, metadata_location VARCHAR, published_at TIMESTAMPTZ, mode VARCHAR NOT NULL, "
        "refreshed_at TIMESTAMPTZ NOT NULL)"
    )
    now = dt.datetime.now(dt.UTC)
    for t in tables:
        con.execute(
            f"INSERT INTO {META_SCHEMA}.snapshots VALUES (?, ?, ?, ?, ?, ?)",
            [t.qualified, t.snapshot_id, t.metadata_location, t.published_at, t.mode, now],
        )
    con.execute(f"CREATE TABLE {META_SCHEMA}.allowed_directories (directory VARCHAR NOT NULL)")
    for directory in allowed:
        con.execute(f"INSERT INTO {META_SCHEMA}.allowed_directories VALUES (?)", [directory])


def read_pins(path: Path) -> dict[str, int | None]:
    """The snapshot each view of the BI file reads: {'gold.x': snapshot id}."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            f"SELECT table_name, snapshot_id FROM {META_SCHEMA}.snapshots"
        ).fetchall()
    finally:
        con.close()
    return {str(name): (int(sid) if sid is not None else None) for name, sid in rows}


def off_main(catalog: Catalog, pins: dict[str, int | None]) -> list[str]:
    """The views (of `read_pins`) pinned to a snapshot main never held: an audit branch's
    unpublished head, or a snapshot of another table. Main's history counts (a refresh
    taken before main moved on is stale, not wrong); an empty view is on main."""
    wrong = []
    for qualified, snapshot_id in sorted(pins.items()):
        if snapshot_id is None:
            continue
        table = catalog.load_table(tuple(qualified.split(".")))
        head = table.current_snapshot()
        history = ancestors_of(head, table.metadata) if head is not None else []
        if not any(s.snapshot_id == snapshot_id for s in history):
            wrong.append(qualified)
    return wrong
