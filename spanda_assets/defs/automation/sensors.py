"""The sensor that evaluates every asset's automation condition (declarative automation)."""

import dagster as dg

spanda_automation = dg.AutomationConditionSensorDefinition(
    name="spanda_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=20,
    # Plain runs, not backfills: each shows in the Runs page with its trigger.
    emit_backfills=False,
    description=(
        "Evaluates the automation conditions of every asset: silver and gold run as soon as "
        "their parents publish new data; stages fed by gold wait for its blocking checks."
    ),
)
