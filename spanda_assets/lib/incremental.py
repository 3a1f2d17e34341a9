"""Incremental processing between Iceberg tables, by sequence number.

A derived table (silver from bronze, gold from silver) records with each run
(lib/writes.read_state) the sequence number of its input that it has
processed. The next run reads only the input's live data files added after
that number, so its cost grows with new data, not with the table. The
position commits with the rows it describes, in one transaction: a crash
leaves either both or neither (see docs/decisions/0001).

Files that a row delete or a compaction rewrote need care: when the consumer
had already processed the file they replace, their rows are not new; when it
had not (two producer runs between consumer runs), they are, and skipping them
would lose rows. `new_files` tells the two apart from the rewriting snapshot's
own manifest, which lists the files it removed with their sequence numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.io.pyarrow import ArrowScan
from pyiceberg.manifest import ManifestEntryStatus

if TYPE_CHECKING:
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot


@dataclass
class NewFiles:
    """Live data files a consumer has not processed since sequence number `after`.

    `appended`: written by an append (new rows, or the new versions of updated
    rows). `rewritten`: written by a row delete (copy-on-write) or a compaction
    from a file the consumer had *not* processed yet, so their rows are
    unprocessed too, but a consumer must merge them on the key: they may carry
    rows it already has. A file rewritten from files the consumer had
    processed holds only rows it has; it is left out.
    """

    appended: list[Any] = field(default_factory=list)
    rewritten: list[Any] = field(default_factory=list)

    @property
    def all(self) -> list[Any]:
        return self.appended + self.rewritten


def new_files(table: Table, after_sequence: int) -> NewFiles:
    """Classify the live data files added after `after_sequence` (all are appended if 0)."""
    out = NewFiles()
    if table.current_snapshot() is None:
        return out
    tasks = list(table.scan().plan_files())
    if not after_sequence:
        out.appended = tasks
        return out
    entries = table.inspect.entries()
    added_by = {
        d["file_path"]: (seq, snap)
        for d, status, seq, snap in zip(
            entries.column("data_file").to_pylist(),
            entries.column("status").to_pylist(),
            entries.column("sequence_number").to_pylist(),
            entries.column("snapshot_id").to_pylist(),
            strict=True,
        )
        if status != 2
    }
    snapshots = {s.snapshot_id: s for s in table.snapshots()}
    lineage: dict[int, bool] = {}  # snapshot id -> it rewrote a file newer than `after`
    for task in tasks:
        seq, snap_id = added_by.get(task.file.file_path, (None, None))
        if seq is None or seq <= after_sequence:
            continue
        snap = snapshots.get(snap_id)
        operation = snap.summary.operation.value if snap and snap.summary else None
        if operation == "append":
            out.appended.append(task)
            continue
        if snap_id not in lineage:
            lineage[snap_id] = _rewrote_unprocessed(table, snap, after_sequence)
        if lineage[snap_id]:
            out.rewritten.append(task)
    return out


def _rewrote_unprocessed(table: Table, snap: Snapshot | None, after_sequence: int) -> bool:
    """Did snapshot `snap` remove a data file added after `after_sequence`?

    Its own manifests list the files it removed, with their original sequence
    numbers. An expired snapshot cannot tell: its files count as unprocessed.
    """
    if snap is None:
        return True
    for manifest in snap.manifests(table.io):
        if manifest.added_snapshot_id != snap.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.status == ManifestEntryStatus.DELETED and (
                entry.sequence_number is None or entry.sequence_number > after_sequence
            ):
                return True
    return False


def read_files(
    table: Table,
    tasks: list[Any],
    batch_rows: int,
    selected_fields: tuple[str, ...] = ("*",),
) -> Iterator[pa.RecordBatch]:
    """The rows of `tasks` (data files of `table`), in batches of at most `batch_rows`."""
    if not tasks:
        return
    scan = table.scan(selected_fields=selected_fields)
    reader = ArrowScan(table.metadata, table.io, scan.projection(), AlwaysTrue())
    for batch in reader.to_record_batches(tasks):
        for start in range(0, batch.num_rows, batch_rows):
            yield batch.slice(start, batch_rows)


def rows_added_after(
    table: Table,
    after_sequence: int,
    batch_rows: int,
    *,
    selected_fields: tuple[str, ...] = ("*",),
) -> Iterator[pa.RecordBatch]:
    """Rows of the data files `new_files` finds after `after_sequence` (all if 0)."""
    tasks = new_files(table, after_sequence).all
    yield from read_files(table, tasks, batch_rows, selected_fields)
