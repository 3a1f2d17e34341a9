"""Write-audit-publish in the asset graph: the audit is the asset's own blocking checks.

Every asset past bronze stages its rows on the table's audit branch (lib/), then
calls `write_audit_publish` with its audits. Each audit reads what the branch
holds that main lacks; their results are the asset's checks (declared with
`check_specs`, so the Dagster UI shows them, alerts follow them and
`all_deps_blocking_checks_passed` sees them). Main moves to the audited
snapshot only when every blocking audit passed, and only then does the asset
materialize (a run with nothing new passes, and materializes: the table is
current). When an audit fails, main is untouched, nothing is
materialized, the run stops downstream (Dagster raises after a failed blocking
check), and an observation on the asset names the audit branch and the
failing values. See docs/decisions/0017.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.lib import faults

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from spanda_assets.lib.writes import Pending, Published


@dataclass
class Audit:
    """One audit's verdict, as its asset check will report it."""

    check_name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    blocking: bool = True
    # What makes it fail, for the observation and the alert: counts and keys, never values.
    failing: dict[str, Any] = field(default_factory=dict)


# One audit, or several that share one pass over the data (GX's gates and soft signals).
AuditFn = Callable[["Pending"], Audit | list[Audit]]


@dataclass
class Outcome:
    audits: list[Audit]
    published: Published | None  # None: a blocking audit failed, main untouched
    table_name: str
    audit_snapshot_id: int | None
    main_snapshot_id: int | None

    @property
    def passed(self) -> bool:
        return self.published is not None

    def metadata(self) -> dict[str, Any]:
        """What every audited asset shows about its last publication."""
        md: dict[str, Any] = {
            "audit_branch": f"{self.table_name}@audit",
            "audited_snapshot_id": dg.MetadataValue.text(str(self.audit_snapshot_id or "")),
        }
        if self.published is not None:
            md["published"] = self.published.published
            md["iceberg_snapshot_id"] = dg.MetadataValue.text(str(self.published.snapshot_id or ""))
        return md


def write_audit_publish(table: Table, audits: Sequence[AuditFn]) -> Outcome:
    """Run the audits on the staged data; publish it if every blocking one passed."""
    from spanda_assets.lib import writes

    table.refresh()
    pending = writes.pending(table)
    faults.point("before_audit")
    results: list[Audit] = []
    for fn in audits:
        out = fn(pending)
        results.extend(out if isinstance(out, list) else [out])
    name = ".".join(table.name()[-2:])
    if not all(a.passed for a in results if a.blocking):
        return Outcome(results, None, name, pending.snapshot_id, pending.main_snapshot_id)
    published = writes.publish(table, audited=pending.snapshot_id)
    return Outcome(results, published, name, pending.snapshot_id, published.snapshot_id)


def outcome_events(
    key: dg.AssetKey, outcome: Outcome, metadata: dict[str, Any]
) -> Iterator[dg.AssetCheckResult | dg.MaterializeResult | dg.AssetObservation]:
    """The asset's events: its check results, then a materialization if main moved."""
    for audit in outcome.audits:
        yield dg.AssetCheckResult(
            asset_key=key,
            check_name=audit.check_name,
            passed=audit.passed,
            severity=dg.AssetCheckSeverity.ERROR if audit.blocking else dg.AssetCheckSeverity.WARN,
            metadata={
                **audit.metadata,
                "audit_branch": f"{outcome.table_name}@audit",
                "audited_snapshot_id": dg.MetadataValue.text(str(outcome.audit_snapshot_id or "")),
            },
        )
    if outcome.passed:
        yield dg.MaterializeResult(asset_key=key, metadata={**metadata, **outcome.metadata()})
        return
    failing = {a.check_name: a.failing or {"passed": False} for a in outcome.audits if not a.passed}
    yield dg.AssetObservation(
        asset_key=key,
        metadata={
            **metadata,
            **outcome.metadata(),
            "published": False,
            "main_snapshot_id": dg.MetadataValue.text(str(outcome.main_snapshot_id or "")),
            "failing_audits": dg.MetadataValue.json(failing),
            "what_now": dg.MetadataValue.md(
                f"Main of `{outcome.table_name}` is unchanged: readers still see the last "
                f"published snapshot. The rows that failed stay on the branch "
                f"`{outcome.table_name}@audit` for inspection (read it with "
                "`table.scan().use_ref('audit')`). Fix the cause (the source row, the "
                "de-identification rule or the data contract) and materialize again: the "
                "next run audits everything not yet published."
            ),
        },
    )


def audit_spec(
    key: dg.AssetKey, name: str, description: str, blocking: bool = True
) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=key, blocking=blocking, description=description)
