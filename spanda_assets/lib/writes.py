"""Every write to the lakehouse: key merges, run state, write-audit-publish, erasure, expiry.

One module, so that every stage (the bronze extract, silver, gold, submissions
and the stages to come) writes the same way and no stage imports another
stage's module to write.

Run state. An incremental writer's position (the extract's watermark, the
input sequence number silver or gold has read) rides in the summary of the
snapshot that wrote the rows: data and position commit together or not at all
(docs/decisions/0001). The same commit copies the position into the table
property ``spanda.state.<branch>``. Reading walks back from the branch head to
the newest snapshot that carries the position (a rollback is followed
exactly); only when that walk runs into expired history (snapshot expiry
after a compaction by another engine, whose snapshots carry no position) does
the property answer (docs/decisions/0016).

Write-audit-publish. Every table past bronze is written to its ``audit``
branch; the blocking checks read that branch (`audit_view`), and `publish`
moves main to it only when they passed, in one catalog commit. The audit
branch is always main plus the commits not yet published: when main moved on
its own (an erasure, a compaction, a rollback), `open_audit` resets the branch
to main and the writer re-derives the unpublished work from the position main
records. Readers read main only (docs/decisions/0017).

Erasure and expiry. A delete only removes data, so an erasure is committed to
main directly (`erase_rows`) and never waits for an audit. `expire` removes
snapshots past their retention and then the files only those snapshots
referenced, so erased rows leave the storage too, not just the current view.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib import faults

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.snapshots import Snapshot

log = logging.getLogger(__name__)

# pyiceberg retries a refused commit by rebasing it onto the newer snapshot. For a table
# whose commits carry a position that would duplicate rows: a concurrent writer must make
# the commit fail instead (each table has its own Dagster pool, so this means a bug).
NO_RETRY = "commit.retry.num-retries"
MAIN = "main"
AUDIT = "audit"
STATE_PREFIX = "spanda.state."
# The main snapshot the audit branch was last based on (reset or publish): main at any other
# snapshot moved on its own (an erasure, a compaction, a rollback).
AUDIT_BASE = "spanda.audit-base"


def state_property(branch: str) -> str:
    return f"{STATE_PREFIX}{branch}"


# --------------------------------------------------------------------------- rows


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
    from pyiceberg.expressions import In, Reference

    return In(term=Reference(column), values={_iceberg_literal(v) for v in values})


def eq_filter(column: str, value: Any) -> BooleanExpression:
    from pyiceberg.expressions import EqualTo, Reference

    return EqualTo(term=Reference(column), value=_iceberg_literal(value))


def key_filter(rows: pa.Table, pk: list[str]) -> BooleanExpression:
    """An Iceberg predicate selecting exactly these rows' keys."""
    from pyiceberg.expressions import And, Or

    if len(pk) == 1:
        return in_filter(pk[0], rows.column(pk[0]).to_pylist())
    clauses: list[BooleanExpression] = []
    for row in rows.select(pk).to_pylist():
        parts = [eq_filter(k, row[k]) for k in pk]
        clauses.append(And(*parts) if len(parts) > 1 else parts[0])
    return Or(*clauses) if len(clauses) > 1 else clauses[0]


def _scan_at(metadata: Any, io: Any, branch: str, **kwargs: Any) -> Any:
    """A scan of `branch` of `metadata`, projected with the table's current schema (a scan
    pinned to a snapshot id would read that snapshot's schema, without columns added since)."""
    from pyiceberg.table import DataScan

    snap = metadata.snapshot_by_name(branch)
    if branch != MAIN and snap is not None:
        metadata = metadata.model_copy(update={"current_snapshot_id": snap.snapshot_id})
    elif branch != MAIN:
        metadata = metadata.model_copy(update={"current_snapshot_id": None})
    return DataScan(table_metadata=metadata, io=io, **kwargs)


def scan(table: Table, branch: str = MAIN, **kwargs: Any) -> Any:
    """A scan of `branch` as committed (empty when the branch does not exist)."""
    return _scan_at(table.metadata, table.io, branch, **kwargs)


def staged_scan(tx: Transaction, table: Table, branch: str = MAIN, **kwargs: Any) -> Any:
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


def replace_all(tx: Any, table: Table, rows: Any, branch: str = MAIN) -> None:
    """Replace a branch's rows inside a transaction (append when it is empty: an overwrite
    of an empty table only adds a no-op delete and a warning)."""
    if row_count(table, branch) == 0:
        tx.append(rows, branch=branch)
    else:
        tx.overwrite(rows, branch=branch)


# --------------------------------------------------------------------------- run state


def close_run(
    tx: Transaction, schema: pa.Schema, state: Mapping[str, str], branch: str = MAIN
) -> None:
    """End a run's transaction with its position: an (empty) append whose summary carries
    `state`, and the same state in the table property that survives expiry."""
    tx.append(schema.empty_table(), snapshot_properties=dict(state), branch=branch)
    remember_state(tx, state, branch)


STATE_SNAPSHOT = "spanda.snapshot-id"


def remember_state(tx: Transaction, state: Mapping[str, str], branch: str = MAIN) -> None:
    """The property copy of `state`, staged in the transaction that writes the rows (call
    it after the run's last staged snapshot: the copy names that snapshot)."""
    snap = tx.table_metadata.snapshot_by_name(branch)
    doc = {**state, STATE_SNAPSHOT: str(snap.snapshot_id) if snap is not None else ""}
    tx.set_properties({state_property(branch): json.dumps(doc, sort_keys=True)})


def read_state(
    table: Table | None, marker: str, keys: Iterable[str], branch: str = MAIN
) -> dict[str, str]:
    """The position of the newest run on `branch` ({} before the first run).

    The newest snapshot whose summary carries `marker` answers. When the walk
    back finds none, the property copy answers if the snapshot it names was
    expired (expiry cut the walk short); if that snapshot still exists, it is
    not an ancestor of the head, so the branch was rolled back to before it,
    and there is no position.
    """
    if table is None:
        return {}
    wanted = list(keys)
    snap = table.snapshot_by_name(branch)
    while snap is not None:
        summary = snap.summary
        if summary is not None and summary[marker]:
            return {k: str(summary[k]) for k in wanted if summary[k] is not None}
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    raw = table.properties.get(state_property(branch))
    if not raw or table.snapshot_by_name(branch) is None:
        return {}
    saved = json.loads(raw)
    carrier = saved.get(STATE_SNAPSHOT)
    if not saved.get(marker) or (carrier and table.snapshot_by_id(int(carrier)) is not None):
        return {}
    return {k: str(saved[k]) for k in wanted if saved.get(k) is not None}


# --------------------------------------------------------------------------- write-audit-publish


def head(table: Table, branch: str) -> Snapshot | None:
    return table.snapshot_by_name(branch)


def sequence(snapshot: Snapshot | None) -> int:
    return int(snapshot.sequence_number or 0) if snapshot is not None else 0


def _descends(table: Table, snapshot: Snapshot, ancestor_id: int) -> bool:
    snap: Snapshot | None = snapshot
    while snap is not None:
        if snap.snapshot_id == ancestor_id:
            return True
        if snap.parent_snapshot_id is None:
            return False
        snap = table.snapshot_by_id(snap.parent_snapshot_id)
    return False


def open_audit(table: Table) -> bool:
    """Make the audit branch main plus the unpublished commits. True if it was reset.

    The branch is (re)created at main when it is missing, or when main moved on
    its own since the branch was based on it: main is not the snapshot the
    branch was last reset to or published at (an erasure, a compaction, a
    rollback), or not its ancestor. A new table first gets an empty main
    snapshot: a branch needs one to start from. The writer's position moves
    with it, in the same commit, so the next write resumes from main's.
    """
    main, audit = head(table, MAIN), head(table, AUDIT)
    if main is None and audit is None:
        # Iceberg branches start from a snapshot: main starts as an empty, published table.
        table.append(table.schema().as_arrow().empty_table())
        main = head(table, MAIN)
    if main is None:
        return False  # nothing published yet: the audit branch is all there is
    base = table.properties.get(AUDIT_BASE)
    if (
        audit is not None
        and base == str(main.snapshot_id)
        and _descends(table, audit, main.snapshot_id)
    ):
        return False
    reset_audit(table)
    if audit is not None:
        log.info("%s: audit branch reset to main (main moved on its own)", _name(table))
    return audit is not None


def reset_audit(table: Table) -> bool:
    """Point the audit branch at main, dropping its unpublished commits (they are
    re-derived from main's position by the next run). False if main has no snapshot."""
    from pyiceberg.table.update.snapshot import ManageSnapshots

    main = head(table, MAIN)
    if main is None:
        return False
    tx = table.transaction()
    ManageSnapshots(tx).create_branch(main.snapshot_id, AUDIT).commit()
    saved = table.properties.get(state_property(MAIN))
    tx.set_properties({AUDIT_BASE: str(main.snapshot_id)})
    if saved:
        tx.set_properties({state_property(AUDIT): saved})
    elif state_property(AUDIT) in table.properties:
        tx.remove_properties(state_property(AUDIT))
    tx.commit_transaction()
    return True


def audit_view(table: Table) -> Table:
    """A read-only Table whose current snapshot is the audit branch's head.

    Checks and scans written for "the table" read the staged data through it
    unchanged. Commits through it fail: it is a static table.
    """
    from pyiceberg.catalog.noop import NoopCatalog
    from pyiceberg.table import StaticTable
    from pyiceberg.table.refs import SnapshotRef, SnapshotRefType

    audit = head(table, AUDIT)
    if audit is None:
        return table
    refs = dict(table.metadata.refs)
    refs[MAIN] = SnapshotRef.model_validate(
        {"snapshot-id": audit.snapshot_id, "type": SnapshotRefType.BRANCH}
    )
    metadata = table.metadata.model_copy(
        update={"current_snapshot_id": audit.snapshot_id, "refs": refs}
    )
    return StaticTable(
        identifier=table.name(),
        metadata=metadata,
        metadata_location=table.metadata_location,
        io=table.io,
        catalog=NoopCatalog("audit-view"),
    )


@dataclass(frozen=True)
class Pending:
    """What an audit has to look at: the data on the audit branch that main lacks."""

    view: Table  # read-only, at the audit head
    after_sequence: int  # main's sequence number: later files are unpublished
    snapshot_id: int | None  # audit head
    main_snapshot_id: int | None

    @property
    def anything(self) -> bool:
        return self.snapshot_id is not None and self.snapshot_id != self.main_snapshot_id


def pending(table: Table) -> Pending:
    main, audit = head(table, MAIN), head(table, AUDIT)
    top = audit if audit is not None else main
    return Pending(
        view=audit_view(table),
        after_sequence=sequence(main),
        snapshot_id=top.snapshot_id if top is not None else None,
        main_snapshot_id=main.snapshot_id if main is not None else None,
    )


def unpublished_files(view: Table, after_sequence: int) -> list[Any]:
    """Live data files of `view` added after `after_sequence`: everything an audit must read.

    Files a delete rewrote count too (they are new files): an audit re-reads
    them rather than trust that the rewrite kept only audited rows.
    """
    snap = view.current_snapshot()
    if snap is None:
        return []
    tasks = list(view.scan().plan_files())
    if not after_sequence:
        return tasks
    entries = view.inspect.entries()
    seq = {
        d["file_path"]: s
        for d, status, s in zip(
            entries.column("data_file").to_pylist(),
            entries.column("status").to_pylist(),
            entries.column("sequence_number").to_pylist(),
            strict=True,
        )
        if status != 2
    }
    return [t for t in tasks if (seq.get(t.file.file_path) or 0) > after_sequence]


@dataclass
class Published:
    published: bool
    snapshot_id: int | None  # main after the call
    previous_snapshot_id: int | None
    rows: int = 0


class PublishRefused(Exception):
    """Main or the audit branch moved while the audit ran: nothing was published."""


def publish(table: Table, audited: int | None = None) -> Published:
    """Move main to the audit head (fast-forward) with the writer's position, in one commit.

    `audited`: the audit head the audit read. If the branch moved since, or main
    moved so that the branch no longer contains it (an erasure landed during the
    audit), nothing is published: publishing would undo the erasure or publish
    unaudited rows. The commit itself asserts that main is still where it was.
    """
    from pyiceberg.table.update.snapshot import ManageSnapshots

    table.refresh()
    main, audit = head(table, MAIN), head(table, AUDIT)
    before = main.snapshot_id if main is not None else None
    if audit is None or audit.snapshot_id == before:
        return Published(False, before, before, snapshot_rows(main))
    if audited is not None and audit.snapshot_id != audited:
        raise PublishRefused(
            f"{_name(table)}: the audit branch moved during the audit (audited snapshot "
            f"{audited}, now {audit.snapshot_id}); nothing was published, the next run audits "
            "it again"
        )
    if before is not None and not _descends(table, audit, before):
        raise PublishRefused(
            f"{_name(table)}: main moved during the audit (an erasure or another writer); "
            "nothing was published, the next run derives the unpublished rows again from main"
        )
    faults.point("before_publish")
    tx = table.transaction()
    ManageSnapshots(tx).set_current_snapshot(snapshot_id=audit.snapshot_id)
    saved = table.properties.get(state_property(AUDIT))
    tx.set_properties({AUDIT_BASE: str(audit.snapshot_id)})
    if saved:
        tx.set_properties({state_property(MAIN): saved})
    tx.commit_transaction()
    faults.point("after_publish")
    return Published(True, audit.snapshot_id, before, snapshot_rows(audit))


def erase_rows(table: Table, row_filter: BooleanExpression) -> int:
    """Delete the rows matching `row_filter` from main now; returns how many there were.

    No audit: a delete can only remove data. The audit branch no longer
    descends from main afterwards, so the next run resets it (`open_audit`) and
    the erased rows cannot come back through it.
    """
    if head(table, MAIN) is None:
        return 0
    found = table.scan(row_filter=row_filter).count()
    if found:
        table.delete(delete_filter=row_filter)
    return int(found)


def _name(table: Table) -> str:
    return ".".join(table.name()[-2:])


# --------------------------------------------------------------------------- expiry


@dataclass
class Expired:
    table: str
    snapshots_expired: int = 0
    files_removed: int = 0
    orphans_removed: int = 0
    orphans_kept_in_grace: int = 0
    bytes_removed: int = 0
    removed: list[str] = field(default_factory=list)


def _reachable(table: Table) -> set[str]:
    """Every file a snapshot of the table still needs: manifest lists, manifests, data files."""
    out: set[str] = set()
    seen_manifests: set[str] = set()
    for snap in table.snapshots():
        out.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            out.add(manifest.manifest_path)
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                out.add(entry.data_file.file_path)
    return out


def _strip(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return parsed.path
    return f"{parsed.netloc}{parsed.path}"


def _filesystem(table: Table) -> tuple[Any, str]:
    """The pyarrow filesystem under the table's location, and the location as its path."""
    from pyiceberg.io.pyarrow import PyArrowFileIO

    location = table.location()
    parsed = urlparse(location)
    io = table.io
    if isinstance(io, PyArrowFileIO):
        fs = io.fs_by_scheme(parsed.scheme or "file", parsed.netloc)
    else:  # pragma: no cover - pyiceberg picks PyArrowFileIO for file:// and s3://
        import pyarrow.fs as pafs

        fs, _ = pafs.FileSystem.from_uri(location)
    return fs, _strip(location)


def expire(
    table: Table,
    *,
    older_than: dt.datetime | None,
    orphan_grace: dt.timedelta = dt.timedelta(hours=1),
) -> Expired:
    """Expire snapshots older than `older_than` (None: every snapshot no branch points at),
    then delete the files no remaining snapshot needs.

    Files only the expired snapshots referenced are deleted at once: nothing can
    need them again. Files no snapshot ever referenced (a write that crashed
    before its commit, or one still in flight) are deleted only when older than
    `orphan_grace`, so a concurrent writer's files are never taken from under it.
    """
    import pyarrow.fs as pafs

    result = Expired(table=_name(table))
    before = _reachable(table)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    doomed = [
        s.snapshot_id
        for s in table.snapshots()
        if s.snapshot_id not in protected
        and (older_than is None or s.timestamp_ms < older_than.timestamp() * 1000)
    ]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
        result.snapshots_expired = len(doomed)
    table.refresh()
    after = _reachable(table)
    keep = {_strip(p) for p in after}
    fs, root = _filesystem(table)
    gone = {_strip(p) for p in before} - keep
    now = dt.datetime.now(dt.UTC)
    for folder in ("data", "metadata"):
        selector = pafs.FileSelector(f"{root}/{folder}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.path in keep:
                continue
            if info.path.endswith(".metadata.json") or info.path.endswith("version-hint.text"):
                continue  # the catalog's own history of metadata versions: no rows in it
            if info.path in gone:
                result.files_removed += 1
            elif info.mtime is not None and now - _utc(info.mtime) >= orphan_grace:
                result.orphans_removed += 1
            else:
                result.orphans_kept_in_grace += 1
                continue
            result.bytes_removed += info.size or 0
            fs.delete_file(info.path)
            result.removed.append(info.path)
    return result


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)
