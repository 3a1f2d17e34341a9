"""Poll the annotation tool; request gold/labeled_posts when annotations changed.

The sensor's cursor is the newest annotation time it has seen; the asset keeps its
own watermark in its snapshot, so a cursor lost or reset only costs one extra run.
Production alternative: Label Studio's webhook (ANNOTATION_CREATED/UPDATED/DELETED)
posted to a receiver that requests the same run (docs/labeling.md).
"""

import datetime as dt

import dagster as dg

from spanda_assets.defs.labeling.assets import LABELED_POSTS_KEY
from spanda_assets.resources import AnnotationToolResource

labeled_posts_job = dg.define_asset_job(
    name="pull_annotations",
    selection=dg.AssetSelection.assets(LABELED_POSTS_KEY),
    description="Resolve changed annotations into gold.labeled_posts (write-audit-publish).",
)


@dg.sensor(
    name="annotations_changed",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=labeled_posts_job,
    description=(
        "Asks the annotation tool (Label Studio when LABEL_STUDIO_URL is set, else the local "
        "store) for annotations newer than the last it saw, and requests a "
        "gold/labeled_posts run when there are any."
    ),
)
def annotations_changed(
    context: dg.SensorEvaluationContext, annotations: AnnotationToolResource
) -> dg.RunRequest | dg.SkipReason:
    since = dt.datetime.fromisoformat(context.cursor) if context.cursor else None
    store, _ = annotations.open()
    changes = store.changed_since(since)
    high = changes.high_water
    if not changes.post_keys or high is None or (since is not None and high <= since):
        return dg.SkipReason("no annotation changed since the last look")
    context.update_cursor(high.isoformat())
    return dg.RunRequest(
        run_key=f"annotations:{high.isoformat()}", tags={"spanda/trigger": "annotations"}
    )
