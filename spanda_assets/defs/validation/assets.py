"""gold.validated_*: silver rows that pass row-level rules, for the students who consented
to model training; failing rows go to gold.quarantine with the rule and reason.

Each gold table is written through write-audit-publish: the run stages its rows
on the audit branch, the data contracts (defs/validation/checks.py) audit what
main lacks, and main moves only when the blocking ones passed.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.automation.policies import GOLD_FRESHNESS, stage_automation
from spanda_assets.defs.extract.assets import table_metadata
from spanda_assets.defs.privacy.assets import CONSENT_RECORDS_KEY, silver_key
from spanda_assets.defs.publishing import audit_spec, outcome_events, write_audit_publish
from spanda_assets.defs.validation.checks import CHECK_DESCRIPTIONS, CHECK_NAMES, contract_audits
from spanda_assets.resources import LakehouseResource

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.validation.publish import GoldConsent

GOLD_GROUP = "gold"
OWNERS = ["team:data-quality"]
# Every gold table writes the shared gold.quarantine and gold.dq_history: one pool for all.
GOLD_POOL = "gold_tables"


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


def gold_consent(catalog: "Catalog", purpose: str, silver_purpose: str) -> "GoldConsent":
    """Who may be in gold: consent for `purpose` and for the silver table's own purpose
    (a research withdrawal erases silver rows; gold follows)."""
    from spanda_assets.lib.privacy.consent import active_students, load_consent
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.silver import consent_watermark
    from spanda_assets.lib.privacy.subjects import subject_ids
    from spanda_assets.lib.validation.publish import GoldConsent, changed_subjects

    events, _, states = load_consent(catalog)
    subjects = subject_ids(catalog, Pseudonymizer(load_key()))
    active = active_students(states, purpose) & active_students(states, silver_purpose)
    return GoldConsent(
        active={subjects[s] for s in active if s in subjects},
        watermark=consent_watermark(events),
        changed_since=changed_subjects(events, subjects),
    )


def build_gold_asset(name: str) -> dg.AssetsDefinition:
    from spanda_assets.lib.validation.gold import SPECS

    spec = SPECS[name]
    key = gold_key(name)
    rules = "\n".join(f"* `{r.name}`: quarantined when {r.reason}" for r in spec.rules)
    types = ", ".join(f"`{c}` ({kind})" for c, kind in spec.types)

    @dg.asset(
        key=key,
        deps=[
            silver_key(spec.source),
            silver_key("courses"),
            silver_key("students"),
            CONSENT_RECORDS_KEY,
        ],
        group_name=GOLD_GROUP,
        kinds={"iceberg", "pandera", "great_expectations"},
        owners=OWNERS,
        tags={"spanda/layer": "gold", "spanda/pii": "de-identified"},
        pool=GOLD_POOL,
        automation_condition=stage_automation(),
        freshness_policy=GOLD_FRESHNESS,
        check_specs=[
            audit_spec(
                key,
                check,
                CHECK_DESCRIPTIONS[check].format(name=name),
                blocking=check != "gx_soft_signals",
            )
            for check in CHECK_NAMES
        ],
        output_required=False,
        description=(
            f"silver.{spec.source} rows that pass the row-level rules, for students with active "
            f"`{spec.purpose}` consent. Failing rows go to gold.quarantine with the rule and "
            "reason; a re-run after the source is fixed releases them. Incremental: each run "
            "reads only the silver rows added since the last one, plus the students whose "
            f"consent changed. Typed columns: {types}; a value that is not of its kind is "
            f"quarantined with the value and the expected type. Rules:\n\n{rules}\n\n"
            "Write-audit-publish: the run stages its rows on the `audit` branch; a Pandera "
            "model and a Great Expectations suite audit what main lacks (blocking), and main "
            "moves only if they pass. A consent withdrawal is erased from main at once. Runs "
            "by itself when silver publishes (eager automation)."
        ),
    )
    def _gold(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator[Any]:
        from spanda_assets.lib.privacy.policy import policy_for
        from spanda_assets.lib.sources import load_sources
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import docs_index
        from spanda_assets.lib.validation.publish import stage_gold
        from spanda_assets.lib.writes import row_count

        catalog = lakehouse.namespace("gold")
        consent = gold_consent(catalog, spec.purpose, policy_for(spec.source).purpose)
        upsert = any(s.name == spec.source and s.mode == "upsert" for s in load_sources())
        result = stage_gold(catalog, spec, consent, upsert=upsert, run_id=context.run.run_id)
        if result.quarantined:
            context.log.warning(
                f"gold.{name}: {result.quarantined} row(s) quarantined: {result.failures}"
            )
        table = catalog.load_table(("gold", name))
        outcome = write_audit_publish(table, contract_audits(catalog, name))
        table.refresh()
        yield from outcome_events(
            key,
            outcome,
            {
                **table_metadata(table, row_count(table)),
                "rows_read_from_silver": result.rows_read,
                "rows_reread_for_consent_or_references": result.rows_reread,
                "rows_validated": result.valid,
                "rows_quarantined": result.quarantined,
                "rows_released_from_quarantine": result.released,
                "rows_without_consent": result.without_consent,
                "rows_erased_after_withdrawal": result.erased,
                "quarantine_total": result.total_quarantined,
                "full_rebuild": result.full_rebuild,
                "failures_by_rule": dg.MetadataValue.json(result.failures),
                "quality_history": dg.MetadataValue.md(
                    history.summary_markdown(catalog, name, CHECK_NAMES)
                ),
                # The site's index: this run's audits added their pages to it.
                "data_docs": dg.MetadataValue.url(docs_index(settings.spanda_home() / "gx")),
                "consent_purpose": spec.purpose,
                "audit_branch_reset": result.audit_reset,
                **result.fanout.metadata(),  # where the row rules ran (lib/scale.py)
            },
        )

    return _gold


@dg.definitions
def defs() -> dg.Definitions:
    from spanda_assets.lib.validation.gold import SPECS

    return dg.Definitions(assets=[build_gold_asset(n) for n in SPECS])
