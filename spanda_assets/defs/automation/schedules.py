"""Explicit schedules. Stage-specific automation lives beside each stage's assets."""

import dagster as dg

extract_bronze_job = dg.define_asset_job(
    name="extract_bronze",
    selection=dg.AssetSelection.groups("bronze"),
    description="Incremental extract of every configured source table into bronze.",
)

# The whole unpartitioned graph (submissions run per partition, from their sensor).
platform_job = dg.define_asset_job(
    name="materialize_platform",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("submissions"),
    description="Bronze, privacy, silver and gold with all their checks: what `make demo` runs.",
)

hourly_extract = dg.ScheduleDefinition(
    name="hourly_extract",
    job=extract_bronze_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Safety net beside the sensor: extract every source table once an hour.",
)
