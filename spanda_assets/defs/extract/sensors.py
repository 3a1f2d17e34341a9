"""Start an extract as soon as the source has rows past bronze's watermark."""

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.extract.assets import bronze_key
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.sources import load_sources
from spanda_assets.resources import LakehouseResource, SourceDatabaseResource

# Runs that are queued or running: what they will write has not been written yet.
IN_FLIGHT = dg.RunsFilter(
    statuses=[
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
    ]
)


def _extracts_in_flight(instance: dg.DagsterInstance) -> set[dg.AssetKey]:
    """Bronze assets a queued or running run will extract."""
    runs = instance.get_runs(filters=IN_FLIGHT)
    return {k for r in runs for k in (r.asset_selection or ()) if k.path[0] == "bronze"}


@dg.sensor(
    name="bronze_new_source_rows",
    minimum_interval_seconds=settings.sensor_interval(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=dg.AssetSelection.groups("bronze"),
    description=(
        "Every minute, counts source rows past each bronze table's watermark (an index range "
        "scan) and starts one run for the tables that have new or changed rows and no extract "
        "already queued or running."
    ),
)
def bronze_new_source_rows(
    context: dg.SensorEvaluationContext,
    source_db: SourceDatabaseResource,
    lakehouse: LakehouseResource,
) -> dg.SensorResult | dg.SkipReason:
    from spanda_assets.lib.extract import pending_rows

    keys: list[dg.AssetKey] = []
    marks: list[str] = []
    errors: list[str] = []
    busy = _extracts_in_flight(context.instance)
    engine = source_db.engine()
    try:
        catalog = lakehouse.catalog()
        for source in load_sources():
            if bronze_key(source) in busy:
                continue  # the run in flight reads these rows; the next tick sees what is left
            try:
                count, top = pending_rows(engine, catalog, source)
            except SpandaError as exc:
                errors.append(str(exc))
                continue
            if count:
                keys.append(bronze_key(source))
                marks.append(f"{source.name}:{count}@{top}")
    finally:
        engine.dispose()
    for e in errors:
        context.log.error(e)
    if not keys:
        if errors:
            raise SpandaError("; ".join(errors))
        return dg.SkipReason("no source rows past the bronze watermarks")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key="|".join(marks),
                asset_selection=keys,
                tags={"spanda/trigger": "new-source-rows"},
            )
        ]
    )
