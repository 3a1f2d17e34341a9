"""Rows: key merges, filters, scans of a branch (staged or committed), counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, EqualTo, In, Or, Reference
from pyiceberg.table import DataScan

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.io import FileIO
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot


# pyiceberg retries a refused commit by rebasing it onto the newer snapshot. For a table
# whose commits carry a position that would duplicate rows: a concurrent writer must make
# the commit fail instead (each table has its own Dagster pool, so this means a bug).
NO_RETRY = "commit.retry.num-retries"
MAIN = "main"
AUDIT = "audit"


def latest_per_key(rows: pa.Table, pk: list[str], cursor: str | None) -> pa.Table:
    """One row per key: the one with the highest `cursor`, the later one among equal cursors.

    A source whose declared key is not unique (a view, a table without a
    constraint) can send one key twice in one batch; the newest version wins,
    as it would have if the two had arrived in separate runs.
    """
    n = rows.num_rows
    if n < 2:
        return rows
    keys = rows.select(pk)
    if keys.group_by(pk).aggregate([]).num_rows == n:
        return rows
    position = pa.array(range(n), pa.int64())
    frame = keys.append_column("__pos", position)
    sort_keys: list[tuple[str, str]] = [("__pos", "ascending")]
    if cursor is not None:
        frame = frame.append_column("__cursor", rows.column(cursor))
        sort_keys.insert(0, ("__cursor", "ascending"))
    order = pc.sort_indices(frame, sort_keys=sort_keys, null_placement="at_start")
    ranked = frame.take(order).append_column("__rank", position)
    best = ranked.group_by(pk).aggregate([("__rank", "max")]).column("__rank_max")
    chosen = ranked.column("__pos").take(best)
    return rows.take(chosen.take(pc.sort_indices(chosen)))  # in their original order


def _iceberg_literal(value: Any) -> Any:
    # pyiceberg literals take datetimes as ISO strings.
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def in_filter(column: str, values: Iterable[Any]) -> BooleanExpression:
    """`column IN values` as an Iceberg predicate (pyiceberg's stubs are stricter than it is)."""
    return In(term=Reference(column), values={_iceberg_literal(v) for v in values})


def eq_filter(column: str, value: Any) -> BooleanExpression:
    return EqualTo(term=Reference(column), value=_iceberg_literal(value))


def key_filter(rows: pa.Table, pk: list[str]) -> BooleanExpression:
    """An Iceberg predicate selecting exactly these rows' keys."""
    if len(pk) == 1:
        return in_filter(pk[0], rows.column(pk[0]).to_pylist())
    clauses: list[BooleanExpression] = []
    for row in rows.select(pk).to_pylist():
        parts = [eq_filter(k, row[k]) for k in pk]
        clauses.append(And(*parts) if len(parts) > 1 else parts[0])
    return Or(*clauses) if len(clauses) > 1 else clauses[0]


def _scan_at(metadata: TableMetadata, io: FileIO, branch: str, **kwargs: Any) -> DataScan:
    """A scan of `branch` of `metadata`, projected with the table's current schema (a scan
    pinned to a snapshot id would read that snapshot's schema, without columns added since)."""
    snap = metadata.snapshot_by_name(branch)
    if branch != MAIN and snap is not None:
        metadata = metadata.model_copy(update={"current_snapshot_id": snap.snapshot_id})
    elif branch != MAIN:
        metadata = metadata.model_copy(update={"current_snapshot_id": None})
    return DataScan(table_metadata=metadata, io=io, **kwargs)


def scan(table: Table, branch: str = MAIN, **kwargs: Any) -> DataScan:
    """A scan of `branch` as committed (empty when the branch does not exist)."""
    return _scan_at(table.metadata, table.io, branch, **kwargs)


def staged_scan(tx: Transaction, table: Table, branch: str = MAIN, **kwargs: Any) -> DataScan:
    """A scan of `branch` as transaction `tx` has staged it (its uncommitted snapshots
    included: their files are written when they are staged)."""
    return _scan_at(tx.table_metadata, table.io, branch, **kwargs)


def _changed(a: pa.ChunkedArray, b: pa.ChunkedArray) -> pa.ChunkedArray:
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    return pc.if_else(both_null, False, pc.fill_null(pc.not_equal(a, b), True))


def merge_rows(
    tx: Transaction,
    table: Table,
    rows: pa.Table,
    pk: list[str],
    props: Mapping[str, str],
    *,
    branch: str = MAIN,
    cursor: str | None = None,
) -> tuple[int, int]:
    """Upsert `rows` on the key inside `tx`; unchanged rows are not rewritten.

    Returns (inserted, updated). Keys repeated inside `rows` keep their newest
    version (`latest_per_key`). Existing rows are read as the transaction has
    staged them, so two merges of one key in one transaction leave one row.
    pyiceberg's own upsert reads matches with the
    snapshot's schema, which drops a column added since that snapshot;
    scanning the table reads the current schema.
    """
    rows = latest_per_key(rows, pk, cursor)
    existing = staged_scan(tx, table, branch, row_filter=key_filter(rows, pk)).to_arrow()
    if existing.num_rows == 0:
        tx.append(rows, snapshot_properties=dict(props), branch=branch)
        return rows.num_rows, 0
    existing = existing.select(rows.schema.names)
    left = rows.select(pk).append_column("__new", pa.array(range(rows.num_rows), pa.int64()))
    right = existing.select(pk).append_column(
        "__old", pa.array(range(existing.num_rows), pa.int64())
    )
    joined = left.join(right, keys=pk, join_type="left outer")
    matched = joined.filter(pc.is_valid(joined.column("__old")))
    new_side = rows.take(matched.column("__new"))
    old_side = existing.take(matched.column("__old"))
    diff = pa.chunked_array([pa.array([False] * new_side.num_rows, pa.bool_())])
    for name in rows.schema.names:
        if name not in pk:
            diff = pc.or_(diff, _changed(new_side.column(name), old_side.column(name)))
    to_update = new_side.filter(diff)
    unmatched = joined.filter(pc.is_null(joined.column("__old"))).column("__new")
    to_insert = rows.take(unmatched)
    if to_update.num_rows:
        tx.delete(
            delete_filter=key_filter(to_update, pk),
            snapshot_properties=dict(props),
            branch=branch,
        )
    writes = pa.concat_tables([to_update, to_insert]).cast(rows.schema)
    if writes.num_rows:
        tx.append(writes, snapshot_properties=dict(props), branch=branch)
    return to_insert.num_rows, to_update.num_rows


def snapshot_rows(snapshot: Snapshot | None) -> int:
    """Live rows at a snapshot, from its summary (no scan)."""
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary["total-records"] or 0)


def row_count(table: Table, branch: str = MAIN) -> int:
    """Live rows of a table's branch (main: what readers see), from the snapshot summary."""
    return snapshot_rows(table.snapshot_by_name(branch))


def replace_all(tx: Transaction, table: Table, rows: pa.Table, branch: str = MAIN) -> None:
    """Replace a branch's rows inside a transaction (append when it is empty: an overwrite
    of an empty table only adds a no-op delete and a warning)."""
    if row_count(table, branch) == 0:
        tx.append(rows, branch=branch)
    else:
        tx.overwrite(rows, branch=branch)


def table_name(table: Table) -> str:
    return ".".join(table.name()[-2:])
