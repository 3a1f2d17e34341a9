"""Consent reaches the model: a stale champion is retrained at once, and shown as stale.

`champion_consent` asks, every few minutes, whether the champion trained on posts of
students who have since withdrawn `model_training` consent or were erased. When it
did, the sensor records an observation on the model asset (stale flag, since when,
the retraining deadline) and requests a training run, once per stale champion and
consent state: the labeled set has already erased those rows, so the new
version trains without them and takes the alias only if it passes every gate.
Until then the stale flag shows in the UI and in `spanda model status`. The request
waits until the labeled set no longer holds the student's posts (the chain erases them
within minutes of the extract), so the retrained model cannot learn them again.
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


def _still_labeled(catalog: object, departed: object) -> int:
    """How many posts of departed students the published labeled set still holds."""
    from spanda_assets.lib.model.frame import LABELED
    from spanda_assets.lib.writes import MAIN, scan

    try:
        table = catalog.load_table(LABELED)  # type: ignore[attr-defined]
    except Exception:
        return 0
    if table.snapshot_by_name(MAIN) is None:
        return 0
    keys = set(scan(table, MAIN, selected_fields=("post_key",)).to_arrow()["post_key"].to_pylist())
    return len(departed(keys))  # type: ignore[operator]


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
    import hashlib

    from spanda_assets.defs.labeling.assets import _departed
    from spanda_assets.defs.validation.assets import gold_consent
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.consent import champion_staleness
    from spanda_assets.lib.privacy.policy import policy_for

    c = registry.client()
    champ = registry.champion(c)
    if champ is None:
        return dg.SkipReason("no champion of post_urgency yet: nothing can be stale")
    catalog = lakehouse.namespace("gold")
    seen = json.loads(context.cursor) if context.cursor else {}
    from pyiceberg.exceptions import NoSuchTableError

    try:
        consent = gold_consent(catalog, "model_training", policy_for("forum_posts").purpose)
    except NoSuchTableError as exc:
        return dg.SkipReason(f"consent not extracted yet ({exc}): nothing to compare")
    watermark = consent.watermark
    if seen.get("version") == champ.version and seen.get("consent") == watermark:
        # Nothing changed since the last look: no consent event, same champion. The
        # departed check reads silver by every training key; it runs only when needed.
        return dg.SkipReason(f"no consent event since the last look at v{champ.version}")
    departed = _departed(catalog)
    staleness = champion_staleness(c, departed)
    if staleness.stale:
        waiting = _still_labeled(catalog, departed)
        if waiting:
            # The chain (silver, gold, then the labeled set) erases the student's rows
            # within minutes; a model trained before that would learn them again (its
            # consent gate would refuse it). Look again next tick.
            return dg.SkipReason(
                f"champion v{staleness.version} is stale; waiting for gold/labeled_posts "
                f"to erase {waiting} departed post(s) before retraining"
            )
    state = {"version": staleness.version, "stale": staleness.stale, "consent": watermark}
    context.update_cursor(json.dumps(state))
    events = []
    if {k: seen.get(k) for k in ("version", "stale")} != {
        k: state[k] for k in ("version", "stale")
    }:
        events.append(dg.AssetObservation(asset_key=MODEL_KEY, metadata=staleness.metadata()))
    if not staleness.stale:
        if events:
            return dg.SensorResult(asset_events=events)
        return dg.SkipReason(f"champion v{staleness.version} holds no departed student's posts")
    # One request per stale champion and consent state: a retraining that fails its gates
    # is not retried every tick, only when consent changes again.
    key = hashlib.sha256(f"{staleness.version}:{watermark}".encode()).hexdigest()[:16]
    return dg.SensorResult(
        asset_events=events,
        run_requests=[
            dg.RunRequest(
                run_key=f"stale:{staleness.version}:{key}", tags={"spanda/trigger": "consent"}
            )
        ],
    )
