"""bronze.<table> -> silver.<table>: de-identified, consent-filtered, incremental.

Incremental by Iceberg sequence number: silver's snapshot summary records the
bronze sequence number it has processed; the next run reads only the bronze
data files added after it (appended rows, or files rewritten by an upsert),
so cost grows with new data. The bronze sequence number and the consent
watermark commit with the silver rows, in one transaction, like the extract's
watermark.

Consent: rows of students without active consent for the table's purpose are
never written. When a student's consent changes (a new consent event past the
consent watermark), a withdrawal deletes their rows from silver (Iceberg row
deletes) and a new grant brings their bronze rows back in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.incremental import new_files, read_files, run_state
from spanda_assets.lib.privacy import generalize
from spanda_assets.lib.privacy.policy import TablePolicy
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.privacy.scrub import Roster, scrub

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

BRONZE_SEQ_KEY = "spanda.bronze-sequence"
BRONZE_UUID_KEY = "spanda.bronze-uuid"
CONSENT_KEY = "spanda.consent-watermark"


@dataclass
class SilverInputs:
    """What a silver run needs besides the bronze table itself."""

    policy: TablePolicy
    pseudonymizer: Pseudonymizer
    subjects: dict[int, str]  # student_id -> subject_id (pseudonym of the DID)
    active: set[int] | None  # students with active consent for the purpose; None: no subject
    consent_events: pa.Table  # valid consent events (student_id, consent_event_id, ...)
    roster: Roster | None
    on: dt.date
    upsert: bool


@dataclass
class SilverResult:
    table: str
    rows_read: int = 0
    rows_written: int = 0
    rows_updated: int = 0
    rows_without_consent: int = 0
    rows_erased: int = 0
    subjects_erased: int = 0
    subjects_restored: int = 0
    total_rows: int = 0
    snapshot_id: int | None = None
    bronze_sequence: int = 0
    full_rebuild: bool = False
    columns: dict[str, str] = field(default_factory=dict)


def transform(batch: pa.Table, inputs: SilverInputs) -> pa.Table:
    """Apply the column policy to a batch of bronze rows (already consent-filtered)."""
    policy = inputs.policy
    arrays: list[pa.Array | pa.ChunkedArray] = []
    names: list[str] = []
    for name in batch.schema.names:
        rule = policy.columns[name]
        out = rule.output_name()
        if out is None:
            continue
        col = batch.column(name)
        if rule.action == "keep":
            arr: pa.Array | pa.ChunkedArray = col
        elif rule.action == "pseudonymize":
            arr = inputs.pseudonymizer.array(f"{policy.table}.{name}", col)
        elif rule.action == "subject":
            arr = _subjects(col, inputs.subjects, policy.table, name)
        elif rule.action == "generalize_year":
            arr = generalize.year(col)
        elif rule.action == "generalize_zip3":
            arr = generalize.zip3(col)
        elif rule.action == "generalize_birth_date":
            arr = generalize.birth_year(col, inputs.on)
        elif rule.action == "scrub":
            arr = pa.array([scrub(v, inputs.roster) for v in col.to_pylist()], pa.string())
        else:  # pragma: no cover - parse_policy rejects unknown actions
            raise SpandaError(f"unknown action {rule.action}")
        arrays.append(arr)
        names.append(out)
    key = policy.key_output
    fields = [pa.field(n, a.type, nullable=n != key) for n, a in zip(names, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _subjects(
    col: pa.ChunkedArray | pa.Array, subjects: dict[int, str], table: str, name: str
) -> pa.Array:
    out: list[str | None] = []
    for v in col.to_pylist():
        if v is None:
            out.append(None)
            continue
        sid = subjects.get(v)
        if sid is None:
            raise SpandaError(
                f"silver.{table}: {name}={v} has no registered data subject (DID); materialize "
                "bronze/data_subjects after bronze/students, then re-run"
            )
        out.append(sid)
    return pa.array(out, pa.string())


def _consented(batch: pa.Table, column: str | None, active: set[int] | None) -> pa.Table:
    if column is None or active is None:
        return batch
    mask = pc.is_in(batch.column(column), value_set=pa.array(sorted(active), pa.int64()))
    return batch.filter(pc.fill_null(mask, False))


def _summary(table: Table | None) -> dict[str, str]:
    return run_state(table, BRONZE_SEQ_KEY, (BRONZE_SEQ_KEY, BRONZE_UUID_KEY, CONSENT_KEY))


def _bronze_rows_of(bronze: Table, column: str, students: set[int]) -> pa.Table:
    from spanda_assets.lib.lakehouse import in_filter

    return bronze.scan(row_filter=in_filter(column, students)).to_arrow()


def silver_schema(bronze_schema: pa.Schema, inputs: SilverInputs) -> pa.Schema:
    empty = pa.Table.from_batches([], schema=bronze_schema)
    return transform(empty, inputs).schema


def publish(
    *,
    catalog: Catalog,
    bronze: Table,
    inputs: SilverInputs,
    batch_rows: int = 100_000,
    run_id: str = "",
) -> SilverResult:
    """Bring silver.<table> up to date with bronze.<table>. Idempotent, crash-safe."""
    from spanda_assets.lib.extract import NO_RETRY, merge_rows
    from spanda_assets.lib.lakehouse import (
        ensure_namespace,
        in_filter,
        load_table_or_none,
        row_count,
    )

    policy = inputs.policy
    result = SilverResult(table=f"silver.{policy.table}")
    bronze_arrow = bronze.schema().as_arrow()
    policy.check_covers(bronze_arrow)
    target = silver_schema(bronze_arrow, inputs)
    key = policy.key_output

    ensure_namespace(catalog, "silver")
    silver = load_table_or_none(catalog, "silver", policy.table)
    state = _summary(silver)
    bronze_uuid = str(bronze.metadata.table_uuid)
    rebuild = silver is not None and state.get(BRONZE_UUID_KEY) not in (None, bronze_uuid)
    if silver is not None and _schema_changed(silver, target):
        rebuild = True  # policy or source columns changed: rebuild from bronze
    if rebuild and silver is not None:
        catalog.drop_table(("silver", policy.table))
        silver, state = None, {}
    result.full_rebuild = rebuild or silver is None
    if silver is None:
        silver = catalog.create_table_if_not_exists(
            ("silver", policy.table),
            schema=target,
            properties={
                "spanda.policy-table": policy.table,
                "spanda.purpose": policy.purpose,
                NO_RETRY: "0",
            },
        )
        with silver.update_schema() as upd:
            upd.set_identifier_fields(key)
    target = pa.schema(
        [pa.field(f.name, f.type, nullable=f.nullable) for f in silver.schema().as_arrow()]
    )

    after_seq = int(state.get(BRONZE_SEQ_KEY, 0) or 0)
    bronze_snap = bronze.current_snapshot()
    bronze_seq = int(bronze_snap.sequence_number or 0) if bronze_snap else 0
    subject_col = policy.subject_column
    tx = silver.transaction()
    wrote = False

    def write(rows: pa.Table, merge: bool) -> None:
        nonlocal wrote
        rows = rows.select(target.names).cast(target)
        if not rows.num_rows:
            return
        if merge and silver.current_snapshot() is not None:
            inserted, updated = merge_rows(tx, silver, rows, [key], {})
            result.rows_written += inserted
            result.rows_updated += updated
        else:
            tx.append(rows)
            result.rows_written += rows.num_rows
        wrote = True

    # 1. consent changes since the last run: erase withdrawn, restore re-granted
    consent_wm = consent_watermark(inputs.consent_events)
    changed = changed_students(inputs.consent_events, int(state.get(CONSENT_KEY, 0) or 0))
    restored: set[int] = set()
    if subject_col and inputs.active is not None and after_seq and changed:
        withdrawn = {s for s in changed if s not in inputs.active}
        restored = changed & inputs.active
        gone = [inputs.subjects[s] for s in withdrawn if s in inputs.subjects]
        if gone:
            victims = silver.scan(
                row_filter=in_filter("subject_id", gone),
                selected_fields=("subject_id",),
            ).to_arrow()
            if victims.num_rows:
                tx.delete(delete_filter=in_filter("subject_id", gone))
                result.rows_erased = victims.num_rows
                result.subjects_erased = len(set(victims.column("subject_id").to_pylist()))
                wrote = True
        if restored:
            back = _bronze_rows_of(bronze, subject_col, restored)
            result.subjects_restored = len(restored)
            write(transform(back, inputs), merge=True)

    # 2. new bronze rows since the last run
    # Files an upsert's delete rewrote from files silver already processed hold rows silver
    # has: skipped. Rewrites of files it had not processed yet are merged on the key.
    files = new_files(bronze, after_seq)
    for tasks, merge in ((files.appended, inputs.upsert), (files.rewritten, True)):
        for batch in read_files(bronze, tasks, batch_rows):
            rows = pa.Table.from_batches([batch])
            result.rows_read += rows.num_rows
            allowed = _consented(rows, subject_col, inputs.active)
            if restored and subject_col:  # already merged in full above
                mask = pc.is_in(allowed.column(subject_col), pa.array(sorted(restored), pa.int64()))
                allowed = allowed.filter(pc.invert(mask))
            result.rows_without_consent += rows.num_rows - allowed.num_rows
            write(transform(allowed, inputs), merge=merge)

    previous = (after_seq, int(state.get(CONSENT_KEY, 0) or 0))
    if wrote or previous != (bronze_seq, consent_wm):
        props = {
            BRONZE_SEQ_KEY: str(bronze_seq),
            BRONZE_UUID_KEY: bronze_uuid,
            CONSENT_KEY: str(consent_wm),
            "spanda.run-id": run_id or "manual",
        }
        # The watermarks ride on an (empty when nothing else changed) append.
        tx.append(target.empty_table(), snapshot_properties=props)
        tx.commit_transaction()
    silver.refresh()
    snap = silver.current_snapshot()
    result.snapshot_id = snap.snapshot_id if snap else None
    result.total_rows = row_count(silver)
    result.bronze_sequence = bronze_seq
    result.columns = {f.name: str(f.field_type) for f in silver.schema().fields}
    return result


def _schema_changed(silver: Table, target: pa.Schema) -> bool:
    from spanda_assets.lib.arrow_types import normalize

    have = {f.name: normalize(f.type) for f in silver.schema().as_arrow()}
    want = {f.name: normalize(f.type) for f in target}
    return have != want


def consent_watermark(events: pa.Table) -> int:
    if events.num_rows == 0:
        return 0
    return int(pc.max(events.column("consent_event_id")).as_py())


def changed_students(events: pa.Table, after: int) -> set[int]:
    """Students with a consent event newer than the consent watermark."""
    if events.num_rows == 0:
        return set()
    newer = events.filter(pc.greater(events.column("consent_event_id"), after))
    return set(newer.column("student_id").to_pylist())
