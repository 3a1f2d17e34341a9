"""Incremental, crash-safe extract of one source table into `bronze.<name>`.

The algorithm, and why it is exact:

1. The watermark (highest cursor value already in bronze) lives in the summary
   of the Iceberg snapshot that wrote those rows. Data and watermark therefore
   commit together or not at all: a crash before a commit leaves the old
   watermark with the old data, a crash after leaves both new.
2. Each run reads `cursor >= watermark ORDER BY cursor`, streamed in bounded
   Arrow batches, and commits every `commit_rows` rows with the highest cursor
   committed so far. The comparison is *inclusive* so that rows sharing the
   watermark's cursor value (a non-unique ModifiedAt, a row committed late with
   the same timestamp) are never skipped; rows at exactly the watermark that
   bronze already holds are dropped by key (append) or merged as unchanged
   (upsert), so nothing is duplicated.
3. Rows whose cursor is NULL cannot be ordered; each run reads them separately
   and keeps those bronze lacks (append) or merges them (upsert). Their cost
   grows with the number of NULL-cursor rows, not with the table.

Cost grows with new rows: the source query is a range scan on the cursor and
the dedupe looks up only bronze rows at the watermark value (pruned by Iceberg
file statistics).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import BooleanExpression, IsNull, Reference
from pyiceberg.table import Table
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect, Engine

from spanda_assets.lib import arrow_types, faults
from spanda_assets.lib.errors import ConcurrentExtractError
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.readers import BatchReader, prefetch
from spanda_assets.lib.source_db import effective_schema, reflect_table
from spanda_assets.lib.sources import SourceTable
from spanda_assets.lib.writes import (
    NO_RETRY,
    eq_filter,
    latest_per_key,
    merge_rows,
    read_state,
    remember_state,
    row_count,
)

log = logging.getLogger(__name__)

WATERMARK_KEY = "spanda.watermark"
RUN_KEY = "spanda.run-id"


# --------------------------------------------------------------------------- watermark


@dataclass(frozen=True)
class Watermark:
    """The highest cursor value committed to bronze, with its type for the SQL bind."""

    column: str
    kind: str
    value: Any

    def to_json(self) -> str:
        v = self.value
        if isinstance(v, dt.datetime | dt.date):
            raw: Any = v.isoformat()
        elif isinstance(v, Decimal):
            raw = str(v)
        else:
            raw = v
        return json.dumps({"column": self.column, "type": self.kind, "value": raw})

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        d = json.loads(text)
        kind, raw = d["type"], d["value"]
        value: Any
        if kind == "timestamp":
            value = dt.datetime.fromisoformat(raw)
        elif kind == "date":
            value = dt.date.fromisoformat(raw)
        elif kind == "decimal":
            value = Decimal(raw)
        else:
            value = raw
        return cls(column=d["column"], kind=kind, value=value)

    def display(self) -> str:
        return "none" if self.value is None else str(self.value)


def _kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "string"


def read_watermark(table: Table) -> Watermark | None:
    """The watermark of the newest extract commit (lib/writes.read_state).

    Snapshots written by other operations (a compaction, a manual delete) carry
    none and are skipped; their ancestors' watermark still describes the data,
    and after those ancestors expired the table property copy does.
    """
    raw = read_state(table, WATERMARK_KEY, (WATERMARK_KEY,)).get(WATERMARK_KEY)
    return Watermark.from_json(raw) if raw else None


# --------------------------------------------------------------------------- SQL


def _bound(watermark: Watermark, dialect_name: str) -> Any:
    """The watermark as a SQL value of the cursor's type.

    SQL Server's legacy DATETIME rejects strings with six fractional digits, so
    the literal is cast to DATETIME2 there; other dialects compare the plain
    literal (a CAST would turn SQLite's text timestamps into numbers).
    """
    if dialect_name == "mssql" and watermark.kind == "timestamp":
        return sa.cast(sa.literal(watermark.value, sa.DateTime()), mssql.DATETIME2(6))
    return watermark.value


def build_select(
    table: sa.Table,
    source: SourceTable,
    watermark: Watermark | None,
    null_cursor: bool = False,
    dialect_name: str = "",
) -> sa.Select[Any]:
    """The incremental query: inclusive range on the cursor, ordered by it."""
    cursor = table.c[source.cursor]
    stmt = sa.select(*table.columns)
    if null_cursor:
        return stmt.where(cursor.is_(None)).order_by(*[table.c[k] for k in source.primary_key])
    if watermark is not None:
        stmt = stmt.where(cursor >= _bound(watermark, dialect_name))
    else:
        stmt = stmt.where(cursor.is_not(None))
    order = [cursor] + [table.c[k] for k in source.primary_key if k != source.cursor]
    return stmt.order_by(*order)


def compile_sql(stmt: sa.Select[Any], dialect: Dialect) -> str:
    """Render with literal values: connectorx takes plain SQL text, not bind parameters."""
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


# --------------------------------------------------------------------------- result


@dataclass
class ExtractResult:
    table: str
    source: str
    mode: str
    reader: str
    rows_read: int = 0
    rows_inserted: int = 0
    rows_updated: int = 0
    rows_skipped_duplicate: int = 0
    null_cursor_rows: int = 0
    commits: int = 0
    total_rows: int = 0
    watermark_before: str = "none"
    watermark_after: str = "none"
    snapshot_id: int | None = None
    full_load: bool = False
    columns_added: list[str] = field(default_factory=list)
    columns_widened: list[str] = field(default_factory=list)
    columns_missing_in_source: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --------------------------------------------------------------------------- table setup


def _table_properties(source: SourceTable, names: dict[str, str]) -> dict[str, str]:
    return {
        "spanda.source-table": source.qualified,
        "spanda.mode": source.mode,
        "spanda.cursor": source.cursor,
        "spanda.primary-key": ",".join(source.primary_key),
        "spanda.column-map": json.dumps(names),
        "write.parquet.compression-codec": "zstd",
        # pyiceberg retries a refused commit by rebasing it onto the newer snapshot.
        # For a table whose commits carry a watermark that would duplicate rows:
        # a concurrent writer must make this commit fail instead.
        NO_RETRY: "0",
    }


def _create_table(
    catalog: Catalog, source: SourceTable, schema: pa.Schema, names: dict[str, str]
) -> Table:
    ensure_namespace(catalog, "bronze")
    table = catalog.create_table_if_not_exists(
        source.bronze_identifier, schema=schema, properties=_table_properties(source, names)
    )
    return table


def _ensure_identifier_fields(table: Table, key_cols: list[str]) -> None:
    current = {table.schema().find_column_name(i) for i in table.schema().identifier_field_ids}
    if current != set(key_cols):
        with table.update_schema() as upd:
            upd.set_identifier_fields(*key_cols)


def _arrow_target(table: Table) -> pa.Schema:
    """The bronze table's schema as Arrow, with plain (not large) strings."""
    fields = [
        pa.field(f.name, arrow_types.normalize(f.type), nullable=f.nullable)
        for f in table.schema().as_arrow()
    ]
    return pa.schema(fields)


def _keys_at(table: Table, pk: list[str], row_filter: BooleanExpression) -> pa.Table:
    return table.scan(row_filter=row_filter, selected_fields=tuple(pk)).to_arrow()


def _drop_known(batch: pa.Table, known: pa.Table, pk: list[str]) -> pa.Table:
    if known.num_rows == 0 or batch.num_rows == 0:
        return batch
    known = known.cast(pa.schema([batch.schema.field(k) for k in pk]))
    kept = batch.join(known, keys=pk, join_type="left anti")
    # A join forgets nullability: restore the bronze schema (required keys).
    return kept.select(batch.schema.names).cast(batch.schema)


# --------------------------------------------------------------------------- main


def extract_table(
    *,
    engine: Engine,
    reader: BatchReader,
    catalog: Catalog,
    source: SourceTable,
    batch_rows: int,
    commit_rows: int,
    full_refresh: bool = False,
    run_id: str = "",
) -> ExtractResult:
    """Bring bronze.<source.name> up to date with the source table. Idempotent."""
    started = time.perf_counter()
    sa_table = reflect_table(engine, source)
    schema_name = effective_schema(engine, source)
    label = f"{schema_name}.{source.table}" if schema_name else source.table
    source_arrow, names = arrow_types.reflected_schema(
        sa_table, engine.dialect, label, list(source.primary_key), source.column_types
    )
    bronze_of = {v: k for k, v in names.items()}
    pk = [bronze_of[k] for k in source.primary_key]
    cursor_col = bronze_of[source.cursor]
    result = ExtractResult(
        table=f"bronze.{source.name}", source=label, mode=source.mode, reader=reader.name
    )

    table = load_table_or_none(catalog, "bronze", source.name)
    if table is not None and full_refresh:
        catalog.drop_table(source.bronze_identifier)
        table = None
    if table is None:
        table = _create_table(catalog, source, source_arrow, names)
    plan = arrow_types.plan_schema(
        f"bronze.{source.name}", _arrow_target(table), source_arrow, names
    )
    if plan.add_columns or plan.widen_columns:
        with table.update_schema() as upd:
            upd.union_by_name(pa.schema(list(plan.add_columns) + list(plan.widen_columns)))
        result.columns_added = [f.name for f in plan.add_columns]
        result.columns_widened = [f.name for f in plan.widen_columns]
    result.columns_missing_in_source = list(plan.missing_in_source)
    _ensure_identifier_fields(table, pk)
    if table.properties.get(NO_RETRY) != "0":
        with table.transaction() as tx:
            tx.set_properties({NO_RETRY: "0"})

    target = _arrow_target(table)
    watermark = read_watermark(table)
    result.watermark_before = watermark.display() if watermark else "none"
    empty_at_start = row_count(table) == 0
    result.full_load = watermark is None
    cursor_kind = _kind(target.field(cursor_col).type)

    def to_bronze(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for b in batches:
            renamed = b.rename_columns([bronze_of[c] for c in b.schema.names])
            yield arrow_types.cast_batch(renamed, target, result.table, pk, names)

    committed = [watermark]
    upsert = source.mode == "upsert"
    # Keys a first load of an upsert table has committed: a key the source sends again
    # (a declared key that is not unique there) is merged, not appended twice.
    loaded = _KeysSeen(pk)

    def commit(rows: pa.Table, wm: Watermark | None, append_only: bool) -> None:
        props = {RUN_KEY: run_id or "manual", "spanda.rows-read": str(rows.num_rows)}
        if wm is not None:
            props[WATERMARK_KEY] = wm.to_json()
        tx = table.transaction()
        if upsert:
            rows = latest_per_key(rows, pk, cursor_col)
        if not upsert:
            tx.append(rows, snapshot_properties=props)
            result.rows_inserted += rows.num_rows
        elif append_only:
            again = loaded.repeated(rows)
            fresh = rows.filter(pc.invert(again)) if again is not None else rows
            tx.append(fresh, snapshot_properties=props)
            result.rows_inserted += fresh.num_rows
            if again is not None:
                _, updated = merge_rows(tx, table, rows.filter(again), pk, props)
                result.rows_updated += updated
            loaded.add(rows)
        else:
            inserted, updated = merge_rows(tx, table, rows, pk, props, cursor=cursor_col)
            result.rows_inserted += inserted
            result.rows_updated += updated
            if inserted == 0 and updated == 0:
                if wm == committed[0]:
                    return  # re-read rows at the watermark, all unchanged: nothing to commit
                # Nothing changed, but the watermark must still move forward.
                tx.append(rows.slice(0, 0), snapshot_properties=props)
        if wm is not None:
            remember_state(tx, {WATERMARK_KEY: props[WATERMARK_KEY]})
        faults.point("before_commit")
        try:
            tx.commit_transaction()
        except CommitFailedException as exc:
            raise ConcurrentExtractError(
                f"{result.table}: the commit was refused because another writer changed the "
                f"table during this run ({exc}). Nothing from this batch was committed; "
                f"{result.commits} earlier commit(s) of this run stand with their watermark. "
                "Two extracts of one table must not overlap: check the table's Dagster pool "
                "limit. Re-running continues from the committed watermark."
            ) from exc
        committed[0] = wm
        result.commits += 1
        faults.point("after_commit")

    # -- rows with a cursor, from the watermark on ---------------------------------------
    stmt = build_select(sa_table, source, watermark, dialect_name=engine.dialect.name)
    sql = compile_sql(stmt, engine.dialect)
    log.info("extract %s -> %s from watermark %s", label, result.table, result.watermark_before)
    known_at_wm = pa.table({})
    if watermark is not None and source.mode == "append":
        wm_value = watermark.value
        known_at_wm = _keys_at(table, pk, eq_filter(cursor_col, wm_value))
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    wm_after = watermark
    source_arrow_named = pa.schema([pa.field(names[f.name], f.type) for f in source_arrow])
    for batch in to_bronze(prefetch(reader.read(sql, source_arrow_named, batch_rows))):
        result.rows_read += batch.num_rows
        fresh = [batch]
        if known_at_wm.num_rows:
            t = _drop_known(pa.Table.from_batches([batch]), known_at_wm, pk)
            result.rows_skipped_duplicate += batch.num_rows - t.num_rows
            fresh = t.to_batches()
        pending.extend(fresh)
        pending_rows += sum(b.num_rows for b in fresh)
        if pending_rows >= commit_rows:
            rows = pa.Table.from_batches(pending)
            wm_after = _max_watermark(rows, cursor_col, source.cursor, cursor_kind, wm_after)
            commit(rows, wm_after, append_only=empty_at_start)
            faults.point("after_batch_commit")
            pending, pending_rows = [], 0
    if pending:
        rows = pa.Table.from_batches(pending)
        wm_after = _max_watermark(rows, cursor_col, source.cursor, cursor_kind, wm_after)
        commit(rows, wm_after, append_only=empty_at_start)

    # -- rows whose cursor is NULL ------------------------------------------------------------
    null_sql = compile_sql(build_select(sa_table, source, None, null_cursor=True), engine.dialect)
    null_batches = list(to_bronze(reader.read(null_sql, source_arrow_named, batch_rows)))
    if null_batches:
        rows = pa.Table.from_batches(null_batches)
        result.null_cursor_rows = rows.num_rows
        result.rows_read += rows.num_rows
        if source.mode == "append":
            known = _keys_at(table, pk, IsNull(term=Reference(cursor_col)))
            fresh = _drop_known(rows, known, pk)
            result.rows_skipped_duplicate += rows.num_rows - fresh.num_rows
            rows = fresh
        if rows.num_rows:
            commit(rows, wm_after, append_only=False)

    result.reader = reader.name
    table.refresh()
    snap = table.current_snapshot()
    result.snapshot_id = snap.snapshot_id if snap else None
    result.total_rows = row_count(table)
    result.watermark_after = wm_after.display() if wm_after else "none"
    result.seconds = round(time.perf_counter() - started, 3)
    return result


class _KeysSeen:
    """The keys a first load has committed so far (one narrow column, for the load's length)."""

    def __init__(self, pk: list[str]) -> None:
        self.pk = pk
        self.chunks: list[pa.Array] = []

    def _keys(self, rows: pa.Table) -> pa.Array:
        if len(self.pk) == 1:
            return rows.column(self.pk[0]).combine_chunks()
        parts = [pc.cast(rows.column(k), pa.string()) for k in self.pk]
        return pc.binary_join_element_wise(*parts, "\x1f").combine_chunks()

    def repeated(self, rows: pa.Table) -> pa.ChunkedArray | None:
        """A mask of the rows whose key was already committed, or None if there are none."""
        if not self.chunks:
            return None
        seen = pa.chunked_array(self.chunks)
        mask = pc.is_in(self._keys(rows), value_set=seen.combine_chunks())
        return pa.chunked_array([mask]) if pc.any(mask).as_py() else None

    def add(self, rows: pa.Table) -> None:
        self.chunks.append(self._keys(rows))


def _max_watermark(
    rows: pa.Table, column: str, source_column: str, kind: str, previous: Watermark | None
) -> Watermark | None:
    top = pc.max(rows.column(column)).as_py()
    if top is None:
        return previous
    if previous is not None and previous.value is not None and previous.value > top:
        return previous
    return Watermark(column=source_column, kind=kind, value=top)


def pending_rows(engine: Engine, catalog: Catalog, source: SourceTable) -> tuple[int, str]:
    """How many source rows lie past bronze's watermark, and the source's top cursor value.

    A COUNT over the cursor range: with an index on the cursor this costs the
    new rows, not the table. Used by the sensor to start a run only when needed.
    """
    sa_table = reflect_table(engine, source)
    table = load_table_or_none(catalog, "bronze", source.name)
    wm = read_watermark(table) if table is not None else None
    cursor = sa_table.c[source.cursor]
    stmt = sa.select(sa.func.count(), sa.func.max(cursor)).select_from(sa_table)
    if wm is not None:
        stmt = stmt.where(cursor > _bound(wm, engine.dialect.name))
    with engine.connect() as conn:
        count, top = conn.execute(stmt).one()
    return int(count or 0), "" if top is None else str(top)
