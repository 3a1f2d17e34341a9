"""Every write to the lakehouse: key merges, run state, write-audit-publish, erasure, expiry.

One package behind one import (`from spanda_assets.lib import writes`), so
that every stage (the bronze extract, silver, gold, submissions and the stages
to come) writes the same way and no stage imports another stage's module to
write. Its modules: `rows` (merges, filters, scans), `state` (run position),
`audit` (write-audit-publish, erasure on main), `expiry`.

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

from spanda_assets.lib.writes.audit import (
    AUDIT_BASE,
    Pending,
    Published,
    PublishRefused,
    audit_view,
    erase_rows,
    head,
    open_audit,
    pending,
    publish,
    reset_audit,
    sequence,
    unpublished_files,
)
from spanda_assets.lib.writes.expiry import Expired, expire, keep_snapshot, release_snapshot
from spanda_assets.lib.writes.rows import (
    AUDIT,
    MAIN,
    NO_RETRY,
    eq_filter,
    in_filter,
    key_filter,
    latest_per_key,
    merge_rows,
    replace_all,
    row_count,
    scan,
    snapshot_rows,
    staged_scan,
    table_name,
)
from spanda_assets.lib.writes.state import (
    STATE_PREFIX,
    STATE_SNAPSHOT,
    close_run,
    read_state,
    remember_state,
    state_property,
)

__all__ = [
    "AUDIT",
    "AUDIT_BASE",
    "MAIN",
    "NO_RETRY",
    "STATE_PREFIX",
    "STATE_SNAPSHOT",
    "Expired",
    "Pending",
    "PublishRefused",
    "Published",
    "audit_view",
    "close_run",
    "eq_filter",
    "erase_rows",
    "expire",
    "head",
    "in_filter",
    "keep_snapshot",
    "key_filter",
    "latest_per_key",
    "merge_rows",
    "open_audit",
    "pending",
    "publish",
    "read_state",
    "release_snapshot",
    "remember_state",
    "replace_all",
    "reset_audit",
    "row_count",
    "scan",
    "sequence",
    "snapshot_rows",
    "staged_scan",
    "state_property",
    "table_name",
    "unpublished_files",
]
