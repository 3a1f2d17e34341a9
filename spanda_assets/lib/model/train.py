"""Train, gate, log, register, promote: one run of the urgency model's lifecycle.

1. The frame: gold.labeled_posts at its published snapshot (`frame.read_frame`).
2. Pre-train gates; a failed blocking gate ends the run before training. The MLflow
   run is still logged (with the gates' figures), so the attempt is on record.
3. Fit on the train split (students the held-out split never sees), score the
   held-out split, run the post-train gates, the champion scored on the same
   held-out posts for the regression gate.
4. Log params, metrics, the confusion matrix, the gates, the dataset input (its
   source names the Iceberg table and snapshot) and the model (models-from-code
   pyfunc + skops pipeline), register it as a new version of `post_urgency`.
5. Move `champion` to it only when every blocking gate passed; otherwise the version
   is tagged `blocked` with the gates that blocked it.

Lineage rides as run tags and version tags: the labeled and validated snapshot ids,
the label-config hash, the code version and the frame digest (decision 0029).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spanda_assets.lib.model import behavior, gates, registry
from spanda_assets.lib.model.drift import estimate_performance
from spanda_assets.lib.model.features import LABELS, build_pipeline, model_inputs, p_urgent
from spanda_assets.lib.model.frame import (
    FRAME_SCHEMA,
    LABELED,
    POSTS,
    TrainingFrame,
    frame_digest,
    main_snapshot_id,
    read_frame,
)
from spanda_assets.lib.model.gates import Gate
from spanda_assets.settings import min_labels_per_class

if TYPE_CHECKING:
    import pandas as pd
    from pyiceberg.catalog import Catalog

SEED = 0
THRESHOLD_SAMPLE = 20_000  # training posts the decision threshold is chosen on, at most
THRESHOLD_TAG = "spanda.threshold"
# The urgent share of the training split: the base rate p_urgent is calibrated to, which
# the label-free performance estimate needs to follow a batch with another share.
TRAINING_PRIOR_TAG = "spanda.training_prior"
# The label-free F1 estimate on the held-out posts (beside their realized F1, spanda.f1).
ESTIMATED_F1_TAG = "spanda.estimated_f1"
TRAINING_KEYS = "training_keys.json"
MODEL_DIR = Path(__file__).resolve().parent


def code_version() -> str:
    """The package version and a digest of the code and test cases that make the model."""
    h = hashlib.sha256()
    for path in sorted([*MODEL_DIR.glob("*.py"), *behavior.TESTS_DIR.glob("*")]):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    try:
        version = importlib_metadata.version("spanda")
    except importlib_metadata.PackageNotFoundError:
        version = "0"
    return f"{version}+{h.hexdigest()[:12]}"


@dataclass
class TrainResult:
    frame: TrainingFrame
    pre: list[Gate]
    post: list[Gate] = field(default_factory=list)
    run_id: str | None = None
    version: str | None = None
    promoted: bool = False
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, str] = field(default_factory=dict)
    champion_before: str | None = None
    threshold: float = 0.5  # p_urgent at or above it is called urgent
    training_prior: float | None = None  # urgent share of the training split
    reused: bool = False  # the frame and code were judged before: nothing trained

    @property
    def gates(self) -> list[Gate]:
        return [*self.pre, *self.post]

    @property
    def blocked_by(self) -> list[str]:
        return [g.name for g in self.gates if g.blocking and not g.passed]

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {
            "model_name": registry.MODEL_NAME,
            "model_version": self.version or "",
            "mlflow_run_id": self.run_id or "",
            "promoted_to_champion": self.promoted,
            "decision_threshold": self.threshold,
            "retrained": not self.reused,
            "champion_before": self.champion_before or "",
            "blocked_by": self.blocked_by,
            "tracking_uri": registry.redacted_uri(),
            **{k.removeprefix("spanda."): v for k, v in self.lineage.items()},
        }
        md.update({k: round(v, 4) for k, v in self.metrics.items() if np.isfinite(v)})
        return md


def _lineage(catalog: Catalog, frame: TrainingFrame) -> dict[str, str]:
    return {
        "spanda.labeled_snapshot_id": str(frame.snapshot_id),
        "spanda.validated_snapshot_id": str(main_snapshot_id(catalog, POSTS) or ""),
        "spanda.label_config_hash": ",".join(frame.config_hashes),
        "spanda.code_version": code_version(),
        "spanda.frame_digest": frame.digest,
        "spanda.frame_rows": str(frame.table.num_rows),
    }


def _scorer(pipeline: Any) -> behavior.Score:
    import pandas as pd

    return lambda texts: p_urgent(pipeline, pd.DataFrame({"body": list(texts)}))


def model_threshold(version: Any) -> float:
    """A registered version's decision threshold (0.5 for a version without one)."""
    return float(version.tags.get(THRESHOLD_TAG) or 0.5)


def model_training_prior(version: Any) -> float | None:
    """A registered version's training share of urgent posts (None when not recorded)."""
    raw = version.tags.get(TRAINING_PRIOR_TAG)
    try:
        prior = float(raw) if raw else None
    except ValueError:
        return None
    return prior if prior is not None and 0.0 < prior < 1.0 else None


def choose_threshold(train: pd.DataFrame) -> float:
    """The F1-best threshold on out-of-fold calibrated probabilities of the train split,
    grouped by student like the split itself (a sample of at most THRESHOLD_SAMPLE posts:
    the threshold's cost stays flat as the labeled set grows)."""
    from sklearn.model_selection import GroupKFold, cross_val_predict

    sample = train
    if len(train) > THRESHOLD_SAMPLE:
        sample = train.sample(THRESHOLD_SAMPLE, random_state=SEED)
    folds = min(3, sample["subject_id"].nunique())
    if folds < 2:
        return 0.5
    proba = cross_val_predict(
        build_pipeline(seed=SEED),
        model_inputs(sample),
        sample["label"],
        cv=GroupKFold(folds),
        groups=sample["subject_id"],
        method="predict_proba",
    )
    p = proba[:, sorted(LABELS).index("urgent")]
    return gates.choose_threshold((sample["label"] == "urgent").to_numpy().astype(int), p)


def _champion_f1(c: Any, current: Any, test: pd.DataFrame) -> tuple[float | None, str | None]:
    """The champion's F1 on this held-out split, at its own threshold (None without one)."""
    from sklearn.metrics import f1_score

    if current is None:
        return None, None
    import mlflow

    # by version, not by alias: a hand move between the two reads cannot mix them up
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}/{current.version}")
    p = np.asarray(model.predict(test[["body"]])["p_urgent"], dtype=float)
    y = (test["label"] == "urgent").to_numpy().astype(int)
    pred = (p >= model_threshold(current)).astype(int)
    return float(f1_score(y, pred, zero_division=0)), str(current.version)


def _confusion_figure(cm: list[list[int]]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(np.asarray(cm), cmap="Blues")
    ax.set_xticks([0, 1], labels=list(LABELS))
    ax.set_yticks([0, 1], labels=list(LABELS))
    ax.set_xlabel("predicted")
    ax.set_ylabel("labeled")
    for i in range(2):
        for j in range(2):
            ax.text(j, i, str(cm[i][j]), ha="center", va="center")
    fig.tight_layout()
    plt.close(fig)  # mlflow.log_figure renders it; pyplot must not keep it alive
    return fig


def _dataset(frame: TrainingFrame, df: pd.DataFrame) -> Any:
    from mlflow.data.dataset_source import DatasetSource

    class IcebergSnapshot(DatasetSource):
        """An Iceberg table at one snapshot: where the training rows came from."""

        def __init__(self, table: str, snapshot_id: int) -> None:
            self.table = table
            self.snapshot_id = snapshot_id

        @staticmethod
        def _get_source_type() -> str:
            return "iceberg"

        def load(self) -> Any:
            raise NotImplementedError("read it with `spanda model lineage`")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> DatasetSource:
            raise NotImplementedError

        def to_dict(self) -> dict[str, Any]:
            return {"table": self.table, "snapshot_id": self.snapshot_id}

        @classmethod
        def from_dict(cls, d: dict[str, Any]) -> DatasetSource:
            return cls(d["table"], int(d["snapshot_id"]))

    from mlflow.data.pandas_dataset import from_pandas

    return from_pandas(
        df.drop(columns=["body"]),  # the profile and digest, never the text
        source=IcebergSnapshot(".".join(LABELED), frame.snapshot_id),
        name=".".join(LABELED),
        targets="label",
        digest=frame.digest[:36],
    )


def _input_example() -> pd.DataFrame:
    import pandas as pd

    # A written example, not a student's post: the example is stored with the model.
    return pd.DataFrame(
        {"body": ["The upload keeps failing and the deadline is tonight, please help."]}
    )


def judged_before(c: Any, lineage: dict[str, str]) -> Any:
    """The latest registered version trained on this exact frame by this exact code, if
    any (the latest: a frame trained again after a stale champion has the newer verdict)."""
    judged = [
        mv
        for mv in c.search_model_versions(f"name='{registry.MODEL_NAME}'")
        if mv.tags.get("spanda.frame_digest") == lineage["spanda.frame_digest"]
        and mv.tags.get("spanda.code_version") == lineage["spanda.code_version"]
        and mv.tags.get(registry.STATUS_TAG) not in (None, "pending")
    ]
    return max(judged, key=lambda mv: int(mv.version), default=None)


def _blocked_only_by_regression(mv: Any) -> bool:
    """Was `mv` held back by no_regression alone (the one gate a stale champion voids)?"""
    return (
        mv.tags.get(registry.STATUS_TAG) == "blocked"
        and mv.tags.get(registry.BLOCKED_BY_TAG, "") == "no_regression"
    )


def _reuse(c: Any, mv: Any, result: TrainResult, promote: bool) -> TrainResult:
    """The verdict of a version that already judged this frame and code: nothing new to
    learn, so nothing is trained. A version that passed every gate but never took the
    alias (a crash between the two) takes it now."""
    path = c.download_artifacts(mv.run_id, "gates.json", tempfile.mkdtemp())
    recorded = json.loads(Path(path).read_text())
    note = f"frame and code unchanged since v{mv.version}: its verdict stands"
    result.pre = [
        Gate(name, bool(g["passed"]), {**_plain(g), "note": note}, {}, bool(g["blocking"]))
        for name, g in recorded.items()
        if name in gates.PRE_TRAIN
    ]
    result.post = [
        Gate(name, bool(g["passed"]), {**_plain(g), "note": note}, {}, bool(g["blocking"]))
        for name, g in recorded.items()
        if name in gates.POST_TRAIN
    ]
    result.version, result.run_id, result.reused = str(mv.version), mv.run_id, True
    result.threshold = model_threshold(mv)
    result.metrics = {"f1": float(mv.tags.get("spanda.f1") or 0.0)}
    status = mv.tags.get(registry.STATUS_TAG)
    if promote and status == "candidate" and not result.blocked_by:
        registry.move_champion(
            c, result.version, by="spanda (every blocking gate passed)", reason="recovered"
        )
        result.promoted = True
    return result


def _plain(g: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in g.items() if k not in ("passed", "blocking")}


def train_and_register(
    catalog: Catalog,
    *,
    promote: bool = True,
    label_transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    trigger: str = "asset",
    departed: Any = None,
) -> TrainResult:
    """One training run. `label_transform` edits the frame before training (a drill:
    the tests shuffle the labels with it and expect the gates to block). `departed`
    (post keys -> those whose student left) adds the consent gate, and tells whether
    the champion is stale: then no_regression only warns (the champion must go whatever
    its score) and a frame earlier held back by that gate alone is trained again.

    A frame and code a registered version already judged is not trained again
    (labeled_posts publishes on every run, so the daily schedule fires without new
    labels): that version's verdict is returned."""
    import mlflow

    c = registry.client()
    frame = read_frame(catalog)
    df = frame.to_pandas()
    lineage = _lineage(catalog, frame)
    current = registry.champion(c)
    champion_stale = False
    if departed is not None and current is not None:
        from spanda_assets.lib.model.consent import champion_staleness

        champion_stale = champion_staleness(c, departed, current).stale
    if label_transform is None:
        seen = judged_before(c, lineage)
        # A verdict of "worse than the champion" is void once that champion is stale
        # (no_regression no longer blocks against it): such a frame is trained again.
        if seen is not None and not (champion_stale and _blocked_only_by_regression(seen)):
            result = TrainResult(frame=frame, pre=[], lineage=lineage)
            result.champion_before = current.version if current else None
            return _reuse(c, seen, result, promote)
    else:
        # A drill trains on rows the snapshot does not hold: its digest says so, and no
        # later run mistakes its verdict for the snapshot's.
        import pyarrow as pa

        df = label_transform(df)
        edited = pa.Table.from_pandas(df[list(FRAME_SCHEMA.names)], preserve_index=False)
        lineage = {**lineage, "spanda.frame_digest": frame_digest(edited.cast(FRAME_SCHEMA))}
    result = TrainResult(frame=frame, pre=gates.pre_train(df, departed=departed))
    result.lineage = lineage
    result.champion_before = current.version if current else None
    try:
        exp = registry.experiment_id(c)
        run = mlflow.start_run(
            experiment_id=exp, tags={**result.lineage, "spanda.trigger": trigger}
        )
    except Exception as exc:
        raise registry.wrap("start a run", exc) from exc
    with run:
        result.run_id = run.info.run_id
        mlflow.log_input(_dataset(frame, df), context="training")
        mlflow.log_params(
            {
                "model": "tfidf-word-char+post-features+logreg-calibrated",
                "C": 4.0,
                "seed": SEED,
                "min_labels_per_class": min_labels_per_class(),
                "train_posts": int((df["split"] == "train").sum()),
                "test_posts": int((df["split"] == "test").sum()),
            }
        )
        if result.blocked_by:
            _log_gates(result)
            mlflow.set_tag(registry.STATUS_TAG, "blocked_before_training")
            return result

        train = df[df["split"] == "train"].reset_index(drop=True)
        test = df[df["split"] == "test"].reset_index(drop=True)
        pipeline = build_pipeline(seed=SEED).fit(model_inputs(train), train["label"])
        result.threshold = choose_threshold(train)
        result.training_prior = float((train["label"] == "urgent").mean())
        mlflow.log_param("training_prior", round(result.training_prior, 6))
        t = result.threshold
        ev = gates.evaluate(p_urgent(pipeline, test), test, train, threshold=t)
        score = _scorer(pipeline)
        champion_f1, champion_version = _champion_f1(c, current, test)
        d = behavior.TESTS_DIR
        result.post = [
            gates.heldout_f1(ev),
            gates.behaviour_gate(behavior.minimum_functionality(score, d, threshold=t)),
            gates.behaviour_gate(behavior.invariance(score, d, threshold=t)),
            gates.behaviour_gate(behavior.directional(score)),
            gates.slice_recall_gap(ev),
            gates.no_regression(ev, champion_f1, champion_version, champion_stale=champion_stale),
        ]
        result.metrics = dict(ev.metrics)
        # The label-free estimate on posts whose labels are known: the baseline the
        # estimated_performance check compares a batch's estimate with, so that the
        # estimator's own bias (Platt scaling is under-confident near the threshold
        # here) cancels instead of reading as a loss of F1.
        result.metrics["estimated_f1"] = estimate_performance(ev.p_test, t, result.training_prior)[
            "f1"
        ]
        result.metrics.update({f"recall.course_{k}": v for k, v in ev.by_course_recall.items()})
        if champion_f1 is not None:
            result.metrics["champion_f1_same_heldout"] = champion_f1
        mlflow.log_metrics({k: v for k, v in result.metrics.items() if np.isfinite(v)})
        _log_gates(result)
        mlflow.log_figure(_confusion_figure(ev.confusion), "confusion_matrix.png")
        with tempfile.TemporaryDirectory() as tmp:
            keys = Path(tmp) / TRAINING_KEYS
            # Pseudonymous keys only: what consent staleness needs, no text.
            keys.write_text(json.dumps(sorted(df["post_key"].tolist())))
            mlflow.log_artifact(str(keys))
            version = _log_model(pipeline, Path(tmp), result)
        result.version = version
    _tag_version(c, result)
    if promote and not result.blocked_by:
        registry.move_champion(
            c,
            version,
            by="spanda (every blocking gate passed)",
            reason=f"trained by run {result.run_id}",
        )
        result.promoted = True
    return result


def metric_name(name: str) -> str:
    """MLflow accepts letters, digits and `_-. :/` in metric names, up to 250 characters."""
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", name)[:250]


def _log_gates(result: TrainResult) -> None:
    import mlflow

    mlflow.log_metrics({f"gate.{g.name}": float(g.passed) for g in result.gates})
    for g in result.gates:
        for k, v in g.metadata.items():
            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
                mlflow.log_metric(metric_name(f"{g.name}.{k}"), float(v))
            elif k == "pass_rate_by_capability" and isinstance(v, dict):
                rates = {metric_name(f"{g.name}.{cap}"): float(r) for cap, r in v.items()}
                mlflow.log_metrics(rates)
    mlflow.log_dict(
        {g.name: {"passed": g.passed, "blocking": g.blocking, **g.metadata} for g in result.gates},
        "gates.json",
    )


def _log_model(pipeline: Any, tmp: Path, result: TrainResult) -> str:
    import mlflow
    import pandas as pd
    import skops.io
    from mlflow.models import infer_signature

    path = tmp / "pipeline.skops"
    skops.io.dump(pipeline, path)
    example = _input_example()
    signature = infer_signature(
        example, pd.DataFrame({"p_urgent": _scorer(pipeline)(example["body"].tolist())})
    )
    requirements = [
        f"{dist}=={importlib_metadata.version(dist)}"
        for dist in ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")
    ]
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(MODEL_DIR / "pyfunc_model.py"),
        artifacts={"pipeline": str(path)},
        code_paths=[str(MODEL_DIR / "features.py")],
        signature=signature,
        input_example=example,
        pip_requirements=requirements,
        tags=dict(result.lineage),
        metadata={
            "decision_threshold": result.threshold,
            "training_prior": result.training_prior,
        },
    )
    tags = {
        **result.lineage,
        # Pending until its gates are recorded: a crash before that leaves a version
        # nobody can promote by accident, and the next run judges the same frame again.
        registry.STATUS_TAG: "pending",
        THRESHOLD_TAG: str(result.threshold),
        "spanda.run_id": result.run_id or "",
    }
    if result.training_prior is not None:
        tags[TRAINING_PRIOR_TAG] = f"{result.training_prior:.6f}"
    try:
        mv = mlflow.register_model(info.model_uri, registry.MODEL_NAME, tags=tags)
    except Exception as exc:
        raise registry.wrap("register a model version", exc) from exc
    return str(mv.version)


def _tag_version(c: Any, result: TrainResult) -> None:
    if result.version is None:
        return
    blocked = result.blocked_by
    c.set_model_version_tag(
        registry.MODEL_NAME,
        result.version,
        registry.STATUS_TAG,
        "blocked" if blocked else "candidate",
    )
    c.set_model_version_tag(
        registry.MODEL_NAME, result.version, "spanda.run_id", result.run_id or ""
    )
    c.set_model_version_tag(
        registry.MODEL_NAME, result.version, "spanda.f1", f"{result.metrics.get('f1', 0):.4f}"
    )
    if "estimated_f1" in result.metrics:
        c.set_model_version_tag(
            registry.MODEL_NAME,
            result.version,
            ESTIMATED_F1_TAG,
            f"{result.metrics['estimated_f1']:.4f}",
        )
    if blocked:
        c.set_model_version_tag(
            registry.MODEL_NAME, result.version, registry.BLOCKED_BY_TAG, ",".join(blocked)
        )
