"""Explicit schedules. Stage-specific automation lives beside each stage's assets."""

import dagster as dg

extract_bronze_job = dg.define_asset_job(
    name="extract_bronze",
    selection=dg.AssetSelection.groups("bronze"),
    description="Incremental extract of every configured source table into bronze.",
)

# The whole unpartitioned graph but the model and publication (submissions run per
# partition, from their sensor; the model trains from the labeled set, in its own job
# `train_model`: before anyone annotated, its pre-train gates rightly refuse to train;
# datasets are published daily or by `publish_datasets`, after the model scored).
platform_job = dg.define_asset_job(
    name="materialize_platform",
    selection=dg.AssetSelection.all()
    - dg.AssetSelection.groups("submissions")
    - dg.AssetSelection.groups("model")
    - dg.AssetSelection.groups("publish"),
    description=(
        "Bronze, privacy, silver, gold and the labeled set with all their checks; "
        "`make demo` runs it, then `train_model`."
    ),
)

hourly_extract = dg.ScheduleDefinition(
    name="hourly_extract",
    job=extract_bronze_job,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Safety net beside the sensor: extract every source table once an hour.",
)
