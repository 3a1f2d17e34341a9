"""The labeled set: tasks for annotators, and gold.labeled_posts from their annotations.

`labeling/label_tasks` pushes published gold posts to the annotation tool (a Label
Studio server when LABEL_STUDIO_URL is set, else the local store under SPANDA_HOME),
each with its weak-supervision pre-label, in active-learning order. It also deletes
the tasks of posts that left gold, so a `model_training` withdrawal reaches the
annotation tool on the same automation deadline as gold.

`gold/labeled_posts` reads the annotations changed since its watermark, resolves one
label per post and publishes through write-audit-publish; its audits are label
quality checks. A sensor polls the tool and requests it when annotations change.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from spanda_assets.defs.automation.policies import GOLD_FRESHNESS, downstream_of_gold
from spanda_assets.defs.extract.assets import table_metadata
from spanda_assets.defs.labeling.checks import AUDIT_DESCRIPTIONS, label_audits
from spanda_assets.defs.publishing import audit_spec, outcome_events, write_audit_publish
from spanda_assets.defs.validation.assets import GOLD_POOL, gold_key
from spanda_assets.resources import AnnotationToolResource, LakehouseResource

LABELING_GROUP = "labeling"
OWNERS = ["team:ml-platform"]
LABEL_TASKS_KEY = dg.AssetKey(["labeling", "label_tasks"])
LABELED_POSTS_KEY = gold_key("labeled_posts")
ENV_TASK_BATCH = "SPANDA_LABEL_BATCH"


def _batch_size() -> int:
    import os

    from spanda_assets.lib.errors import ConfigError
    from spanda_assets.lib.labeling.tasks import DEFAULT_BATCH

    raw = os.environ.get(ENV_TASK_BATCH, "")
    try:
        value = int(raw) if raw else DEFAULT_BATCH
    except ValueError:
        raise ConfigError(f"{ENV_TASK_BATCH}={raw!r}: expected a whole number of tasks") from None
    if value < 0:
        raise ConfigError(f"{ENV_TASK_BATCH}={raw!r}: must not be negative")
    return value


def _departed(catalog: Any) -> Any:
    """Who left for good: posts of students without model_training (and silver's)
    consent, erased students, posts silver erased. Gold missing a post is not enough."""
    from spanda_assets.defs.validation.assets import gold_consent
    from spanda_assets.lib.labeling.departed import departed_posts
    from spanda_assets.lib.privacy.erasure import read_register
    from spanda_assets.lib.privacy.policy import policy_for

    consent = gold_consent(catalog, "model_training", policy_for("forum_posts").purpose)
    return departed_posts(catalog, consent.active, read_register(catalog).subjects)


def _published_labels(catalog: Any) -> Any:
    """The labels people gave so far (published): post key, text and label, to score
    each labeling function. The labeled set, not gold: small."""
    from spanda_assets.lib.labeling.labeled import LABELED
    from spanda_assets.lib.writes import MAIN, scan

    try:
        table = catalog.load_table(LABELED)
    except Exception:  # not created yet: no labels
        return None
    if table.snapshot_by_name(MAIN) is None:
        return None
    return scan(table, MAIN, selected_fields=("post_key", "body", "label")).to_arrow()


@dg.asset(
    key=LABEL_TASKS_KEY,
    deps=[gold_key("validated_posts")],
    group_name=LABELING_GROUP,
    # One pool with gold/labeled_posts: a task deletion never lands while annotations are
    # being listed, so no listing page shifts under a pull.
    pool=GOLD_POOL,
    kinds={"labelstudio"},
    owners=OWNERS,
    tags={"spanda/layer": "labeling", "spanda/pii": "de-identified"},
    automation_condition=downstream_of_gold(),
    description=(
        "Annotation tasks for instructors: does this post need an instructor's attention "
        "today? Published gold.validated_posts (de-identified text only) not yet in the "
        "annotation tool are pre-labeled by the labeling functions "
        "(config/labeling_functions.yaml; model version `lf-<hash of the file>`) and the "
        f"`{ENV_TASK_BATCH}` least certain (plus a 10% random share for unbiased "
        "evaluation) are pushed, in that order; until the first label is published the "
        "batch is a random sample (cold start). Once a champion model scored the posts, "
        "its prediction is the pre-label (`post_urgency/v<N>`). Task identity is the "
        "post's pseudonymous key; re-runs never duplicate a task. Tasks of posts gone "
        "from gold (consent withdrawn) are deleted with their annotations. The tool is "
        "Label Studio when "
        "LABEL_STUDIO_URL is set, else the local store under SPANDA_HOME."
    ),
)
def label_tasks(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    annotations: AnnotationToolResource,
) -> Any:
    from spanda_assets.lib.labeling.rules import load_labeling_functions
    from spanda_assets.lib.labeling.tasks import sync_tasks

    rules = load_labeling_functions()
    catalog = lakehouse.namespace("gold")
    store, shown = annotations.open()
    if "label_config_drift" in shown:
        context.log.warning(shown["label_config_drift"])
    result = sync_tasks(
        catalog,
        store,
        rules,
        batch_size=_batch_size(),
        departed=_departed(catalog),
        labeled=_published_labels(catalog),
    )
    context.log.info(
        f"{result.pushed} task(s) pushed, {result.deleted_after_withdrawal} deleted after "
        f"withdrawal; pre-labels from {rules.model_version}"
    )
    return dg.MaterializeResult(
        metadata={
            **shown,
            **result.metadata(),
            "prelabel_model_version": rules.model_version,
            "review_order": dg.MetadataValue.json(
                [{k: r[k] for k in ("rank", "reason", "margin")} for r in result.order[:20]]
            ),
        }
    )


@dg.asset(
    key=LABELED_POSTS_KEY,
    deps=[LABEL_TASKS_KEY, gold_key("validated_posts")],
    group_name="gold",
    kinds={"iceberg", "labelstudio", "cleanlab"},
    owners=OWNERS,
    tags={"spanda/layer": "gold", "spanda/pii": "de-identified"},
    pool=GOLD_POOL,
    automation_condition=downstream_of_gold(),
    freshness_policy=GOLD_FRESHNESS,
    check_specs=[
        audit_spec(LABELED_POSTS_KEY, name, description, blocking=blocking)
        for name, (description, blocking) in AUDIT_DESCRIPTIONS.items()
    ],
    output_required=False,
    description=(
        "One urgency label per post (`urgent` / `not_urgent`) from the instructors' "
        "annotations: a ground-truth annotation wins, else the majority; ties stay "
        "unresolved and are listed. Incremental: each run reads the annotations changed "
        "since its watermark (kept in the table's snapshot) and decides those posts again. "
        "Each row carries the post's de-identified text, the student pseudonym, a "
        "train/test split fixed per student, the label config hash and the "
        "gold.validated_posts snapshot it came from (training lineage). Rows of posts "
        "gone from gold are erased from main at once. Write-audit-publish: label-quality "
        "audits run on the staged rows; a sensor requests a run when annotations change."
    ),
)
def labeled_posts(
    context: dg.AssetExecutionContext,
    lakehouse: LakehouseResource,
    annotations: AnnotationToolResource,
) -> Iterator[Any]:
    from spanda_assets.lib.labeling.labeled import LABELED, stage_labeled
    from spanda_assets.lib.labeling.studio import LabelStudioError, config_hash, label_config
    from spanda_assets.lib.writes import row_count

    catalog = lakehouse.namespace("gold")
    store, shown = annotations.open()
    result = stage_labeled(
        catalog,
        store,
        config_hash=shown.get("label_config_hash") or config_hash(label_config()),
        departed=_departed(catalog),
        run_id=context.run.run_id,
    )
    if result.resolution is not None and result.resolution.unresolved:
        context.log.warning(
            f"{len(result.resolution.unresolved)} post(s) tied: they need another annotator"
        )
    table = catalog.load_table(LABELED)
    outcome = write_audit_publish(table, label_audits(result))
    table.refresh()
    review: dict[str, Any] = {}
    if result.flagged is not None:
        # The review queue goes back to the annotation tool (published or not: a label
        # worth a second look is worth it either way). Main has moved already: a tool
        # that fails now is reported, not allowed to fail the published run.
        try:
            review["review_marks_changed"] = store.review(result.flagged)
        except LabelStudioError as exc:
            context.log.warning(f"review queue not sent: {exc}")
            review["review_queue_error"] = str(exc)
    yield from outcome_events(
        LABELED_POSTS_KEY,
        outcome,
        {**table_metadata(table, row_count(table)), **shown, **result.metadata(), **review},
    )
