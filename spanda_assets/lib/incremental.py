"""Incremental processing between Iceberg tables, by sequence number.

A derived table (silver from bronze, gold from silver) records in the summary
of the snapshot that closes each run the sequence number of its input that it
has processed. The next run reads only the input's live data files added
after that number, so its cost grows with new data, not with the table. The
marker commits with the rows it describes, in one transaction: a crash leaves
either both or neither (see docs/decisions/0003).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

if TYPE_CHECKING:
    from pyiceberg.table import Table

# Snapshot operations that add new or changed rows. "overwrite"/"delete" snapshots of a
# row delete rewrite the surviving rows of a file into a new one: rows already seen.
APPEND_ONLY = ("append",)


def run_snapshots(table: Table | None, marker: str) -> Iterator[Any]:
    """Snapshots that closed a run (their summary carries `marker`), newest first."""
    snap = table.current_snapshot() if table is not None else None
    while snap is not None and table is not None:
        if snap.summary is not None and snap.summary[marker]:
            yield snap
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None


def run_state(table: Table | None, marker: str, keys: Collection[str]) -> dict[str, str]:
    """The `keys` of the latest run's snapshot summary ({} before the first run)."""
    for snap in run_snapshots(table, marker):
        return {k: str(snap.summary[k]) for k in keys if snap.summary[k] is not None}
    return {}


def previous_run_sequence(table: Table, marker: str) -> int:
    """Sequence number of the run before the latest one: what the latest run added is after it."""
    runs = run_snapshots(table, marker)
    next(runs, None)
    before = next(runs, None)
    return int(before.sequence_number or 0) if before is not None else 0


def rows_added_after(
    table: Table,
    after_sequence: int,
    batch_rows: int,
    *,
    operations: tuple[str, ...] | None = None,
    selected_fields: tuple[str, ...] = ("*",),
) -> Iterator[pa.RecordBatch]:
    """Rows of the live data files added after sequence number `after_sequence` (all if 0).

    `operations` keeps only files added by snapshots of those operations (e.g.
    APPEND_ONLY skips files a row delete rewrote).
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.io.pyarrow import ArrowScan

    if table.current_snapshot() is None:
        return
    scan = table.scan(selected_fields=selected_fields)
    tasks = list(scan.plan_files())
    if after_sequence or operations:
        kinds = {
            s.snapshot_id: (s.summary.operation.value if s.summary is not None else "")
            for s in table.snapshots()
        }
        entries = table.inspect.entries()
        fresh = {
            d["file_path"]
            for d, status, seq, snap in zip(
                entries.column("data_file").to_pylist(),
                entries.column("status").to_pylist(),
                entries.column("sequence_number").to_pylist(),
                entries.column("snapshot_id").to_pylist(),
                strict=True,
            )
            if status != 2
            and seq is not None
            and seq > after_sequence
            and (operations is None or kinds.get(snap) in operations)
        }
        tasks = [t for t in tasks if t.file.file_path in fresh]
    if not tasks:
        return
    reader = ArrowScan(table.metadata, table.io, scan.projection(), AlwaysTrue())
    for batch in reader.to_record_batches(tasks):
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)
