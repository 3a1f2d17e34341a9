"""gold.validated_*: silver rows that pass row-level rules, for the students who consented
to model training; failing rows go to gold.quarantine with the rule and reason."""

from typing import Any

import dagster as dg

from spanda_assets.defs.privacy.assets import CONSENT_RECORDS_KEY, silver_key
from spanda_assets.resources import LakehouseResource

GOLD_GROUP = "gold"
OWNERS = ["team:data-quality"]


def gold_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["gold", name])


def _active_subjects(catalog: Any, purpose: str) -> set[str]:
    """Pseudonymous subject ids with active consent for `purpose`."""
    from spanda_assets.lib.privacy.consent import active_students, load_consent
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.subjects import subject_ids

    _, _, states = load_consent(catalog)
    subjects = subject_ids(catalog, Pseudonymizer(load_key()))
    return {subjects[s] for s in active_students(states, purpose) if s in subjects}


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
            f"reason; a re-run after the source is fixed releases them. Rules:\n\n{rules}\n\n"
            "Checked by a Pandera model and a Great Expectations suite (asset checks)."
        ),
    )
    def _gold(
        context: dg.AssetExecutionContext, lakehouse: LakehouseResource
    ) -> dg.MaterializeResult:
        from spanda_assets.defs.extract.assets import column_schema
        from spanda_assets.lib.validation.publish import publish_gold

        catalog = lakehouse.namespace("gold")
        active = _active_subjects(catalog, spec.purpose)
        result = publish_gold(catalog, spec, active)
        if result.quarantined:
            context.log.warning(
                f"gold.{name}: {result.quarantined} row(s) quarantined: {result.failures}"
            )
        table = catalog.load_table(("gold", name))
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": result.valid,
                "dagster/column_schema": column_schema(table),
                "dagster/table_name": f"gold.{name}",
                "rows_validated": result.valid,
                "rows_quarantined": result.quarantined,
                "rows_without_consent": result.without_consent,
                "failures_by_rule": dg.MetadataValue.json(result.failures),
                "consent_purpose": spec.purpose,
                "iceberg_snapshot_id": dg.MetadataValue.text(str(result.snapshot_id or "")),
            }
        )

    return _gold


@dg.definitions
def defs() -> dg.Definitions:
    from spanda_assets.lib.validation.gold import SPECS

    return dg.Definitions(assets=[build_gold_asset(n) for n in SPECS])
