"""bronze.<table> -> silver.<table>: de-identified, consent-filtered, incremental.

Incremental by Iceberg sequence number: each run records the bronze sequence
number it has processed (lib/writes.read_state); the next run reads only the
bronze data files added after it (appended rows, or files rewritten by an
upsert), so cost grows with new data. The bronze sequence number and the
consent watermark commit with the silver rows, in one transaction, like the
extract's watermark.

Write-audit-publish: `stage_silver` writes to silver's audit branch; the
Dagster asset then runs the blocking residual-PII scan on what the branch
holds that main lacks, and publishes (lib/writes.publish) only if it passed.

Consent: rows of students without active consent for the table's purpose are
never written. When a student's consent changes (a new consent event past the
consent watermark), a withdrawal deletes their rows from silver main at once,
without waiting for an audit (a delete only removes data), and from the audit
branch; a new grant brings their bronze rows back in through the audit.

Ages: Safe Harbor turns ages over 89 into "90+". A student who turns 90 after
silver first wrote them is re-derived by the first run after their birthday:
each run reads the bronze rows whose birth date crossed the line since the
date the previous run recorded.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, GreaterThan, LessThanOrEqual, Reference

from spanda_assets.lib import faults, scale, writes
from spanda_assets.lib.arrow_types import normalize, type_name
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.incremental import new_files, read_files
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.privacy import generalize
from spanda_assets.lib.privacy.erasure import read_register
from spanda_assets.lib.privacy.policy import TablePolicy
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.privacy.scrub import Roster, scrub
from spanda_assets.lib.writes import AUDIT, MAIN, in_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

BRONZE_SEQ_KEY = "spanda.bronze-sequence"
BRONZE_UUID_KEY = "spanda.bronze-uuid"
CONSENT_KEY = "spanda.consent-watermark"
AS_OF_KEY = "spanda.as-of"
RULES_KEY = "spanda.deid-rules"
ERASURES_KEY = "spanda.erasure-requests"  # requests in the erasure register already applied
# Changes at each full rebuild: gold rebuilds from a silver table whose generation changed.
GENERATION_KEY = "spanda.generation"
STATE_KEYS = (
    BRONZE_SEQ_KEY,
    BRONZE_UUID_KEY,
    CONSENT_KEY,
    AS_OF_KEY,
    RULES_KEY,
    ERASURES_KEY,
    GENERATION_KEY,
)


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
    # The institution's own identifier formats the scrubber removes: (category, RE2 pattern).
    site: tuple[tuple[str, str], ...] = ()
    # Identity of the de-identification rules (policy and site formats): when it changes,
    # the rows not yet published are re-derived with the new rules.
    rules: str = ""


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
    rows_turned_90: int = 0
    audit_reset: bool = False
    total_rows: int = 0
    snapshot_id: int | None = None
    bronze_sequence: int = 0
    full_rebuild: bool = False
    columns: dict[str, str] = field(default_factory=dict)
    fanout: scale.FanOut = field(default_factory=scale.FanOut)


@dataclass(frozen=True)
class Deidentified:
    """One bronze batch after the consent filter and the column policy."""

    rows: pa.Table
    read: int
    without_consent: int


def deidentify(rows: pa.Table, inputs: SilverInputs, restored: frozenset[int]) -> Deidentified:
    """A batch of new bronze rows as silver rows: the consent filter, then the policy.

    Pure (no catalog, no clock): the unit that fans out to Ray workers (lib/scale.py).
    Rows of `restored` students are left out: their whole history was merged already.
    """
    subject_col = inputs.policy.subject_column
    allowed = _consented(rows, subject_col, inputs.active)
    if restored and subject_col:
        mask = pc.is_in(allowed.column(subject_col), pa.array(sorted(restored), pa.int64()))
        allowed = allowed.filter(pc.invert(mask))
    return Deidentified(transform(allowed, inputs), rows.num_rows, rows.num_rows - allowed.num_rows)


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
            _needs_date(col, policy.table, name, rule.action)
            arr = generalize.year(col)
        elif rule.action == "generalize_zip3":
            arr = generalize.zip3(col)
        elif rule.action == "generalize_birth_date":
            _needs_date(col, policy.table, name, rule.action)
            arr = generalize.birth_year(col, inputs.on)
        elif rule.action == "scrub":
            arr = pa.array(
                [scrub(v, inputs.roster, inputs.site) for v in col.to_pylist()], pa.string()
            )
        else:  # pragma: no cover - parse_policy rejects unknown actions
            raise SpandaError(f"unknown action {rule.action}")
        arrays.append(arr)
        names.append(out)
    key = policy.key_output
    fields = [pa.field(n, a.type, nullable=n != key) for n, a in zip(names, arrays, strict=True)]
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _needs_date(col: pa.Array | pa.ChunkedArray, table: str, name: str, action: str) -> None:
    """A date rule on a column that holds no dates stops the run with what to change."""
    t = col.type
    if pa.types.is_date(t) or pa.types.is_timestamp(t) or pa.types.is_null(t):
        return

    raise SpandaError(
        f"silver.{table}: column {name} of bronze.{table} is {type_name(t)}, but its policy action "
        f"{action} needs a date or timestamp. Declare the source column's type under "
        f"`column_types` of table {table} in sources.yaml (for example `BeginDate: date`), "
        "then re-extract it with `spanda extract --full-refresh`. Nothing was written."
    )


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


def _bronze_rows_of(bronze: Table, column: str, students: set[int]) -> pa.Table:
    return bronze.scan(row_filter=in_filter(column, students)).to_arrow()


def silver_schema(bronze_schema: pa.Schema, inputs: SilverInputs) -> pa.Schema:
    empty = pa.Table.from_batches([], schema=bronze_schema)
    return transform(empty, inputs).schema


def stage_silver(
    *,
    catalog: Catalog,
    bronze: Table,
    inputs: SilverInputs,
    batch_rows: int = 100_000,
    run_id: str = "",
) -> SilverResult:
    """Bring silver.<table>'s audit branch up to date with bronze.<table>, and erase
    withdrawn students from main. Idempotent, crash-safe. Publishing is the caller's
    step, after the audit (lib/writes.publish)."""
    policy = inputs.policy
    result = SilverResult(table=f"silver.{policy.table}")
    runner = scale.runner(result.table)  # a wrong SPANDA_EXECUTOR stops the run here
    bronze_arrow = bronze.schema().as_arrow()
    policy.check_covers(bronze_arrow)
    target = silver_schema(bronze_arrow, inputs)
    key = policy.key_output
    subject_col = policy.subject_column

    ensure_namespace(catalog, "silver")
    silver = load_table_or_none(catalog, "silver", policy.table)
    bronze_uuid = str(bronze.metadata.table_uuid)
    consent_wm = consent_watermark(inputs.consent_events)
    # Read late, after consent: a request registered while this run started still counts.
    register = read_register(catalog)
    if inputs.active is not None and register.students:
        inputs = replace(inputs, active=inputs.active - register.students)

    if silver is not None:
        # 1. withdrawals and erasure requests reach main now, whatever the audit will say
        main_state = writes.read_state(silver, BRONZE_SEQ_KEY, STATE_KEYS, MAIN)
        gone = _withdrawn(inputs, int(main_state.get(CONSENT_KEY, 0) or 0))
        if int(main_state.get(ERASURES_KEY, 0) or 0) != register.requests:
            gone = sorted(set(gone) | register.subjects)
        if subject_col and gone and main_state:
            result.rows_erased += writes.erase_rows(silver, in_filter("subject_id", gone))
            faults.point("after_erase")
        result.audit_reset = writes.open_audit(silver)
        audit_state = writes.read_state(silver, BRONZE_SEQ_KEY, STATE_KEYS, AUDIT)
        if audit_state.get(RULES_KEY, "") != inputs.rules and writes.head(
            silver, AUDIT
        ) != writes.head(silver, MAIN):
            # The rules changed (a failed audit is being fixed): what is not published yet
            # is derived again with the new rules, from main's position.
            result.audit_reset = writes.reset_audit(silver)

    state = writes.read_state(silver, BRONZE_SEQ_KEY, STATE_KEYS, AUDIT)
    generation = state.get(GENERATION_KEY, "")
    rebuild = silver is not None and state.get(BRONZE_UUID_KEY) not in (None, bronze_uuid)
    if silver is not None and _schema_changed(silver, target):
        rebuild = True  # policy or source columns changed: rebuild from bronze
    if rebuild and silver is not None:
        # Rebuilt on the audit branch: readers keep main until the rebuild passes its audit.
        if not _evolve(silver, target):
            catalog.drop_table(("silver", policy.table))  # a column changed type: start over
            silver = None
        else:
            writes.reset_audit(silver)
        state = {}
    result.full_rebuild = rebuild or silver is None
    if result.full_rebuild:
        generation = uuid.uuid4().hex
    if silver is None:
        silver = catalog.create_table_if_not_exists(
            ("silver", policy.table),
            schema=target,
            properties={
                "spanda.policy-table": policy.table,
                "spanda.purpose": policy.purpose,
                writes.NO_RETRY: "0",
            },
        )
        with silver.update_schema() as upd:
            upd.set_identifier_fields(key)
        writes.open_audit(silver)
    target = pa.schema(
        [pa.field(f.name, f.type, nullable=f.nullable) for f in silver.schema().as_arrow()]
    )

    after_seq = int(state.get(BRONZE_SEQ_KEY, 0) or 0)
    bronze_seq = writes.sequence(bronze.current_snapshot())
    tx = silver.transaction()
    wrote = False
    replacing = rebuild  # the first write of a rebuild replaces what the branch held

    def write(rows: pa.Table, merge: bool) -> None:
        nonlocal wrote, replacing
        rows = rows.select(target.names).cast(target)
        if replacing:
            writes.replace_all(tx, silver, rows, branch=AUDIT)
            result.rows_written += rows.num_rows
            replacing, wrote = False, True
            return
        if not rows.num_rows:
            return
        staged = tx.table_metadata.snapshot_by_name(AUDIT)
        if merge and writes.snapshot_rows(staged) > 0:
            inserted, updated = writes.merge_rows(tx, silver, rows, [key], {}, branch=AUDIT)
            result.rows_written += inserted
            result.rows_updated += updated
        else:
            tx.append(rows, branch=AUDIT)
            result.rows_written += rows.num_rows
        wrote = True

    # 2. consent changes since the audit branch's last run: erase withdrawn, restore granted
    changed = changed_students(inputs.consent_events, int(state.get(CONSENT_KEY, 0) or 0))
    restored: set[int] = set()
    erasures_changed = int(state.get(ERASURES_KEY, 0) or 0) != register.requests
    if subject_col and inputs.active is not None and after_seq and (changed or erasures_changed):
        restored = changed & inputs.active
        gone = _withdrawn(inputs, int(state.get(CONSENT_KEY, 0) or 0))
        if erasures_changed:
            gone = sorted(set(gone) | register.subjects)
        if gone:
            victims = writes.scan(
                silver, AUDIT, row_filter=in_filter("subject_id", gone), selected_fields=(key,)
            ).to_arrow()
            if victims.num_rows:
                tx.delete(delete_filter=in_filter("subject_id", gone), branch=AUDIT)
                result.rows_erased += victims.num_rows
                wrote = True
        if restored:
            back = _consented(
                _bronze_rows_of(bronze, subject_col, restored), subject_col, inputs.active
            )
            result.subjects_restored = len(restored)
            write(transform(back, inputs), merge=True)
    if changed and inputs.active is not None:
        result.subjects_erased = len({s for s in changed if s not in inputs.active})

    # 3. students who turned 90 since the last run: their birth year becomes "90+"
    birth = next(
        (r.name for r in policy.columns.values() if r.action == "generalize_birth_date"), None
    )
    previous_day = state.get(AS_OF_KEY)
    if birth and after_seq and previous_day and previous_day < inputs.on.isoformat():
        crossed = _turned_90(bronze, birth, dt.date.fromisoformat(previous_day), inputs.on)
        crossed = _consented(crossed, subject_col, inputs.active)
        if crossed.num_rows:
            before = result.rows_updated
            write(transform(crossed, inputs), merge=True)
            result.rows_turned_90 = result.rows_updated - before

    # 4. new bronze rows since the last run
    # Files an upsert's delete rewrote from files silver already processed hold rows silver
    # has: skipped. Rewrites of files it had not processed yet are merged on the key.
    # The transform of each batch fans out (SPANDA_EXECUTOR); this process commits.
    files = new_files(bronze, after_seq)
    for tasks, merge in ((files.appended, inputs.upsert), (files.rewritten, True)):
        batches = (pa.Table.from_batches([b]) for b in read_files(bronze, tasks, batch_rows))
        for done in runner.map(deidentify, batches, inputs, frozenset(restored)):
            result.rows_read += done.read
            result.rows_without_consent += done.without_consent
            write(done.rows, merge=merge)
    result.fanout = runner.stats

    if replacing:  # a rebuild from an empty bronze table
        write(target.empty_table(), merge=False)
    new_state = {
        GENERATION_KEY: generation,
        BRONZE_SEQ_KEY: str(bronze_seq),
        BRONZE_UUID_KEY: bronze_uuid,
        CONSENT_KEY: str(consent_wm),
        AS_OF_KEY: inputs.on.isoformat(),
        RULES_KEY: inputs.rules,
        ERASURES_KEY: str(register.requests),
        "spanda.run-id": run_id or "manual",
    }
    if wrote or any(state.get(k, "") != new_state[k] for k in STATE_KEYS):
        # The position rides on an (empty when nothing else changed) append.
        writes.close_run(tx, target, new_state, AUDIT)
        faults.point("before_commit")
        tx.commit_transaction()
        faults.point("after_write")
    silver.refresh()
    staged = writes.head(silver, AUDIT)
    result.snapshot_id = staged.snapshot_id if staged is not None else None
    result.total_rows = writes.row_count(silver, AUDIT)
    result.bronze_sequence = bronze_seq
    result.columns = {f.name: str(f.field_type) for f in silver.schema().fields}
    return result


def _withdrawn(inputs: SilverInputs, after: int) -> list[str]:
    """Subject ids of students whose consent changed after `after` and is not active now."""
    if inputs.active is None:
        return []
    changed = changed_students(inputs.consent_events, after)
    return sorted(inputs.subjects[s] for s in changed - inputs.active if s in inputs.subjects)


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _turned_90(bronze: Table, column: str, since: dt.date, on: dt.date) -> pa.Table:
    """Bronze rows of people over 89 on `on` who were not yet on `since` (a day's margin:
    the transform decides exactly, and an unchanged row merges as a no-op)."""
    lo = _years_before(since, generalize.AGE_CAP + 1) - dt.timedelta(days=1)
    hi = _years_before(on, generalize.AGE_CAP + 1) + dt.timedelta(days=1)
    ref = Reference(column)
    after = GreaterThan(term=ref, value=lo.isoformat())  # type: ignore[arg-type]
    until = LessThanOrEqual(term=ref, value=hi.isoformat())  # type: ignore[arg-type]
    return bronze.scan(row_filter=And(after, until)).to_arrow()


def _evolve(silver: Table, target: pa.Schema) -> bool:
    """Bring silver's schema to `target` in place (columns added or dropped); False if a
    column changed type, which Iceberg cannot evolve to every type."""
    have = {f.name: normalize(f.type) for f in silver.schema().as_arrow()}
    want = {f.name: normalize(f.type) for f in target}
    if any(n in want and want[n] != t for n, t in have.items()):
        return False
    added = [f for f in target if f.name not in have]
    dropped = [n for n in have if n not in want]
    if added or dropped:
        with silver.update_schema() as upd:
            if added:
                upd.union_by_name(pa.schema(added))
            for name in dropped:
                upd.delete_column(name)
    return True


def _schema_changed(silver: Table, target: pa.Schema) -> bool:
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
