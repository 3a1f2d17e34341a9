"""gold.validated_*: silver rows that pass row-level rules, for the students who consented
to model training; failing rows go to gold.quarantine with the rule and reason."""

from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.privacy.assets import CONSENT_RECORDS_KEY, silver_key
from spanda_assets.resources import LakehouseResource

GOLD_GROUP = "gold"
CHECK_NAMES = ("pandera_contract", "gx_gates", "gx_soft_signals")
OWNERS = ["team:data-quality"]


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


def gold_consent(catalog: Any, purpose: str, silver_purpose: str) -> Any:
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
    rules = "\n".join(f"* `{r.name}`: quarantined when {r.reason}" for r in spec.rules)

    @dg.asset(
        key=gold_key(name),
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
        description=(
            f"silver.{spec.source} rows that pass the row-level rules, for students with active "
            f"`{spec.purpose}` consent. Failing rows go to gold.quarantine with the rule and "
            "reason; a re-run after the source is fixed releases them. Incremental: each run "
            "reads only the silver rows added since the last one, plus the students whose "
            f"consent changed. Rules:\n\n{rules}\n\n"
            "Checked by a Pandera model and a Great Expectations suite (asset checks)."
        ),
    )
    def _gold(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        from spanda_assets.defs.extract.assets import table_metadata
        from spanda_assets.lib.privacy.policy import policy_for
        from spanda_assets.lib.sources import load_sources
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import docs_index
        from spanda_assets.lib.validation.publish import publish_gold

        catalog = lakehouse.namespace("gold")
        consent = gold_consent(catalog, spec.purpose, policy_for(spec.source).purpose)
        upsert = any(s.name == spec.source and s.mode == "upsert" for s in load_sources())
        result = publish_gold(catalog, spec, consent, upsert=upsert, run_id=context.run.run_id)
        if result.quarantined:
            context.log.warning(
                f"gold.{name}: {result.quarantined} row(s) quarantined: {result.failures}"
            )
        table = catalog.load_table(("gold", name))
        return dg.MaterializeResult(
            metadata={
                **table_metadata(table, result.total_rows),
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
                # The site's index: the checks of this run (they follow) add their pages to it.
                "data_docs": dg.MetadataValue.url(docs_index(settings.spanda_home() / "gx")),
                "consent_purpose": spec.purpose,
                "iceberg_snapshot_id": dg.MetadataValue.text(str(result.snapshot_id or "")),
            }
        )

    return _gold


@dg.definitions
def defs() -> dg.Definitions:
    from spanda_assets.lib.validation.gold import SPECS

    return dg.Definitions(assets=[build_gold_asset(n) for n in SPECS])
