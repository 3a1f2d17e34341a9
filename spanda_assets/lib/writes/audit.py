"""Write-audit-publish: the audit branch, its read-only view, publish, erasure on main."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyiceberg.catalog.noop import NoopCatalog
from pyiceberg.table import StaticTable
from pyiceberg.table.refs import SnapshotRef, SnapshotRefType
from pyiceberg.table.update.snapshot import ManageSnapshots

from spanda_assets.lib import faults
from spanda_assets.lib.writes.rows import AUDIT, MAIN, snapshot_rows, table_name
from spanda_assets.lib.writes.state import state_property

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

log = logging.getLogger(__name__)


# The main snapshot the audit branch was last based on (reset or publish): main at any other
# snapshot moved on its own (an erasure, a compaction, a rollback).
AUDIT_BASE = "spanda.audit-base"


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
        log.info("%s: audit branch reset to main (main moved on its own)", table_name(table))
    return audit is not None


def reset_audit(table: Table) -> bool:
    """Point the audit branch at main, dropping its unpublished commits (they are
    re-derived from main's position by the next run). False if main has no snapshot."""
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
    table.refresh()
    main, audit = head(table, MAIN), head(table, AUDIT)
    before = main.snapshot_id if main is not None else None
    if audit is None or audit.snapshot_id == before:
        return Published(False, before, before, snapshot_rows(main))
    if audited is not None and audit.snapshot_id != audited:
        raise PublishRefused(
            f"{table_name(table)}: the audit branch moved during the audit (audited snapshot "
            f"{audited}, now {audit.snapshot_id}); nothing was published, the next run audits "
            "it again"
        )
    if before is not None and not _descends(table, audit, before):
        raise PublishRefused(
            f"{table_name(table)}: main moved during the audit (an erasure or another writer); "
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
