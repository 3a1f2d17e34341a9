"""The trained model and its predictions.

`model/post_urgency_model` trains a classifier on gold.labeled_posts, logs it to MLflow
and registers it as a version of `post_urgency`. Its asset checks are the gates: the
pre-train checks on the frame and the post-train checks on the model (quality floor,
behavioural tests, slices, champion/challenger). The version takes the `champion`
alias only when every blocking gate passed; that is the model's write-audit-publish
(the candidate version is the staged write, the alias is main). It runs daily, only
when new labels arrived, and at once when the champion trained on a student who
has since withdrawn consent (sensor `champion_consent`).

`gold/post_predictions` scores newly published posts with the champion, incrementally,
through write-audit-publish. Its audits include the drift checks (Evidently): data
drift of the new batch against the champion's training data, prediction drift, and
the performance estimated without labels.
"""

import datetime as dt
from collections.abc import Iterator
from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.automation.policies import GOLD_FRESHNESS, at_cron_if_changed
from spanda_assets.defs.labeling.assets import LABELED_POSTS_KEY, _departed
from spanda_assets.defs.model.checks import (
    LABEL_DRIFT,
    drift_audit_specs,
    drift_audits,
    label_drift_gate,
    severity_blocking,
)
from spanda_assets.defs.publishing import Audit, audit_spec, outcome_events, write_audit_publish
from spanda_assets.defs.validation.assets import gold_key
from spanda_assets.resources import LakehouseResource

MODEL_GROUP = "model"
OWNERS = ["team:ml-platform"]
MODEL_KEY = dg.AssetKey(["model", "post_urgency_model"])
PREDICTIONS_KEY = gold_key("post_predictions")
MODEL_POOL = "model_training"
TRAIN_CRON = settings.cron(settings.ENV_TRAIN_CRON, settings.DEFAULT_TRAIN_CRON)


def _gate_descriptions() -> dict[str, tuple[str, bool]]:
    return {
        "training_frame_schema": (
            "Pre-train: the training frame's contract (Pandera): unique post keys, "
            "pseudonymous students, known labels and splits, no blank text.",
            True,
        ),
        "class_balance": (
            "Pre-train: both labels, each at least SPANDA_MIN_LABELS_PER_CLASS (default 20) "
            "times, and both in the held-out split. Training refuses a smaller set.",
            True,
        ),
        "split_disjoint": (
            "Pre-train: no student's posts in both train and test, no post twice.",
            True,
        ),
        "no_single_feature_leakage": (
            "Pre-train: no column, post feature or frequent word separates the labels by "
            "itself (ROC AUC >= 0.98): that is a leak, not a signal.",
            True,
        ),
        "consent_current": (
            "Pre-train: the frame holds no post of a student who has withdrawn "
            "model_training consent or was erased (the labeled set erases them first).",
            True,
        ),
        "can_overfit_tiny_sample": (
            "Pre-train: the pipeline fits 20 posts per class exactly: a pipeline that "
            "cannot is broken.",
            True,
        ),
        "heldout_f1": (
            "Post-train: held-out F1 at least SPANDA_MODEL_F1_FLOOR (0.70) and at least "
            "SPANDA_MODEL_DUMMY_MARGIN (0.10) above the best dummy classifier.",
            True,
        ),
        "minimum_functionality": (
            "Post-train: clear urgent and clearly routine posts "
            "(config/model_tests/minimum_functionality.csv) get their label, >= 95%.",
            True,
        ),
        "invariance": (
            "Post-train: names, [NAME]-style placeholders, course codes, casing, whitespace "
            "and typos (config/model_tests/invariance.yaml) move p_urgent by at most the "
            "tolerance, in all but 2% of cases.",
            True,
        ),
        "directional": (
            "Post-train: adding an urgent sentence never lowers p_urgent, adding a resolving "
            "one never raises it (config/model_tests/directional.yaml).",
            True,
        ),
        "slice_recall_gap": (
            "Post-train: the recall gap between courses with enough urgent held-out posts "
            "stays under SPANDA_MODEL_MAX_SLICE_GAP (0.10).",
            True,
        ),
        "no_regression": (
            "Post-train: F1 no worse than the champion's on the same held-out posts, within "
            "SPANDA_MODEL_REGRESSION_TOLERANCE (0.02). Only warns while the champion is "
            "stale after a consent withdrawal: it must be replaced whatever its score.",
            True,
        ),
        LABEL_DRIFT: (
            "The label mix of this training frame against the champion's (Evidently).",
            False,
        ),
        "champion_consent": (
            "The champion was not trained on posts of students who have since withdrawn "
            "model_training consent or were erased; a stale champion must be replaced "
            "within SPANDA_MODEL_RETRAIN_HOURS (24).",
            False,
        ),
    }


def _mlflow_link(version: str | None) -> dict[str, Any]:
    from spanda_assets.lib.model.registry import MODEL_NAME, redacted_uri

    uri = redacted_uri()
    if not version or not uri.startswith("http"):
        return {}
    return {
        "mlflow": dg.MetadataValue.url(
            f"{uri.rstrip('/')}/#/models/{MODEL_NAME}/versions/{version}"
        )
    }


@dg.asset(
    key=MODEL_KEY,
    deps=[LABELED_POSTS_KEY],
    group_name=MODEL_GROUP,
    kinds={"mlflow", "scikit-learn"},
    owners=OWNERS,
    tags={"spanda/layer": "model", "spanda/pii": "de-identified"},
    pool=MODEL_POOL,
    automation_condition=at_cron_if_changed(TRAIN_CRON),
    check_specs=[
        audit_spec(MODEL_KEY, name, description, blocking=blocking)
        for name, (description, blocking) in _gate_descriptions().items()
    ],
    output_required=False,
    description=(
        "The urgency classifier (`post_urgency` in MLflow): TF-IDF word and character "
        "n-grams plus post features, calibrated logistic regression, trained on "
        "gold.labeled_posts at its published snapshot, split by student. Each run logs "
        "params, metrics (F1, precision, recall, ROC AUC, calibration error, recall per "
        "course), the confusion matrix, the gates and the dataset (Iceberg table and "
        "snapshot) to MLflow and registers a version. The version becomes `champion` "
        "(what `models:/post_urgency@champion` loads everywhere) only when every blocking "
        "check passed; otherwise it stays a candidate tagged with what blocked it. "
        "Lineage tags (labeled and validated snapshots, label config hash, code version, "
        "frame digest) let `spanda model lineage` rebuild the exact training frame. Runs "
        f"daily ({TRAIN_CRON} UTC) when new labels arrived, and when the champion is stale "
        "after a consent withdrawal."
    ),
)
def post_urgency_model(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[Any]:
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.consent import champion_staleness
    from spanda_assets.lib.model.train import train_and_register

    catalog = lakehouse.namespace("gold")
    departed = _departed(catalog)
    result = train_and_register(
        catalog,
        trigger=context.run.tags.get("spanda/trigger", "asset"),
        departed=departed,
    )
    c = registry.client()
    if result.reused:
        label_gate = Audit(LABEL_DRIFT, True, {"note": "nothing trained: same frame"}, False)
    else:
        label_gate = label_drift_gate(catalog, c, result, context.run.run_id)
    staleness = champion_staleness(c, departed)
    gates = [Audit(g.name, g.passed, g.metadata, g.blocking, g.failing) for g in result.gates] + [
        label_gate
    ]
    ran = {g.check_name for g in gates}
    gates.append(
        Audit(
            "champion_consent",
            passed=not staleness.stale,
            blocking=False,
            metadata=staleness.metadata(),
            failing=staleness.metadata(),
        )
    )
    for name in _gate_descriptions():
        if name not in ran and name != "champion_consent":
            # Post-train gates of a run the pre-train gates stopped: not run, and not passed.
            gates.append(
                Audit(name, False, {"note": "not run: a pre-train gate blocked training"}, False)
            )
    for gate in gates:
        yield dg.AssetCheckResult(
            asset_key=MODEL_KEY,
            check_name=gate.check_name,
            passed=gate.passed,
            severity=dg.AssetCheckSeverity.ERROR if gate.blocking else dg.AssetCheckSeverity.WARN,
            metadata=gate.metadata,
        )
    md = {**result.metadata(), **_mlflow_link(result.version)}
    if result.reused and not result.promoted:
        context.log.info(
            f"the labeled set holds the same rows as when v{result.version} was judged: "
            "nothing trained"
        )
        yield dg.AssetObservation(asset_key=MODEL_KEY, metadata=md)
        return
    if result.promoted:
        context.log.info(f"{registry.MODEL_NAME} v{result.version} is the champion")
        yield dg.MaterializeResult(asset_key=MODEL_KEY, metadata=md)
        return
    context.log.warning(
        f"{registry.MODEL_NAME} v{result.version or '(not trained)'} did not take the alias: "
        f"blocked by {', '.join(result.blocked_by)}"
    )
    yield dg.AssetObservation(
        asset_key=MODEL_KEY,
        metadata={
            **md,
            "what_now": dg.MetadataValue.md(
                "The champion is unchanged: inference keeps loading "
                "`models:/post_urgency@champion`. The failed checks above say why this "
                "version was held back (their metadata lists failing examples); fix the "
                "labels or the model and materialize again, or move the alias by hand with "
                "`spanda model promote VERSION`."
            ),
        },
    )


@dg.asset(
    key=PREDICTIONS_KEY,
    deps=[gold_key("validated_posts"), MODEL_KEY],
    group_name=MODEL_GROUP,
    kinds={"iceberg", "mlflow", "evidently"},
    owners=OWNERS,
    tags={"spanda/layer": "gold", "spanda/pii": "de-identified"},
    pool=MODEL_POOL,
    # Scoring follows gold; a blocked candidate (its failed checks) must not stop it:
    # the champion keeps scoring, and withdrawals keep being erased.
    automation_condition=dg.AutomationCondition.eager()
    & dg.AutomationCondition.all_deps_blocking_checks_passed().ignore(
        dg.AssetSelection.assets(MODEL_KEY)
    ),
    freshness_policy=GOLD_FRESHNESS,
    check_specs=[
        audit_spec(PREDICTIONS_KEY, name, description, blocking=blocking)
        for name, (description, blocking) in drift_audit_specs().items()
    ],
    output_required=False,
    description=(
        "P(urgent) for every published post, from `models:/post_urgency@champion`: post "
        "key, student pseudonym, course, length, `p_urgent`, label, model version, the "
        "gold snapshot scored and when. Incremental (only gold rows added since its "
        "position, in Arrow batches) and written through write-audit-publish. Its audits "
        "check the rows and watch drift with Evidently on a fixed-seed sample of the new "
        "batch: data drift against the champion's training data, prediction drift, and "
        "the F1 estimated from calibrated probabilities without labels. Reports are saved "
        "under SPANDA_HOME/reports/drift. Rows of students whose consent is gone are "
        "erased at once."
    ),
)
def post_predictions(
    context: dg.AssetExecutionContext, lakehouse: LakehouseResource
) -> Iterator[Any]:
    from spanda_assets.defs.extract.assets import table_metadata
    from spanda_assets.defs.validation.assets import gold_consent
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.predict import erase_departed, open_predictions, stage_predictions
    from spanda_assets.lib.model.train import model_threshold
    from spanda_assets.lib.privacy.policy import policy_for
    from spanda_assets.lib.writes import row_count

    catalog = lakehouse.namespace("gold")
    consent = gold_consent(catalog, "model_training", policy_for("forum_posts").purpose)
    # Erasure first: it must not wait for a champion, nor for an audit.
    erased = erase_departed(open_predictions(catalog), consent)
    c = registry.client()
    champ = registry.champion(c)
    if champ is None:
        # Automation never gets here (eager waits for the model asset to exist, and a run
        # stops downstream of a blocked version); a hand-picked run does, and is told why.
        from spanda_assets.lib.model.registry import RegistryError

        raise RegistryError(
            f"no champion of post_urgency on {registry.redacted_uri()}: nothing can score "
            "posts until a version passes every blocking check (materialize "
            "model/post_urgency_model, or `spanda model promote VERSION`)"
        )
    import mlflow

    # by version: a hand move of the alias mid-run cannot mix two models' rows and threshold
    uri = f"models:/{registry.MODEL_NAME}/{champ.version}"
    model = mlflow.pyfunc.load_model(uri)
    result = stage_predictions(
        catalog, model, str(champ.version), consent, model_threshold(champ), model_uri=uri
    )
    result.erased_after_withdrawal = erased
    table = open_predictions(catalog)
    outcome = write_audit_publish(
        table,
        drift_audits(
            catalog, c, champ, model, context.run.run_id, severity_blocking(), result.sample
        ),
    )
    table.refresh()
    yield from outcome_events(
        PREDICTIONS_KEY,
        outcome,
        {
            **table_metadata(table, row_count(table)),
            **result.metadata(),
            "scored_at": dt.datetime.now(dt.UTC).isoformat(),
        },
    )
