"""Explicit schedules. Stage-specific automation lives beside each stage's assets."""

import dagster as dg

extract_bronze_job = dg.define_asset_job(
    name="extract_bronze",
    selection=dg.AssetSelection.groups("bronze"),
    description="Incremental extract of every configured source table into bronze.",
)

hourly_extract = dg.ScheduleDefinition(
    name="hourly_extract",
    job=extract_bronze_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Safety net beside the sensor: extract every source table once an hour.",
)
