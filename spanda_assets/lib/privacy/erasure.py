"""Erasure on request, and the register that keeps an erased student out for good.

`erase_student` is the right to erasure carried out now, not on the next run:

1. the request goes into `bronze.erasure_requests` (the restricted zone, beside
   the legal record, which keeps the student's bronze rows), so that no later
   run brings the student back: consent is read through the register
   (lib/privacy/consent.load_consent);
2. every silver and gold table with a `subject_id` loses the student's rows on
   main, and an audit branch that still holds some is reset to main (its
   unpublished work is re-derived by the next run, without the student);
3. each touched table's history is expired and the files only that history
   referenced are deleted, so no data file under the warehouse outside bronze
   holds the student's rows any more;
4. what remains is read back: the receipt says how many rows of the student
   are left (zero, or the command fails).

Physical erasure of everyone else's history follows the retention schedule
(`expire_history`, run by the maintenance job).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException, NoSuchNamespaceError

from spanda_assets.lib import writes
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.exports import remove_exports
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.privacy.subjects import SUBJECTS, did_of
from spanda_assets.lib.publish.versions import PUBLISH_TAG_PREFIX, withdraw_version

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer

REGISTER = ("bronze", "erasure_requests")
REGISTER_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("student_id", pa.int64(), nullable=False),
        pa.field("subject_id", pa.string(), nullable=False),
        pa.field("requested_at", pa.timestamp("us"), nullable=False),
        pa.field("reason", pa.string()),
    ]
)
# Namespaces whose tables are derived, de-identified copies: erased and expired.
DERIVED = ("silver", "gold", "submissions")


@dataclass(frozen=True)
class Register:
    """The erasure register as a run reads it: its size (a watermark: requests are only
    ever appended), and who is in it."""

    requests: int = 0
    students: frozenset[int] = frozenset()
    subjects: frozenset[str] = frozenset()


def read_register(catalog: Catalog) -> Register:
    table = load_table_or_none(catalog, *REGISTER)
    if table is None or table.current_snapshot() is None:
        return Register()
    rows = table.scan(selected_fields=("student_id", "subject_id")).to_arrow()
    return Register(
        rows.num_rows,
        frozenset(int(i) for i in rows["student_id"].to_pylist()),
        frozenset(str(s) for s in rows["subject_id"].to_pylist()),
    )


def erased_students(catalog: Catalog) -> set[int]:
    """Students with an erasure request: never active again, whatever their consent says."""
    return set(read_register(catalog).students)


def derived_tables(catalog: Catalog, namespaces: tuple[str, ...] = DERIVED) -> list[Table]:
    """Every table past bronze (the namespaces that exist)."""
    out: list[Table] = []
    for ns in namespaces:
        try:
            identifiers = catalog.list_tables(ns)
        except NoSuchNamespaceError:
            continue
        out += [catalog.load_table(i) for i in sorted(identifiers)]
    return out


@dataclass
class Receipt:
    request_id: str
    subject_id: str
    requested_at: str
    rows_erased: dict[str, int] = field(default_factory=dict)
    audit_branches_reset: list[str] = field(default_factory=list)
    snapshots_expired: int = 0
    files_removed: int = 0
    bytes_removed: int = 0
    unreferenced_files_in_grace: int = 0
    rows_remaining: int = 0
    published_versions_withdrawn: list[str] = field(default_factory=list)
    exports_removed: list[str] = field(default_factory=list)
    bronze_kept: str = "bronze keeps the legal record (restricted zone)"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"erasure {self.request_id} for subject {self.subject_id} at {self.requested_at}",
            *(f"  {t:<36} {n:>8} row(s) erased" for t, n in sorted(self.rows_erased.items())),
            f"  audit branches reset: {', '.join(self.audit_branches_reset) or 'none'}",
            f"  snapshots expired: {self.snapshots_expired}",
            f"  files removed: {self.files_removed} ({self.bytes_removed:,} bytes)",
            f"  rows of the subject left outside bronze: {self.rows_remaining}",
            "  published versions withdrawn: "
            + (", ".join(self.published_versions_withdrawn) or "none"),
            f"  exports removed: {', '.join(self.exports_removed) or 'none'}",
            f"  {self.bronze_kept}",
        ]
        if self.unreferenced_files_in_grace:
            lines.append(
                f"  {self.unreferenced_files_in_grace} file(s) of writes still in flight or "
                "crashed within the grace period: removed by the next maintenance run"
            )
        return "\n".join(lines)


def _register(catalog: Catalog, student_id: int, subject_id: str, reason: str) -> Receipt:
    ensure_namespace(catalog, "bronze")
    table = catalog.create_table_if_not_exists(REGISTER, schema=REGISTER_SCHEMA)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    request_id = f"erasure-{uuid.uuid4()}"
    table.append(
        pa.table(
            {
                "request_id": [request_id],
                "student_id": [student_id],
                "subject_id": [subject_id],
                "requested_at": [now],
                "reason": [reason],
            },
            schema=REGISTER_SCHEMA,
        )
    )
    return Receipt(request_id, subject_id, now.isoformat(timespec="seconds") + "Z")


def erase_student(
    catalog: Catalog,
    student_id: int,
    pseudonymizer: Pseudonymizer,
    *,
    reason: str = "erasure request",
    orphan_grace: dt.timedelta = dt.timedelta(hours=1),
) -> Receipt:
    """Erase every silver and gold row of a student now, with the history that held them."""
    subject = pseudonymizer.subject_id(did_of(catalog, student_id))
    receipt = _register(catalog, student_id, subject, reason)
    match = writes.in_filter("subject_id", [subject])
    for table in derived_tables(catalog):
        if "subject_id" not in table.schema().column_names:
            continue
        _erase_table(catalog, table, match, receipt, orphan_grace)
    if receipt.rows_remaining:
        raise SpandaError(
            f"erasure {receipt.request_id}: {receipt.rows_remaining} row(s) of subject "
            f"{subject} are still readable after the erasure; run `spanda erase` again"
        )
    return receipt


def _erase_table(
    catalog: Catalog,
    table: Table,
    match: BooleanExpression,
    receipt: Receipt,
    orphan_grace: dt.timedelta,
) -> None:
    """One table: rows off main (and the audit branch), history expired, files deleted.
    A commit refused because a pipeline run wrote the table at that moment is tried
    again on the table as that run left it (every step is idempotent)."""
    name = ".".join(table.name()[-2:])
    for attempt in range(5):
        try:
            erased = writes.erase_rows(table, match)
            if writes.head(table, writes.AUDIT) is not None:
                left = writes.scan(table, writes.AUDIT, row_filter=match).count()
                if left and writes.reset_audit(table):
                    receipt.audit_branches_reset.append(name)
            if erased:
                receipt.rows_erased[name] = receipt.rows_erased.get(name, 0) + erased
            # An export (OneRoster, xAPI) read from this table may hold the rows even when
            # main no longer does (a consent withdrawal or a pipeline run removed them
            # first, an earlier attempt of this erasure stopped after the delete): every
            # export of the table goes, and the next export run writes it without them.
            receipt.exports_removed += remove_exports({name})
            _withdraw_published(table, match, receipt)
            expired = writes.expire(table, older_than=None, orphan_grace=orphan_grace)
            break
        except CommitFailedException:
            if attempt == 4:
                raise
            table = catalog.load_table(table.name())
    receipt.snapshots_expired += expired.snapshots_expired
    receipt.files_removed += expired.files_removed + expired.orphans_removed
    receipt.bytes_removed += expired.bytes_removed
    receipt.unreferenced_files_in_grace += expired.orphans_kept_in_grace
    receipt.rows_remaining += _remaining(table, match)


def _withdraw_published(table: Table, match: BooleanExpression, receipt: Receipt) -> None:
    """An erasure outranks a DOI's promise of the same bytes forever: a published
    version whose snapshot holds the student's rows loses its Iceberg tag (so expiry
    can delete those files) and its files, and is recorded as withdrawn."""
    name = ".".join(table.name()[-2:])
    for ref_name, ref in list(table.metadata.refs.items()):
        if not ref_name.startswith(PUBLISH_TAG_PREFIX):
            continue
        if not table.scan(row_filter=match, snapshot_id=ref.snapshot_id).count():
            continue
        # the version record first (under the dataset's lock: a publish run in progress
        # finishes before), then the tag, so expiry deletes the files the rows are in
        if withdraw_version(ref_name, f"erasure {receipt.request_id}"):
            receipt.published_versions_withdrawn.append(f"{name}@{ref_name}")
        writes.release_snapshot(table, ref_name)


def _remaining(table: Table, match: BooleanExpression) -> int:
    """Rows of the subject that any snapshot still left in the table can read."""
    total = 0
    for snap in table.snapshots():
        total += table.scan(row_filter=match, snapshot_id=snap.snapshot_id).count()
    return total


@dataclass
class Maintenance:
    tables: int = 0
    snapshots_expired: int = 0
    files_removed: int = 0
    bytes_removed: int = 0
    orphans_kept_in_grace: int = 0
    per_table: dict[str, int] = field(default_factory=dict)


def expire_history(
    catalog: Catalog,
    retention: dt.timedelta,
    orphan_grace: dt.timedelta = dt.timedelta(hours=1),
) -> Maintenance:
    """Expire, on every table past bronze, the snapshots older than `retention` and delete
    the files nothing needs any more: an erased row leaves storage within the retention."""
    cutoff = dt.datetime.now(dt.UTC) - retention
    out = Maintenance()
    for table in derived_tables(catalog):
        done = writes.expire(table, older_than=cutoff, orphan_grace=orphan_grace)
        out.tables += 1
        out.snapshots_expired += done.snapshots_expired
        out.files_removed += done.files_removed + done.orphans_removed
        out.bytes_removed += done.bytes_removed
        out.orphans_kept_in_grace += done.orphans_kept_in_grace
        out.per_table[done.table] = done.snapshots_expired
    return out


def is_erased(catalog: Catalog, did: str) -> bool:
    """Whether the data subject with this DID asked for erasure (bronze.erasure_requests)."""
    registry = load_table_or_none(catalog, *SUBJECTS)
    if registry is None:
        return False
    rows = registry.scan(row_filter=writes.eq_filter("did", did), selected_fields=("student_id",))
    students = {int(s) for s in rows.to_arrow().column("student_id").to_pylist()}
    return bool(students & read_register(catalog).students)
