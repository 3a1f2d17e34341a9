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

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import BooleanExpression, IsNull, Reference
from pyiceberg.table import Table
from sqlalchemy.engine import Engine

from spanda_assets.lib import arrow_types, faults
from spanda_assets.lib.errors import ConcurrentExtractError
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.readers import BatchReader, prefetch
from spanda_assets.lib.source_db import effective_schema, reflect_table
from spanda_assets.lib.sources import SourceTable
from spanda_assets.lib.watermark import (
    WATERMARK_KEY,
    Watermark,
    advance,
    build_select,
    compile_sql,
    cursor_kind,
    read_watermark,
    sql_bound,
)
from spanda_assets.lib.writes import (
    NO_RETRY,
    eq_filter,
    latest_per_key,
    merge_rows,
    remember_state,
    row_count,
)

log = logging.getLogger(__name__)

RUN_KEY = "spanda.run-id"


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


@dataclass(frozen=True)
class _Target:
    """What one extract writes to: the bronze table and how source columns map onto it."""

    table: Table
    schema: pa.Schema  # the bronze table's Arrow schema, rows are cast to it
    source_schema: pa.Schema  # what the reader yields: source names and types
    names: dict[str, str]  # bronze column -> source column
    bronze_of: dict[str, str]  # source column -> bronze column
    pk: list[str]  # bronze key columns
    cursor: str  # bronze cursor column


def _prepare(
    engine: Engine, catalog: Catalog, source: SourceTable, full_refresh: bool, result: ExtractResult
) -> tuple[_Target, sa.Table]:
    """Create or evolve `bronze.<name>` so that it can take the source's rows as they are now."""
    sa_table = reflect_table(engine, source)
    source_arrow, names = arrow_types.reflected_schema(
        sa_table, engine.dialect, result.source, list(source.primary_key), source.column_types
    )
    bronze_of = {v: k for k, v in names.items()}
    pk = [bronze_of[k] for k in source.primary_key]

    table = load_table_or_none(catalog, "bronze", source.name)
    if table is not None and full_refresh:
        catalog.drop_table(source.bronze_identifier)
        table = None
    if table is None:
        table = _create_table(catalog, source, source_arrow, names)
    plan = arrow_types.plan_schema(result.table, _arrow_target(table), source_arrow, names)
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
    target = _Target(
        table=table,
        schema=_arrow_target(table),
        source_schema=pa.schema([pa.field(names[f.name], f.type) for f in source_arrow]),
        names=names,
        bronze_of=bronze_of,
        pk=pk,
        cursor=bronze_of[source.cursor],
    )
    return target, sa_table


class _BronzeWriter:
    """Commits batches of one extract, each with the watermark its rows reach.

    Its state is what the run has committed so far: the last watermark (so an
    unchanged re-read at the watermark commits nothing), and, for the first
    load of an upsert table, the keys already written (so a key the source sends
    twice is merged, not appended twice).
    """

    def __init__(
        self, target: _Target, source: SourceTable, run_id: str, result: ExtractResult
    ) -> None:
        self.target = target
        self.upsert = source.mode == "upsert"
        self.run_id = run_id or "manual"
        self.result = result
        self.committed: Watermark | None = read_watermark(target.table)
        self.loaded = _KeysSeen(target.pk)

    def to_bronze(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """Source batches renamed to bronze columns and cast to bronze types."""
        t = self.target
        for b in batches:
            renamed = b.rename_columns([t.bronze_of[c] for c in b.schema.names])
            yield arrow_types.cast_batch(renamed, t.schema, self.result.table, t.pk, t.names)

    def commit(self, rows: pa.Table, wm: Watermark | None, append_only: bool) -> None:
        """One atomic commit of `rows` with watermark `wm`; `append_only` on a first load."""
        t, result = self.target, self.result
        props = {RUN_KEY: self.run_id, "spanda.rows-read": str(rows.num_rows)}
        if wm is not None:
            props[WATERMARK_KEY] = wm.to_json()
        tx = t.table.transaction()
        if not self.upsert:
            tx.append(rows, snapshot_properties=props)
            result.rows_inserted += rows.num_rows
        else:
            rows = latest_per_key(rows, t.pk, t.cursor)
            if append_only:
                again = self.loaded.repeated(rows)
                fresh = rows.filter(pc.invert(again)) if again is not None else rows
                tx.append(fresh, snapshot_properties=props)
                result.rows_inserted += fresh.num_rows
                if again is not None:
                    _, updated = merge_rows(tx, t.table, rows.filter(again), t.pk, props)
                    result.rows_updated += updated
                self.loaded.add(rows)
            else:
                inserted, updated = merge_rows(tx, t.table, rows, t.pk, props, cursor=t.cursor)
                result.rows_inserted += inserted
                result.rows_updated += updated
                if inserted == 0 and updated == 0:
                    if wm == self.committed:
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
        self.committed = wm
        result.commits += 1
        faults.point("after_commit")


def _extract_from_watermark(
    writer: _BronzeWriter,
    reader: BatchReader,
    sql: str,
    source: SourceTable,
    batch_rows: int,
    commit_rows: int,
) -> Watermark | None:
    """Rows with a cursor, from the watermark on, committed every `commit_rows` rows."""
    t, result = writer.target, writer.result
    watermark = writer.committed
    first_load = row_count(t.table) == 0
    kind = cursor_kind(t.schema.field(t.cursor).type)
    known_at_wm = pa.table({})
    if watermark is not None and source.mode == "append":
        known_at_wm = _keys_at(t.table, t.pk, eq_filter(t.cursor, watermark.value))
    pending: list[pa.RecordBatch] = []
    pending_count = 0
    wm_after = watermark
    for batch in writer.to_bronze(prefetch(reader.read(sql, t.source_schema, batch_rows))):
        result.rows_read += batch.num_rows
        fresh = [batch]
        if known_at_wm.num_rows:
            kept = _drop_known(pa.Table.from_batches([batch]), known_at_wm, t.pk)
            result.rows_skipped_duplicate += batch.num_rows - kept.num_rows
            fresh = kept.to_batches()
        pending.extend(fresh)
        pending_count += sum(b.num_rows for b in fresh)
        if pending_count >= commit_rows:
            rows = pa.Table.from_batches(pending)
            wm_after = advance(rows, t.cursor, source.cursor, kind, wm_after)
            writer.commit(rows, wm_after, append_only=first_load)
            faults.point("after_batch_commit")
            pending, pending_count = [], 0
    if pending:
        rows = pa.Table.from_batches(pending)
        wm_after = advance(rows, t.cursor, source.cursor, kind, wm_after)
        writer.commit(rows, wm_after, append_only=first_load)
    return wm_after


def _extract_null_cursor(
    writer: _BronzeWriter,
    reader: BatchReader,
    sql: str,
    source: SourceTable,
    batch_rows: int,
    watermark: Watermark | None,
) -> None:
    """Rows whose cursor is NULL: unordered, so read whole each run and kept by key."""
    t, result = writer.target, writer.result
    batches = list(writer.to_bronze(reader.read(sql, t.source_schema, batch_rows)))
    if not batches:
        return
    rows = pa.Table.from_batches(batches)
    result.null_cursor_rows = rows.num_rows
    result.rows_read += rows.num_rows
    if source.mode == "append":
        known = _keys_at(t.table, t.pk, IsNull(term=Reference(t.cursor)))
        fresh = _drop_known(rows, known, t.pk)
        result.rows_skipped_duplicate += rows.num_rows - fresh.num_rows
        rows = fresh
    if rows.num_rows:
        writer.commit(rows, watermark, append_only=False)


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
    schema_name = effective_schema(engine, source)
    label = f"{schema_name}.{source.table}" if schema_name else source.table
    result = ExtractResult(
        table=f"bronze.{source.name}", source=label, mode=source.mode, reader=reader.name
    )
    target, sa_table = _prepare(engine, catalog, source, full_refresh, result)
    writer = _BronzeWriter(target, source, run_id, result)
    watermark = writer.committed
    result.watermark_before = watermark.display() if watermark else "none"
    result.full_load = watermark is None

    stmt = build_select(sa_table, source, watermark, dialect_name=engine.dialect.name)
    log.info("extract %s -> %s from watermark %s", label, result.table, result.watermark_before)
    wm_after = _extract_from_watermark(
        writer, reader, compile_sql(stmt, engine.dialect), source, batch_rows, commit_rows
    )
    null_stmt = build_select(sa_table, source, None, null_cursor=True)
    null_sql = compile_sql(null_stmt, engine.dialect)
    _extract_null_cursor(writer, reader, null_sql, source, batch_rows, wm_after)

    result.reader = reader.name  # a reader that fell back to its second path says so
    table = target.table
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
        stmt = stmt.where(cursor > sql_bound(wm, engine.dialect.name))
    with engine.connect() as conn:
        count, top = conn.execute(stmt).one()
    return int(count or 0), "" if top is None else str(top)
