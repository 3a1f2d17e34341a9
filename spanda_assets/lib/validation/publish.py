"""Maintain gold.validated_<name> and its share of gold.quarantine from silver, incrementally.

Like silver from bronze (lib/incremental.py), a gold run reads only the silver
rows added since the silver sequence number its last run recorded (a file
rewritten from one gold had already read is skipped), and the markers commit
with the rows. What else can change a gold row is handled
explicitly, each at the cost of what changed:

* consent: students whose consent events are newer than the recorded consent
  watermark are re-decided; a withdrawal deletes their gold and quarantine
  rows, a new grant reads their silver rows (by subject) into gold;
* references: when the key set of silver.courses or silver.students changed, the rows
  quarantined by a reference rule are re-read from silver and re-checked, so a
  course that appears releases the posts that named it;
* a fixed source row reaches silver as an appended row: the gold row or the
  quarantine entry of its key is replaced.

A full rebuild (one overwrite commit) happens only when there is no gold table
yet, silver or a reference table was rebuilt (new table UUID), or the rules
or columns changed (fingerprint in the summary).

Write-audit-publish: `stage_gold` writes gold's audit branch; the asset audits
it with the data contracts and publishes it (lib/writes.publish) only when
they pass. A consent withdrawal is erased from gold main at once. The shared
gold.quarantine holds keys, rule names and reasons, never a row's content:
it is written directly, committed before the gold commit that records its
snapshot.

Keys do not vanish from the reference tables otherwise: the extract never
deletes, and a student erased from silver.students withdrew research consent,
which the consent step above already applies to gold.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table, Transaction

from spanda_assets.lib import faults, scale, writes
from spanda_assets.lib.arrow_types import normalize
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.incremental import new_files, read_files, rows_added_after
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.privacy.erasure import read_register
from spanda_assets.lib.privacy.silver import BRONZE_SEQ_KEY, GENERATION_KEY, changed_students
from spanda_assets.lib.validation.gold import (
    QUARANTINE_SCHEMA,
    REFERENCE_TABLES,
    GoldSpec,
    Split,
    reference_keys,
    reference_tables,
    split,
)
from spanda_assets.lib.validation.quarantine import QUARANTINE, QuarantineChanges, quarantined
from spanda_assets.lib.writes import AUDIT, MAIN, in_filter

SILVER_SEQ_KEY = "spanda.silver-sequence"
SILVER_UUID_KEY = "spanda.silver-uuid"
REFS_KEY = "spanda.references"
RULES_KEY = "spanda.rules"
CONSENT_KEY = "spanda.consent-watermark"
QUARANTINE_SNAPSHOT_KEY = "spanda.quarantine-snapshot"
ERASURES_KEY = "spanda.erasure-requests"  # requests in the erasure register already applied
SILVER_GENERATION_KEY = "spanda.silver-generation"
STATE_KEYS = (
    SILVER_SEQ_KEY,
    SILVER_UUID_KEY,
    REFS_KEY,
    RULES_KEY,
    CONSENT_KEY,
    QUARANTINE_SNAPSHOT_KEY,
    ERASURES_KEY,
    SILVER_GENERATION_KEY,
)


@dataclass
class GoldConsent:
    """Who may be in gold: pseudonymous subjects with active consent, and what changed."""

    active: set[str]
    watermark: int  # newest consent event id considered
    changed_since: Callable[[int], set[str]]  # watermark -> subjects with newer events


@dataclass
class GoldResult:
    valid: int = 0
    quarantined: int = 0
    released: int = 0
    without_consent: int = 0
    erased: int = 0
    rows_read: int = 0  # silver rows added since the last run
    rows_reread: int = 0  # silver rows read again: consent grants, reference releases
    total_rows: int = 0
    total_quarantined: int = 0
    full_rebuild: bool = False
    failures: dict[str, int] = field(default_factory=dict)
    snapshot_id: int | None = None  # the audit branch's head after the run
    audit_reset: bool = False
    fanout: scale.FanOut = field(default_factory=scale.FanOut)


@dataclass(frozen=True)
class SplitBatch:
    """One silver batch through the consent filter and the row rules."""

    keys: pa.Array  # every key of the batch, as text (consented or not)
    without_consent: int
    parts: Split


def split_batch(
    rows: pa.Table, spec: GoldSpec, allowed: pa.Array, refs: dict[str, pa.Array]
) -> SplitBatch:
    """Consent filter, then the rules. Pure: the unit that fans out (lib/scale.py)."""
    keys = pc.cast(rows.column(spec.key), pa.string()).combine_chunks()
    consented = rows.filter(pc.fill_null(pc.is_in(rows["subject_id"], value_set=allowed), False))
    return SplitBatch(keys, rows.num_rows - consented.num_rows, split(spec, consented, refs))


def fingerprint(spec: GoldSpec) -> str:
    """Identity of the rules and columns: a change to either rebuilds gold."""
    doc = [
        spec.key,
        list(spec.columns),
        [list(t) for t in spec.types],
        [(name, reason) for name, _, reason in spec.derived],
        [(r.name, r.reason) for r in spec.rules],
    ]
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def _references(catalog: Catalog) -> tuple[dict[str, pa.Array], dict[str, str]]:
    """Key sets of the reference tables, and their identity for the summary:
    "<table uuid>:<digest of the key set>" per reference column."""
    tables = reference_tables(catalog, REFERENCE_TABLES)
    arrays = reference_keys(tables)
    state = {c: f"{tables[c].metadata.table_uuid}:{_digest(keys)}" for c, keys in arrays.items()}
    return arrays, state


def _digest(keys: pa.Array) -> str:
    """Order-independent identity of a key set (a dimension table: thousands of keys)."""
    distinct = pc.unique(keys)
    ordered = distinct.take(pc.sort_indices(distinct))
    text = "\n".join(str(k) for k in ordered.to_pylist())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _uuids(refs_state: dict[str, str]) -> dict[str, str]:
    return {k: v.split(":")[0] for k, v in refs_state.items()}


def _references_changed(spec: GoldSpec, before: dict[str, str], now: dict[str, str]) -> bool:
    """Did a key set that one of the spec's reference rules looks up change?"""
    return any(before.get(c) != now.get(c) for c in spec.references)


def stage_gold(
    catalog: Catalog,
    spec: GoldSpec,
    consent: GoldConsent,
    *,
    upsert: bool,
    run_id: str = "",
    batch_rows: int = 250_000,
) -> GoldResult:
    """Bring gold.<spec.name>'s audit branch and its quarantine rows up to date with silver
    main, and erase withdrawn students from gold main. Idempotent, crash-safe."""
    ensure_namespace(catalog, "gold")
    silver = catalog.load_table(("silver", spec.source))
    silver_state = writes.read_state(silver, BRONZE_SEQ_KEY, (GENERATION_KEY,), MAIN)
    if silver.current_snapshot() is None or not writes.read_state(
        silver, BRONZE_SEQ_KEY, (BRONZE_SEQ_KEY,), MAIN
    ):
        raise SpandaError(
            f"gold.{spec.name}: silver.{spec.source} has published nothing yet (its first "
            f"audit has not passed: see the residual_pii check of silver/{spec.source})"
        )
    # Read late, after consent: a request registered while this run started still counts.
    register = read_register(catalog)
    if register.subjects:
        consent = replace(consent, active=consent.active - register.subjects)
    refs, refs_state = _references(catalog)
    quarantine = catalog.create_table_if_not_exists(QUARANTINE, schema=QUARANTINE_SCHEMA)
    if "subject_id" not in quarantine.schema().column_names:  # created by an older version
        with quarantine.update_schema() as update:
            update.union_by_name(QUARANTINE_SCHEMA)
    gold = load_table_or_none(catalog, "gold", spec.name)
    result = GoldResult(failures=dict.fromkeys(spec.rule_names, 0))
    if gold is not None:
        # Withdrawals reach gold main (and the quarantine) now, whatever the audit says.
        main_state = writes.read_state(gold, SILVER_SEQ_KEY, STATE_KEYS, MAIN)
        if main_state:
            changed = consent.changed_since(int(main_state.get(CONSENT_KEY, 0) or 0))
            withdrawn = sorted(changed - consent.active)
            if int(main_state.get(ERASURES_KEY, 0) or 0) != register.requests:
                withdrawn = sorted(set(withdrawn) | register.subjects)
            if withdrawn:
                result.erased += writes.erase_rows(gold, in_filter("subject_id", withdrawn))
                writes.erase_rows(quarantine, in_filter("subject_id", withdrawn))
                faults.point("after_erase")
        result.audit_reset = writes.open_audit(gold)
    state = writes.read_state(gold, SILVER_SEQ_KEY, STATE_KEYS, AUDIT)
    previous_refs: dict[str, str] = json.loads(state.get(REFS_KEY, "{}"))
    full = (
        gold is None
        or not state
        or state.get(SILVER_UUID_KEY) != str(silver.metadata.table_uuid)
        or state.get(SILVER_GENERATION_KEY, "") != silver_state.get(GENERATION_KEY, "")
        or state.get(RULES_KEY) != fingerprint(spec)
        or _uuids(previous_refs) != _uuids(refs_state)
    )
    result.full_rebuild = full
    props = {
        SILVER_SEQ_KEY: str(writes.sequence(silver.current_snapshot())),
        SILVER_UUID_KEY: str(silver.metadata.table_uuid),
        REFS_KEY: json.dumps(refs_state, sort_keys=True),
        RULES_KEY: fingerprint(spec),
        CONSENT_KEY: str(consent.watermark),
        ERASURES_KEY: str(register.requests),
        SILVER_GENERATION_KEY: silver_state.get(GENERATION_KEY, ""),
        "spanda.run-id": run_id or "manual",
    }
    # The quarantine as the last gold run left it (time travel): if a run crashed after its
    # quarantine commit and before its gold commit, the retry still sees the entries it
    # must re-check, and re-derives the same changes.
    held = QuarantineChanges.start(quarantine, spec.name, state.get(QUARANTINE_SNAPSHOT_KEY))
    run = _GoldRun(spec, consent, refs, result, held, scale.runner(f"gold.{spec.name}"))
    if full:
        run.rebuild(catalog, silver, props, batch_rows)
    else:
        assert gold is not None
        refs_changed = _references_changed(spec, previous_refs, refs_state)
        erasures = (
            register.subjects if state.get(ERASURES_KEY, "0") != str(register.requests) else set()
        )
        tx = gold.transaction()
        run.increment(tx, gold, silver, state, refs_changed, upsert, batch_rows, set(erasures))
        run.commit(tx, gold, props)

    gold = catalog.load_table(("gold", spec.name))
    snap = writes.head(gold, AUDIT)
    result.snapshot_id = snap.snapshot_id if snap else None
    result.total_rows = writes.row_count(gold, AUDIT)
    result.total_quarantined = quarantined(catalog.load_table(QUARANTINE), spec.name).num_rows
    result.fanout = run.runner.stats
    return result


def _arrow_schema(table: Table) -> pa.Schema:
    return pa.schema(
        [pa.field(f.name, f.type, nullable=f.nullable) for f in table.schema().as_arrow()]
    )


class _GoldRun:
    """One gold run: splits silver rows into gold and quarantine, and writes both.

    Fixed for the run: the spec, the subjects with consent, the reference key
    sets. Accumulated: the counts in `result` and the quarantine changes. The
    gold transaction is passed to each step, never kept here.
    """

    def __init__(
        self,
        spec: GoldSpec,
        consent: GoldConsent,
        refs: dict[str, pa.Array],
        result: GoldResult,
        quarantine: QuarantineChanges,
        runner: scale.Runner | None = None,
    ) -> None:
        self.runner = runner or scale.Runner(f"gold.{spec.name}")
        self.spec = spec
        self.consent = consent
        self.allowed = pa.array(sorted(consent.active), pa.string())
        self.refs = refs
        self.result = result
        self.quarantine = quarantine

    def split(self, rows: pa.Table | SplitBatch) -> tuple[pa.Table, pa.Table]:
        """Consent filter, then the rules (unless a worker did: a SplitBatch), and the
        counts: (valid rows, quarantine rows)."""
        done = rows if isinstance(rows, SplitBatch) else self.split_batch(rows)
        self.result.without_consent += done.without_consent
        parts = done.parts
        for name, n in parts.failures.items():
            self.result.failures[name] = self.result.failures.get(name, 0) + n
        self.quarantine.hold(parts.quarantine)
        self.result.quarantined += parts.quarantine.num_rows
        return parts.valid, parts.quarantine

    def split_batch(self, rows: pa.Table) -> SplitBatch:
        return split_batch(rows, self.spec, self.allowed, self.refs)

    def fan_out(self, batches: Iterable[pa.RecordBatch], skip: pa.Array | None = None) -> Any:
        """The batches split by the runner (in process or on Ray), in order; `skip`: keys
        already handled this run."""

        def tables() -> Iterator[pa.Table]:
            for batch in batches:
                rows = pa.Table.from_batches([batch])
                self.result.rows_read += rows.num_rows
                if skip is not None and len(skip):
                    rows = rows.filter(pc.invert(pc.is_in(rows[self.spec.key], value_set=skip)))
                yield rows

        return self.runner.map(split_batch, tables(), self.spec, self.allowed, self.refs)

    # ------------------------------------------------------------------ full rebuild
    def rebuild(
        self, catalog: Catalog, silver: Table, props: dict[str, str], batch_rows: int
    ) -> None:
        """Every silver row, in one overwrite commit on the audit branch."""
        spec = self.spec
        schema = spec.output_schema(silver.schema().as_arrow())
        existing = load_table_or_none(catalog, "gold", spec.name)
        if existing is not None and (
            _names(existing) != schema.names or _types(existing) != _types_of(schema)
        ):
            catalog.drop_table(("gold", spec.name))  # the columns changed
        table = catalog.create_table_if_not_exists(
            ("gold", spec.name), schema=schema, properties={writes.NO_RETRY: "0"}
        )
        writes.open_audit(table)
        target = _arrow_schema(table)
        tx = table.transaction()
        first = True
        for done in self.fan_out(rows_added_after(silver, 0, batch_rows)):
            valid, _ = self.split(done)
            valid = valid.cast(target)
            if first:
                writes.replace_all(tx, table, valid, branch=AUDIT)
                first = False
            else:
                tx.append(valid, branch=AUDIT)
            self.result.valid += valid.num_rows
        if first:
            writes.replace_all(tx, table, target.empty_table(), branch=AUDIT)
        props[QUARANTINE_SNAPSHOT_KEY] = self.quarantine.write(replace_table=True)
        writes.close_run(tx, target, props, AUDIT)
        tx.commit_transaction()

    # ------------------------------------------------------------------ incremental
    def increment(
        self,
        tx: Transaction,
        gold: Table,
        silver: Table,
        state: dict[str, str],
        refs_changed: bool,
        upsert: bool,
        batch_rows: int,
        erased: set[str],
    ) -> None:
        """Stage in `tx` what changed since gold's last run: consent, references, new rows."""
        spec = self.spec
        done: set[str] = set()  # keys already merged this run (consent grants, releases)

        # 1. consent changes since the last run
        changed = self.consent.changed_since(int(state.get(CONSENT_KEY, 0) or 0))
        withdrawn = sorted((changed - self.consent.active) | erased)
        granted = sorted(changed & self.consent.active)
        if withdrawn:
            gone = writes.scan(
                gold,
                AUDIT,
                row_filter=in_filter("subject_id", withdrawn),
                selected_fields=(spec.key,),
            ).to_arrow()
            if gone.num_rows:
                tx.delete(delete_filter=in_filter("subject_id", withdrawn), branch=AUDIT)
                self.result.erased += gone.num_rows
            self.quarantine.drop_subjects.update(withdrawn)
        if granted:
            rows = silver.scan(row_filter=in_filter("subject_id", granted)).to_arrow()
            self.result.rows_reread += rows.num_rows
            done.update(self.merge(tx, gold, rows, merge=True))

        # 2. reference tables advanced: re-check rows quarantined by a reference rule
        if refs_changed:
            ref_rules = [r.name for r in spec.rules if r.references]
            keys = sorted(self.quarantine.held_by(ref_rules) - done)
            if keys:
                rows = silver.scan(row_filter=in_filter(spec.key, keys)).to_arrow()
                self.result.rows_reread += rows.num_rows
                done.update(self.merge(tx, gold, rows, merge=upsert))

        # 3. silver rows added since the last run. Rewrites of files gold had processed are
        # left out; rewrites of files it had not are merged on the key (lib/incremental.py).
        files = new_files(silver, int(state.get(SILVER_SEQ_KEY, 0) or 0))
        skip = pa.array(sorted(done), pa.string())
        for tasks, merge in ((files.appended, upsert), (files.rewritten, True)):
            for batch in self.fan_out(read_files(silver, tasks, batch_rows), skip):
                self.merge(tx, gold, batch, merge=merge)

    def merge(
        self, tx: Transaction, gold: Table, rows: pa.Table | SplitBatch, *, merge: bool
    ) -> set[str]:
        """Split `rows` (unless split already); valid ones into gold, failing ones out of it.
        Returns the keys handled."""
        spec = self.spec
        done = rows if isinstance(rows, SplitBatch) else self.split_batch(rows)
        keys = done.keys
        valid, failed = self.split(done)
        failing = set(failed.column("row_key").to_pylist())
        self.result.released += len(self.quarantine.handled(keys) - failing)
        if merge and failed.num_rows:  # a row that was valid and now fails leaves gold
            bad = sorted(failing)
            present = writes.staged_scan(
                tx, gold, AUDIT, row_filter=in_filter(spec.key, bad), selected_fields=(spec.key,)
            ).to_arrow()
            if present.num_rows:
                tx.delete(delete_filter=in_filter(spec.key, bad), branch=AUDIT)
        valid = valid.cast(_arrow_schema(gold))
        if valid.num_rows:
            if merge:
                writes.merge_rows(tx, gold, valid, [spec.key], {}, branch=AUDIT)
            else:
                tx.append(valid, branch=AUDIT)
            self.result.valid += valid.num_rows
        return set(keys.to_pylist())

    def commit(self, tx: Transaction, gold: Table, props: dict[str, str]) -> None:
        """The quarantine commit, then gold's, which records the quarantine snapshot."""
        props[QUARANTINE_SNAPSHOT_KEY] = self.quarantine.write(replace_table=False)
        faults.point("gold_between_commits")
        # The position rides on an (empty when nothing else changed) append, like silver's.
        writes.close_run(tx, _arrow_schema(gold), props, AUDIT)
        tx.commit_transaction()


def _names(table: Table) -> list[str]:
    return [f.name for f in table.schema().fields]


def _types(table: Table) -> list[str]:
    return _types_of(table.schema().as_arrow())


def _types_of(schema: pa.Schema) -> list[str]:
    return [str(normalize(f.type)) for f in schema]


def changed_subjects(events: pa.Table, subjects: dict[int, str]) -> Callable[[int], set[str]]:
    """`GoldConsent.changed_since` over the consent events (student ids -> subject ids)."""

    def since(watermark: int) -> set[str]:
        return {subjects[s] for s in changed_students(events, watermark) if s in subjects}

    return since
