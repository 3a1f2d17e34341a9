"""Read-only SQL over the lakehouse: DuckDB's iceberg extension on what readers see (main).

`spanda sql` (docs/sql.md) hands a query to `run_query`, which

1. parses it with DuckDB's own parser (`extract_statements`, `json_serialize_sql`) and
   refuses anything but one SELECT (WITH, VALUES, DESCRIBE and SUMMARIZE are SELECTs
   to DuckDB): no INSERT, COPY, ATTACH, CREATE, SET, PRAGMA or INSTALL;
2. walks the parse tree for the tables it names: lakehouse tables are
   `<namespace>.<table>` in silver, gold or bronze; table functions other than
   `range`/`generate_series`/`unnest` (read_csv, iceberg_scan, query, ...) and file
   names used as tables (`FROM 'x.parquet'`) are refused;
3. asks the access policy about every lakehouse table named, one audited decision each
   (`AccessControl.authorize_namespace(principal, "query", "gold.x", channel="cli")`):
   bronze is for stewards only; a refusal names the policy's reasons;
4. creates a DuckDB view `<namespace>.<table>` for each table named and granted, over
   `iceberg_scan('<metadata.json>')` at main's snapshot (or the snapshot `--as-of`
   picks): nothing else exists in the database, so an unpublished audit branch, a
   table the caller may not read, or a file can only be reached by name, and names are
   checked;
5. then closes the database to the outside world: `allowed_directories` lists only the
   granted tables' directories, `enable_external_access=false` turns every other file,
   URL and ATTACH away, and `lock_configuration=true` keeps the query from changing
   any of it;
6. runs the query and hands back an Arrow batch reader (results stream; nothing is
   fetched whole).

The extensions are loaded from the files the `duckdb-extension-iceberg` and
`duckdb-extension-avro` packages install (`LOAD '<path>'`), never downloaded; DuckDB's
home, extension and temp directories live under SPANDA_HOME/duckdb, so HOME need not
exist. Object-store warehouses (s3://) have no httpfs here: the same pyarrow S3
filesystem pyiceberg uses is registered with DuckDB through fsspec instead.

Time travel: `AsOf` is a snapshot id or a moment. A moment picks, for each table, the
snapshot main pointed at then (the table's snapshot log: when readers saw it, not when
it was written to the audit branch); a snapshot id must have been main's head at some
time. Unpublished audit-branch snapshots are never readable.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

import duckdb
import pyarrow as pa
from fsspec.implementations.arrow import ArrowFSWrapper
from pyiceberg.exceptions import NoSuchNamespaceError
from pyiceberg.io.pyarrow import PyArrowFileIO

from spanda_assets import settings
from spanda_assets.lib.access import ANONYMOUS, AccessControl, Decision, Principal
from spanda_assets.lib.errors import ConfigError, SpandaError
from spanda_assets.lib.lakehouse import (
    NAMESPACES,
    CatalogConfig,
    load_table_or_none,
    open_catalog,
)
from spanda_assets.lib.writes import MAIN

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

QUERYABLE = ("silver", "gold", "bronze")
# Table functions that read nothing but their arguments. Every other one (read_csv,
# read_parquet, iceberg_scan, query, duckdb_settings, ...) is refused by name.
SAFE_TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})
EXTENSIONS = ("avro", "iceberg")  # avro first: iceberg reads its manifests with it
REMOTE_SCHEMES = ("s3", "s3a", "s3n")
DEFAULT_BATCH_ROWS = 10_000
MAX_CELL_WIDTH = 40
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")  # what access control accepts as a table name
_FILE_LIKE = re.compile(r"[./\\*:?]")  # DuckDB reads a "table" named like this as a file
_DUCKDB_DIR = "duckdb"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class SqlError(SpandaError):
    """The query was refused or failed: the message says why and what to do."""


class SqlSyntaxError(SqlError):
    """DuckDB's parser refused the query; the message keeps its LINE/caret marker."""


# ------------------------------------------------------------------------------ as of


@dataclass(frozen=True)
class AsOf:
    """`--as-of`: a snapshot id (digits) or an ISO 8601 moment (UTC unless it says)."""

    snapshot_id: int | None = None
    moment: dt.datetime | None = None

    @classmethod
    def parse(cls, text: str) -> AsOf:
        raw = text.strip()
        if re.fullmatch(r"-?\d+", raw):
            return cls(snapshot_id=int(raw))
        try:
            moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a snapshot id (digits) nor an ISO 8601 time such as "
                "2026-11-30T09:00:00Z or 2026-11-30"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)
        return cls(moment=moment)

    @property
    def timestamp_ms(self) -> int | None:
        if self.moment is None:
            return None
        return (self.moment - _EPOCH) // dt.timedelta(milliseconds=1)  # exact, no float

    def describe(self) -> str:
        if self.moment is not None:
            return self.moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return f"snapshot {self.snapshot_id}"


def _iso_ms(ms: int) -> str:
    moment = _EPOCH + dt.timedelta(milliseconds=ms)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Pick:
    """Which snapshot of a table a view reads.

    snapshot_id  the snapshot (None: the table has published nothing yet, it reads empty)
    pin          pass it to iceberg_scan; unpinned reads the metadata's current snapshot
                 with the current schema (main's head is the current snapshot, and a
                 pinned scan would read that snapshot's schema, without columns added
                 since, as pyiceberg's own scan of main shows them)
    note         what `--as-of` chose, for the user
    """

    snapshot_id: int | None
    pin: bool
    note: str | None = None


def _published(table: Table) -> list[tuple[int, int]]:
    """(time main moved to it, snapshot id) for every snapshot main pointed at, oldest
    first: the snapshot log, which records main's moves (publishes, erasures, rollbacks)
    and never a commit to another branch."""
    return [(e.timestamp_ms, e.snapshot_id) for e in table.metadata.snapshot_log]


def pick_snapshot(table: Table, name: str, as_of: AsOf | None) -> Pick | None:
    """The snapshot of `table` a reader sees now or `as_of`; None when the table has no
    snapshot of that id. Raises SqlError for a snapshot readers never saw, or one that
    has expired."""
    metadata = table.metadata
    main = metadata.refs.get(MAIN)
    if as_of is None:
        if main is None:
            return Pick(None, pin=False)
        # The Iceberg spec makes main and current-snapshot-id the same; pin main if a
        # writer ever let them differ, so readers still read main.
        return Pick(main.snapshot_id, pin=main.snapshot_id != metadata.current_snapshot_id)
    log = _published(table)
    if as_of.snapshot_id is not None:
        wanted = as_of.snapshot_id
        if any(sid == wanted for _, sid in log) or (main and main.snapshot_id == wanted):
            if table.snapshot_by_id(wanted) is None:
                raise SqlError(
                    f"snapshot {wanted} of {name} has expired (snapshots are kept for "
                    "SPANDA_RETENTION_DAYS); pick a later one"
                )
            return Pick(wanted, pin=True, note=f"{name} at snapshot {wanted}")
        if table.snapshot_by_id(wanted) is not None:
            raise SqlError(
                f"snapshot {wanted} of {name} was never published on main (an audit-branch "
                "commit, or one published only as part of a later one): readers never saw "
                "it; pick a snapshot that main pointed at"
            )
        return None
    at = as_of.timestamp_ms
    assert at is not None
    seen = [(ms, sid) for ms, sid in log if ms <= at]
    if not seen:
        first = f"; the oldest main kept is of {_iso_ms(log[0][0])}" if log else ""
        raise SqlError(
            f"{name} had published nothing as of {as_of.describe()}: it was created or first "
            f"published later, or that history has expired{first}"
        )
    ms, sid = seen[-1]
    if table.snapshot_by_id(sid) is None:
        raise SqlError(
            f"{name} as of {as_of.describe()} was snapshot {sid}, which has expired "
            "(snapshots are kept for SPANDA_RETENTION_DAYS); pick a later time"
        )
    return Pick(sid, pin=True, note=f"{name} at snapshot {sid} (main since {_iso_ms(ms)})")


# ------------------------------------------------------------------------------ parsing


@dataclass(frozen=True)
class TableRef:
    """A lakehouse table the query names, at its first mention (`position`: offset)."""

    namespace: str
    name: str
    position: int

    @property
    def qualified(self) -> str:
        return f"{self.namespace}.{self.name}"


def _walk(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def _at(sql: str, position: Any) -> str:
    """' at line L, column C' for a parse-tree offset (DuckDB marks unknown ones 2**64-1)."""
    if not isinstance(position, int) or not 0 <= position <= len(sql):
        return ""
    line = sql.count("\n", 0, position) + 1
    column = position - (sql.rfind("\n", 0, position) + 1) + 1
    return f" at line {line}, column {column}"


def parse_query(con: duckdb.DuckDBPyConnection, sql: str) -> list[TableRef]:
    """Check that `sql` is one read-only SELECT and return the lakehouse tables it names.
    Raises SqlError (parse errors keep DuckDB's message with its LINE/caret marker)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlSyntaxError(_duckdb_message(exc)) from None
    if not statements:
        raise SqlError("the query is empty: give one SELECT statement")
    if len(statements) > 1:
        kinds = ", ".join(s.type.name for s in statements)
        pivot = any(s.type == duckdb.StatementType.CREATE for s in statements)
        raise SqlError(
            f"one statement at a time: the query holds {len(statements)} ({kinds})"
            + (" (a PIVOT without IN (...) creates a type first: list its values)" if pivot else "")
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise SqlError(
            f"spanda sql runs one read-only SELECT; the query is {kind.name} (the lakehouse "
            "is written by the pipeline only)"
        )
    raw = con.execute("SELECT json_serialize_sql($1)", [sql]).fetchone()
    tree = json.loads(raw[0]) if raw else {}
    if tree.get("error"):
        if tree.get("error_type") == "parser":
            raise SqlSyntaxError(str(tree.get("error_message") or "the query cannot be parsed"))
        # DuckDB types some statements SELECT that are not one (PRAGMA)
        raise SqlError(
            f"spanda sql runs one read-only SELECT; the query is not a plain SELECT "
            f"({str(sql).split(None, 1)[0].upper()} ...)"
        )
    found: dict[tuple[str, str], TableRef] = {}
    for node in _walk(tree.get("statements", [])):
        kind_name = node.get("type")
        if kind_name == "TABLE_FUNCTION":
            fn = node.get("function") or {}
            fn_name = str(fn.get("function_name", "")).lower()
            if fn_name not in SAFE_TABLE_FUNCTIONS:
                raise SqlError(
                    f"table function {fn_name}(){_at(sql, node.get('query_location'))} is not "
                    "allowed: spanda sql reads the lakehouse tables only (files, URLs, other "
                    "databases and settings are out of reach)"
                )
        elif kind_name == "BASE_TABLE":
            schema = str(node.get("schema_name") or "").lower()
            table = str(node.get("table_name") or "")
            where = _at(sql, node.get("query_location"))
            if node.get("at_clause"):
                raise SqlError(
                    f"AT (...){where} is not supported: time-travel with --as-of "
                    "SNAPSHOT_ID|TIMESTAMP, which applies to every table of the query"
                )
            if not schema:
                if _FILE_LIKE.search(table):
                    raise SqlError(
                        f"{table!r}{where} reads a file: spanda sql reads the lakehouse "
                        "tables only, by name (e.g. gold.validated_posts)"
                    )
                continue  # a CTE, or a name the binder will refuse with the table list
            if schema in QUERYABLE:
                key = (schema, table.lower())
                if key not in found:
                    found[key] = TableRef(schema, table.lower(), node.get("query_location", 0))
            elif schema in NAMESPACES:
                raise SqlError(
                    f"{schema}.{table}{where}: the {schema} namespace is not open to "
                    f"spanda sql (it reads {', '.join(QUERYABLE)})"
                )
    return list(found.values())


# ------------------------------------------------------------------------------ DuckDB


def extension_path(name: str) -> Path:
    """The extension file a `duckdb-extension-<name>` package installed for this DuckDB."""
    version = f"v{duckdb.__version__}"
    package = f"duckdb_extension_{name}"
    try:
        base = resources.files(package).joinpath("extensions")
    except ModuleNotFoundError:
        raise ConfigError(
            f"the DuckDB {name} extension is not installed: pip install "
            f"duckdb-extension-{name}=={duckdb.__version__}"
        ) from None
    path = Path(str(base)) / version / f"{name}.duckdb_extension"
    if not path.is_file():
        found = sorted(p.name for p in Path(str(base)).glob("v*")) or ["none"]
        raise ConfigError(
            f"duckdb {duckdb.__version__} needs duckdb-extension-{name}=={duckdb.__version__} "
            f"(the installed package carries {', '.join(found)})"
        )
    return path


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def locked_config(base: Path, extensions: Path) -> dict[str, str | bool | int | float | list[str]]:
    """DuckDB settings shared by every connection the platform opens: its home and temp
    directories under `base`, extensions only from `extensions`, nothing auto-installed
    or auto-loaded, no persistent secrets, and no Python variables readable as tables
    (DuckDB's replacement scans would read any DataFrame in the caller's frame)."""
    return {
        "home_directory": str(base),
        "extension_directory": str(extensions),
        "temp_directory": str(base / "tmp"),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_persistent_secrets": False,
        "python_enable_replacements": False,
    }


def open_duckdb(home: Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with iceberg and avro loaded from their package files; its
    home, extension, secret and temp directories under SPANDA_HOME/duckdb (HOME need not
    exist), nothing auto-installed or auto-loaded, and no Python variables readable as
    tables (DuckDB's replacement scans would read any DataFrame in the caller's frame)."""
    base = (home or settings.spanda_home()) / _DUCKDB_DIR
    config = locked_config(base, base / "extensions") | {"secret_directory": str(base / "secrets")}
    con = duckdb.connect(":memory:", config=config)
    try:
        for name in EXTENSIONS:
            con.execute(f"LOAD {_literal(str(extension_path(name)))}")
    except duckdb.Error as exc:
        con.close()
        raise ConfigError(f"DuckDB cannot load its iceberg extension: {exc}") from None
    except BaseException:
        con.close()
        raise
    return con


def _directory(location: str) -> str:
    """A table directory as DuckDB's allowed_directories wants it (a local path, or the
    URL for an object store), with a trailing slash so that `gold/t` does not admit
    `gold/t2`."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        path = parsed.path if parsed.scheme else location
        return str(Path(path)).rstrip("/") + "/"
    return location.rstrip("/") + "/"


def table_directories(table: Table) -> set[str]:
    """Where a table's metadata and data files live: its location, unless its properties
    moved them (`write.data.path`, `write.metadata.path`)."""
    dirs = {_directory(table.location())}
    dirs.add(_directory(table.metadata_location.rsplit("/", 1)[0]))
    for key in ("write.data.path", "write.metadata.path", "write.object-storage.path"):
        if value := table.properties.get(key):
            dirs.add(_directory(value))
    return dirs


def _scheme(location: str) -> str:
    return urlparse(location).scheme or "file"


class _ObjectStore(ArrowFSWrapper):
    """A pyarrow filesystem as fsspec, which DuckDB's Python client can register."""

    protocol = REMOTE_SCHEMES


def register_object_store(con: duckdb.DuckDBPyConnection, table: Table) -> None:
    """Let DuckDB read s3:// through the pyarrow S3 filesystem pyiceberg uses (same
    endpoint, region, credentials, path-style addressing): there is no httpfs here."""
    parsed = urlparse(table.metadata_location)
    io = table.io if isinstance(table.io, PyArrowFileIO) else PyArrowFileIO(table.io.properties)
    arrow_fs = io.fs_by_scheme(parsed.scheme, parsed.netloc)
    con.register_filesystem(_ObjectStore(arrow_fs))


# ------------------------------------------------------------------------------ the run


@dataclass
class QueryResult:
    """A running query: `batches()` streams its rows; close it (or use `with`) when done.

    tables     the snapshot each lakehouse table named was read at
    notes      what --as-of picked, in words
    decisions  the audited access decisions, one per table named
    """

    reader: pa.RecordBatchReader = field(repr=False)
    tables: dict[str, Pick]
    notes: list[str]
    decisions: list[Decision]
    con: duckdb.DuckDBPyConnection = field(repr=False)

    @property
    def schema(self) -> pa.Schema:
        return self.reader.schema

    def batches(self) -> Iterator[pa.RecordBatch]:
        """The result's record batches as DuckDB produces them; an error on the way (a
        failing cast deep in the data) is a SqlError."""
        while True:
            try:
                batch = self.reader.read_next_batch()
            except StopIteration:
                return
            except (duckdb.Error, pa.ArrowException, OSError) as exc:
                raise SqlError(str(exc).strip()) from None
            yield batch

    def write(self, fmt: str, out: IO[str]) -> int:
        """Write the rows to `out` as table, csv or json; returns how many."""
        return WRITERS[fmt](self.schema, self.batches(), out)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> QueryResult:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def queryable_tables(catalog: Catalog) -> list[str]:
    """Every table of the namespaces spanda sql serves, for error messages."""
    names = []
    for namespace in QUERYABLE:
        try:
            idents = catalog.list_tables(namespace)
        except NoSuchNamespaceError:  # not created yet
            continue
        names += sorted(".".join(ident[-2:]) for ident in idents)
    return names


def _available(catalog: Catalog) -> str:
    every = queryable_tables(catalog)
    names = [n for n in every if not n.startswith("bronze.")]
    bronze = len(names) < len(every)
    listing = ", ".join(names) or "none yet (the pipeline has not written any)"
    return f"tables: {listing}" + ("; bronze.* for stewards" if bronze else "")


def _duckdb_message(exc: duckdb.Error) -> str:
    return str(exc).strip()


def principal_for(access: AccessControl, token: str | None) -> Principal:
    """The caller: the holder of `token` (a token from spanda access token create), or
    anonymous without one. Raises Unauthenticated for a token that opens nothing."""
    if token is None or not token.strip():
        return ANONYMOUS
    return access.authenticate(f"Bearer {token.strip()}")


def _denial(ref: TableRef, decision: Decision) -> str:
    reasons = "; ".join(decision.reasons) or "the access policy does not permit it"
    if ref.namespace == "bronze":
        return (
            f"{ref.qualified}: bronze holds personal data: only a steward may query it; {reasons}"
        )
    return f"{ref.qualified}: {reasons}"


def authorize(
    access: AccessControl, principal: Principal, refs: Iterable[TableRef]
) -> list[Decision]:
    """One audited decision per table named; SqlError listing every refusal."""
    decisions, refused = [], []
    for ref in refs:
        decision = access.authorize_namespace(principal, "query", ref.qualified, channel="cli")
        decisions.append(decision)
        if not decision.allowed:
            refused.append(_denial(ref, decision))
    if refused:
        hint = (
            "pass a token with --token or SPANDA_TOKEN (spanda access token create)"
            if principal.token_id is None
            else f"the token of {principal.name!r} ({principal.role}) does not open it"
        )
        raise SqlError(
            "\n".join(refused) + f"\n({hint}; the refusal is in the audit log: spanda access audit)"
        )
    return decisions


def run_query(
    sql: str,
    *,
    as_of: AsOf | None = None,
    token: str | None = None,
    catalog: Catalog | None = None,
    access: AccessControl | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
) -> QueryResult:
    """Run one read-only SELECT over the lakehouse (see the module docstring). Raises
    SqlError for a refused or failing query, Unauthenticated for a bad token,
    ConfigError/AccessConfigError/AuditLogError when the platform cannot answer."""
    con = open_duckdb()
    try:
        cat_box: list[Catalog] = [catalog] if catalog is not None else []

        def cat() -> Catalog:
            if not cat_box:
                cat_box.append(open_catalog(CatalogConfig.from_env()))
            return cat_box[0]

        try:
            refs = parse_query(con, sql)
        except SqlSyntaxError as exc:
            raise SqlSyntaxError(f"{exc}\n{_available(cat())}") from None
        for ref in refs:
            if not _NAME.match(ref.name):
                raise SqlError(
                    f"there is no table {ref.qualified}{_at(sql, ref.position)}; "
                    f"{_available(cat())}"
                )
        control = access or AccessControl.load()
        principal = principal_for(control, token)
        decisions = authorize(control, principal, refs)

        picks: dict[str, Pick] = {}
        tables: dict[str, Table] = {}
        missing: list[str] = []
        for ref in refs:
            table = load_table_or_none(cat(), ref.namespace, ref.name)
            if table is None:
                raise SqlError(
                    f"there is no table {ref.qualified}{_at(sql, ref.position)}; "
                    f"{_available(cat())}"
                )
            pick = pick_snapshot(table, ref.qualified, as_of)
            if pick is None:
                missing.append(ref.qualified)
                continue
            picks[ref.qualified] = pick
            tables[ref.qualified] = table
        if missing:
            raise SqlError(
                f"{as_of.describe() if as_of else 'the snapshot'} is not a snapshot of "
                f"{', '.join(missing)} (or it has expired): a snapshot id belongs to one "
                "table; to see several tables as they were, give a time (--as-of "
                "2026-11-30T09:00:00Z)"
            )
        _create_views(con, picks, tables)
        notes = [p.note for p in picks.values() if p.note]
        try:
            reader = con.execute(sql).to_arrow_reader(batch_rows)
        except duckdb.Error as exc:
            raise SqlError(_explain(exc, cat)) from None
        return QueryResult(reader, picks, notes, decisions, con)
    except BaseException:
        con.close()
        raise


def _create_views(
    con: duckdb.DuckDBPyConnection, picks: dict[str, Pick], tables: dict[str, Table]
) -> None:
    """One view per granted table, then the lock: only their directories stay readable."""
    remote = None
    for qualified, table in tables.items():
        scheme = _scheme(table.metadata_location)
        if scheme in REMOTE_SCHEMES:
            remote = remote or table
        elif scheme != "file":
            raise SqlError(
                f"{qualified} lives in {scheme}://, which spanda sql cannot read (local "
                f"files and {', '.join(s + '://' for s in REMOTE_SCHEMES)} only)"
            )
    if remote is not None:
        register_object_store(con, remote)
    allowed: set[str] = set()
    for qualified, pick in picks.items():
        table = tables[qualified]
        namespace, name = qualified.split(".", 1)
        args = _literal(table.metadata_location)
        if pick.pin and pick.snapshot_id is not None:
            args += f", snapshot_from_id={int(pick.snapshot_id)}"
        try:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(namespace)}")
            con.execute(
                f"CREATE VIEW {_ident(namespace)}.{_ident(name)} AS "
                f"SELECT * FROM iceberg_scan({args})"
            )
        except duckdb.Error as exc:
            raise SqlError(f"{qualified} cannot be read: {_duckdb_message(exc)}") from None
        allowed |= table_directories(table)
    dirs = ", ".join(_literal(d) for d in sorted(allowed))
    con.execute(f"SET allowed_directories = [{dirs}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _explain(exc: duckdb.Error, catalog: Callable[[], Catalog]) -> str:
    message = _duckdb_message(exc)
    if isinstance(exc, duckdb.ParserException | duckdb.BinderException | duckdb.CatalogException):
        return f"{message}\n{_available(catalog())}"
    if isinstance(exc, duckdb.PermissionException):
        return (
            f"{message}\n(spanda sql reads the lakehouse tables only: files, URLs and other "
            "databases are out of reach)"
        )
    return message


# ------------------------------------------------------------------------------ output


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    return zip(*(column.to_pylist() for column in batch.columns), strict=True)


def _keys(names: list[str]) -> list[str]:
    """Column names as JSON keys: a repeated name gets _2, _3 (SELECT 1 a, 2 a)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


def json_value(value: Any) -> str:
    """One value as JSON text: integers and decimals as numbers (exactly: 64-bit ids stay
    whole), dates and times ISO 8601, bytes as hex, NaN/infinity as null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value) if math.isfinite(value) else "null"
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else "null"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return json.dumps(value.isoformat())
    if isinstance(value, bytes):
        return json.dumps(value.hex())
    if isinstance(value, dict):
        items = (
            f"{json.dumps(str(k), ensure_ascii=False)}:{json_value(v)}" for k, v in value.items()
        )
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def text_value(value: Any) -> str:
    """One value as CSV or table text: ISO dates, true/false, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict | list | tuple):
        return json_value(value)
    return str(value)


Batches = Iterable[pa.RecordBatch]


def write_json(schema: pa.Schema, batches: Batches, out: IO[str]) -> int:
    """A JSON array of objects, one per line, written as the batches arrive."""
    keys = [json.dumps(k, ensure_ascii=False) + ":" for k in _keys(schema.names)]
    count = 0
    out.write("[")
    for batch in batches:
        for row in _rows(batch):
            out.write(",\n" if count else "\n")
            out.write(
                "{" + ",".join(k + json_value(v) for k, v in zip(keys, row, strict=True)) + "}"
            )
            count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def write_csv(schema: pa.Schema, batches: Batches, out: IO[str]) -> int:
    """A header line, then one line per row (NULL is an empty field)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(schema.names)
    count = 0
    for batch in batches:
        for row in _rows(batch):
            writer.writerow([text_value(v) for v in row])
            count += 1
    return count


_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _cell(value: Any, width: int, numeric: bool = False) -> str:
    """A value cut to `width` characters; a number is never cut (it would lie)."""
    text = "NULL" if value is None else text_value(value).translate(_CONTROL)
    return text if numeric or len(text) <= width else text[: width - 1] + "…"


def _numeric(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    )


def write_table(
    schema: pa.Schema, batches: Batches, out: IO[str], max_width: int = MAX_CELL_WIDTH
) -> int:
    """Aligned columns; widths come from the header and the first batch, cells longer than
    `max_width` (or than their column, for later batches) end in '…'; numbers are never
    cut. Streams: later batches keep the widths."""
    names = schema.names
    right = [_numeric(f.type) for f in schema]
    rest = iter(batches)
    first = next(rest, None)
    head_rows = list(_rows(first)) if first is not None else []
    widths = [min(max(len(n), 1), max_width) for n in names]
    for row in head_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(_cell(value, max_width, right[i])))

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return " | ".join(parts).rstrip() + "\n"

    out.write(line([_cell(n, w) for n, w in zip(names, widths, strict=True)]))
    out.write("-+-".join("-" * w for w in widths) + "\n")
    count = 0
    for rows in _chain(head_rows, rest):
        for row in rows:
            cells = [_cell(v, w, r) for v, w, r in zip(row, widths, right, strict=True)]
            out.write(line(cells))
            count += 1
    out.write(f"({count} row{'' if count == 1 else 's'})\n")
    return count


def _chain(
    head: list[tuple[Any, ...]], batches: Iterator[pa.RecordBatch]
) -> Iterator[Iterable[tuple[Any, ...]]]:
    yield head
    for batch in batches:
        yield _rows(batch)


WRITERS: dict[str, Callable[[pa.Schema, Batches, IO[str]], int]] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
}
