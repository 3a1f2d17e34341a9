"""Consent reaches the model: a stale champion is retrained at once, and shown as stale.

`champion_consent` asks, every few minutes, whether the champion trained on posts of
students who have since withdrawn `model_training` consent or were erased. When it
did, the sensor records an observation on the model asset (stale flag, since when,
the retraining deadline) and requests a training run, once per stale champion and
labeled-set snapshot: the labeled set has already erased those rows, so the new
version trains without them and takes the alias only if it passes every gate.
Until then the stale flag shows in the UI and in `spanda model status`.
"""

import json

import dagster as dg

from spanda_assets.defs.model.assets import MODEL_KEY, PREDICTIONS_KEY
from spanda_assets.resources import LakehouseResource
from spanda_assets.settings import sensor_interval

train_model_job = dg.define_asset_job(
    name="train_model",
    selection=dg.AssetSelection.assets(MODEL_KEY, PREDICTIONS_KEY),
    description=(
        "Train post_urgency on gold.labeled_posts, gate it, register it (champion if every "
        "blocking check passed), then score new posts with the champion."
    ),
)


@dg.sensor(
    name="champion_consent",
    minimum_interval_seconds=sensor_interval(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=train_model_job,
    description=(
        "Marks the champion stale when it trained on posts of a student who has since "
        "withdrawn model_training consent (or was erased), and requests retraining."
    ),
)
def champion_consent(
    context: dg.SensorEvaluationContext, lakehouse: LakehouseResource
) -> dg.SensorResult | dg.SkipReason:
    from spanda_assets.defs.labeling.assets import _departed
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.consent import champion_staleness
    from spanda_assets.lib.model.frame import LABELED, main_snapshot_id

    c = registry.client()
    if registry.champion(c) is None:
        return dg.SkipReason("no champion of post_urgency yet: nothing can be stale")
    catalog = lakehouse.namespace("gold")
    staleness = champion_staleness(c, _departed(catalog))
    seen = json.loads(context.cursor) if context.cursor else {}
    state = {"version": staleness.version, "stale": staleness.stale}
    events = []
    if state != seen:
        events.append(dg.AssetObservation(asset_key=MODEL_KEY, metadata=staleness.metadata()))
        context.update_cursor(json.dumps(state))
    if not staleness.stale:
        if events:
            return dg.SensorResult(asset_events=events)
        return dg.SkipReason(f"champion v{staleness.version} holds no departed student's posts")
    labeled = main_snapshot_id(catalog, LABELED)
    return dg.SensorResult(
        asset_events=events,
        run_requests=[
            dg.RunRequest(
                run_key=f"stale:{staleness.version}:{labeled}",
                tags={"spanda/trigger": "consent"},
            )
        ],
    )
