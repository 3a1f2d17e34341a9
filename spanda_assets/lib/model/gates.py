"""The model's gates: pre-train checks on the frame, post-train checks on the trained model.

Every gate returns a `Gate`: a verdict, the figures behind it and, when it fails,
what made it fail (counts, post keys and test-case texts; never a training post's
text). The model asset reports each as an asset check and logs the figures to MLflow;
`champion` moves only when every blocking gate passed (decision 0029).

Pre-train (the frame is fit to train on): schema contract (Pandera), two classes
with a minimum count each, no student on both sides of the split, no single feature
that predicts the label by itself (leakage), and a pipeline that can overfit a tiny
sample (a pipeline that cannot is broken, and a bad score later would hide it).

Post-train (the model is fit to serve): held-out F1 above a floor and above the best
dummy, the behavioural tests of `behavior.py`, the recall gap between course
slices, and no regression against the champion on the same held-out set.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from spanda_assets.lib.model.features import (
    LABELS,
    NUMERIC,
    POSITIVE,
    TEXT,
    build_pipeline,
    model_inputs,
    normalize,
)
from spanda_assets.settings import min_labels_per_class

if TYPE_CHECKING:
    import pandas as pd

ENV_F1_FLOOR = "SPANDA_MODEL_F1_FLOOR"
DEFAULT_F1_FLOOR = 0.70
ENV_DUMMY_MARGIN = "SPANDA_MODEL_DUMMY_MARGIN"
DEFAULT_DUMMY_MARGIN = 0.10
ENV_REGRESSION_TOLERANCE = "SPANDA_MODEL_REGRESSION_TOLERANCE"
DEFAULT_REGRESSION_TOLERANCE = 0.02
ENV_SLICE_GAP = "SPANDA_MODEL_MAX_SLICE_GAP"
DEFAULT_SLICE_GAP = 0.10
MIN_SLICE_POSITIVES = 10  # a course slice is judged once it holds this many urgent test posts
LEAKAGE_AUC = 0.98  # one feature separating the classes this well is a leak, not a signal
OVERFIT_SAMPLE = 20  # posts per class in the can-it-overfit sample
SHOWN = 20

PRE_TRAIN = (
    "training_frame_schema",
    "consent_current",
    "class_balance",
    "split_disjoint",
    "no_single_feature_leakage",
    "can_overfit_tiny_sample",
)
POST_TRAIN = (
    "heldout_f1",
    "minimum_functionality",
    "invariance",
    "directional",
    "slice_recall_gap",
    "no_regression",
)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        from spanda_assets.lib.errors import ConfigError

        raise ConfigError(f"{name}={raw!r}: expected a number") from None


@dataclass
class Gate:
    name: str
    passed: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    failing: dict[str, Any] = field(default_factory=dict)
    blocking: bool = True


# ---------------------------------------------------------------- pre-train


def frame_schema(frame: pd.DataFrame) -> Gate:
    """The training frame's contract, checked by Pandera with every failure collected."""
    import pandera.pandas as pa
    from pandera.errors import SchemaErrors

    schema = pa.DataFrameSchema(
        {
            "post_key": pa.Column(str, unique=True, nullable=False),
            "subject_id": pa.Column(str, pa.Check.str_matches(r"^ps_[0-9a-f]{32}$")),
            "course_id": pa.Column("int64", pa.Check.ge(1)),
            "body": pa.Column(
                str, pa.Check(lambda s: s.str.strip().str.len() > 0, name="not_blank")
            ),
            "label": pa.Column(str, pa.Check.isin(list(LABELS))),
            "split": pa.Column(str, pa.Check.isin(["train", "test"])),
        },
        strict=True,
        coerce=False,
    )
    try:
        schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        rows = []
        for r in cases.head(SHOWN).to_dict("records"):
            index = r.get("index")
            key = (
                frame["post_key"].iloc[int(index)] if isinstance(index, int | np.integer) else None
            )
            rows.append({"column": r.get("column"), "check": str(r.get("check")), "post_key": key})
        return Gate(
            "training_frame_schema",
            passed=False,
            metadata={"rows": len(frame), "failures": len(cases)},
            failing={"failures": rows},
        )
    return Gate("training_frame_schema", True, {"rows": len(frame), "columns": list(frame.columns)})


def class_balance(frame: pd.DataFrame, need: int) -> Gate:
    """Both labels, each at least `need` times, and both present in the held-out split."""
    counts = Counter(frame["label"])
    test = Counter(frame.loc[frame["split"] == "test", "label"])
    short = {
        label: {"have": counts.get(label, 0), "need": need}
        for label in LABELS
        if counts.get(label, 0) < need
    }
    missing_in_test = [label for label in LABELS if test.get(label, 0) == 0]
    return Gate(
        "class_balance",
        passed=not short and not missing_in_test,
        metadata={"by_label": dict(counts), "test_by_label": dict(test), "minimum_per_class": need},
        failing={"short": short, "missing_in_test_split": missing_in_test},
    )


def split_disjoint(frame: pd.DataFrame) -> Gate:
    sides = frame.groupby("subject_id")["split"].nunique()
    straddling = sorted(sides[sides > 1].index.tolist())
    dup = frame["post_key"][frame["post_key"].duplicated()].tolist()
    return Gate(
        "split_disjoint",
        passed=not straddling and not dup,
        metadata={
            "train_posts": int((frame["split"] == "train").sum()),
            "test_posts": int((frame["split"] == "test").sum()),
            "students_in_both_splits": len(straddling),
            "posts_twice": len(dup),
        },
        failing={"students_in_both_splits": straddling[:SHOWN], "posts_twice": dup[:SHOWN]},
    )


def _auc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2 or len(set(scores.tolist())) < 2:
        return 0.5
    auc = float(roc_auc_score(y, scores))
    return max(auc, 1 - auc)


def single_feature_leakage(frame: pd.DataFrame) -> Gate:
    """No column or word that by itself separates urgent from not urgent (AUC >= 0.98).

    Covers the frame's columns (course, student), the model's post features, and every
    word in at least 1% of posts: a label word left in the text, or a course that only
    ever holds urgent posts, would pass every quality gate and fail in production.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    y = (frame["label"] == POSITIVE).to_numpy().astype(int)
    aucs: dict[str, float] = {}
    for column in ("course_id", "subject_id"):
        rate = frame.groupby(column)["label"].transform(lambda s: (s == POSITIVE).mean())
        counts = frame.groupby(column)["label"].transform("size")
        # Only groups seen often enough to mean something: a student with one post
        # trivially "predicts" it.
        score = np.where(counts.to_numpy() >= 5, rate.to_numpy(), 0.5)
        aucs[column] = _auc(score, y)
    inputs = model_inputs(frame)
    for column in NUMERIC:
        aucs[column] = _auc(inputs[column].to_numpy(dtype=float), y)
    aucs["length"] = _auc(np.asarray([len(t) for t in inputs[TEXT]], dtype=float), y)
    min_df = max(5, int(0.01 * len(frame)))
    if len(frame) >= min_df:
        vec = CountVectorizer(binary=True, min_df=min_df, token_pattern=r"(?u)\b\w+\b")
        try:
            x = vec.fit_transform(inputs["text"])
        except ValueError:  # no word frequent enough
            x = None
        if x is not None and y.sum() and (1 - y).sum():
            tpr = np.asarray(x[y == 1].mean(axis=0)).ravel()
            fpr = np.asarray(x[y == 0].mean(axis=0)).ravel()
            word_auc = np.maximum((1 + tpr - fpr) / 2, (1 - tpr + fpr) / 2)
            words = vec.get_feature_names_out()
            for i in np.argsort(-word_auc)[:5]:
                aucs[f"word:{words[i]}"] = float(word_auc[i])
    leaks = {k: round(v, 4) for k, v in aucs.items() if v >= LEAKAGE_AUC}
    top = dict(sorted(((k, round(v, 4)) for k, v in aucs.items()), key=lambda kv: -kv[1])[:8])
    return Gate(
        "no_single_feature_leakage",
        passed=not leaks,
        metadata={"auc_ceiling": LEAKAGE_AUC, "strongest_single_features": top},
        failing={"leaking_features": leaks},
    )


def can_overfit(frame: pd.DataFrame, seed: int = 0) -> Gate:
    """The uncalibrated pipeline, barely regularized, must fit a tiny sample exactly."""
    sample = frame.assign(_norm=frame["body"].map(normalize))
    # Texts that read the same with different labels cannot be fit; leave them out.
    consistent = sample.groupby("_norm")["label"].transform("nunique") == 1
    sample = sample[consistent].drop_duplicates("_norm")
    parts = [
        g.sample(min(len(g), OVERFIT_SAMPLE), random_state=seed) for _, g in sample.groupby("label")
    ]
    if len(parts) < 2:
        return Gate(
            "can_overfit_tiny_sample", False, {"note": "one class only"}, {"classes": len(parts)}
        )
    import pandas as pd

    tiny = pd.concat(parts)
    pipeline = build_pipeline(seed=seed, c=1e4, calibrated=False)
    pipeline.fit(model_inputs(tiny), tiny["label"])
    accuracy = float((pipeline.predict(model_inputs(tiny)) == tiny["label"].to_numpy()).mean())
    return Gate(
        "can_overfit_tiny_sample",
        passed=accuracy == 1.0,
        metadata={"sample_posts": len(tiny), "training_accuracy": round(accuracy, 4)},
        failing={"training_accuracy": round(accuracy, 4)},
    )


def consent_current(frame: pd.DataFrame, departed: Any) -> Gate:
    """No post of a student who withdrew model_training consent or was erased: the labeled
    set erases them, but a training run that starts before it did must not learn them."""
    gone = sorted(departed(set(frame["post_key"])))
    return Gate(
        "consent_current",
        passed=not gone,
        metadata={"posts": len(frame), "departed_posts": len(gone)},
        failing={
            "departed_posts": len(gone),
            "what_now": "materialize gold/labeled_posts first: it erases them",
        },
    )


def pre_train(frame: pd.DataFrame, need: int | None = None, departed: Any = None) -> list[Gate]:
    """The pre-train gates; `departed` (post keys -> those whose student left) adds the
    consent gate."""
    schema = frame_schema(frame)
    if not schema.passed:
        # Later gates would fail on the same broken rows, less clearly.
        return [schema]
    return [
        schema,
        *([consent_current(frame, departed)] if departed is not None else []),
        class_balance(frame, min_labels_per_class() if need is None else need),
        split_disjoint(frame),
        single_feature_leakage(frame),
        can_overfit(frame),
    ]


# ---------------------------------------------------------------- evaluation


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = idx == b
        if mask.any():
            ece += mask.mean() * abs(p[mask].mean() - y[mask].mean())
    return float(ece)


def dummy_f1(train: pd.DataFrame, test: pd.DataFrame, seed: int = 0) -> float:
    """The best F1 a model that never reads the text reaches on the held-out set."""
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import f1_score

    best = 0.0
    for strategy in ("most_frequent", "stratified", "uniform", "constant"):
        kwargs: dict[str, Any] = {"constant": POSITIVE} if strategy == "constant" else {}
        clf = DummyClassifier(strategy=strategy, random_state=seed, **kwargs)
        clf.fit(np.zeros((len(train), 1)), train["label"])
        pred = clf.predict(np.zeros((len(test), 1)))
        best = max(best, float(f1_score(test["label"], pred, pos_label=POSITIVE, zero_division=0)))
    return best


@dataclass
class Evaluation:
    metrics: dict[str, float]
    by_course_recall: dict[str, float]
    by_course_positives: dict[str, int]
    confusion: list[list[int]]  # rows true (not_urgent, urgent), columns predicted
    p_test: np.ndarray


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The decision threshold with the best F1 on out-of-fold probabilities (ties go to
    the one nearest 0.5). Calibrated probabilities say how likely a post is urgent; the
    threshold says when to call it urgent, which depends on the labeled set's class mix
    (active learning picks more routine posts than the forum holds)."""
    grid = np.round(np.linspace(0.05, 0.95, 91), 2)
    best, best_f1 = 0.5, -1.0
    for t in sorted(grid, key=lambda t: abs(t - 0.5)):
        pred = p >= t
        tp = float((pred & (y == 1)).sum())
        f1 = 2 * tp / max(float(pred.sum()) + float((y == 1).sum()), 1.0)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = float(t), f1
    return best


def evaluate(
    p: np.ndarray, test: pd.DataFrame, train: pd.DataFrame, threshold: float = 0.5
) -> Evaluation:
    from sklearn.metrics import (
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = (test["label"] == POSITIVE).to_numpy().astype(int)
    pred = (p >= threshold).astype(int)
    metrics = {
        "threshold": threshold,
        "f1": float(f1_score(y, pred, zero_division=0)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
        "calibration_error": expected_calibration_error(y, p),
        "dummy_f1": dummy_f1(train, test),
        "test_posts": float(len(test)),
        "train_posts": float(len(train)),
    }
    recall: dict[str, float] = {}
    positives: dict[str, int] = {}
    for course, idx in test.groupby("course_id").groups.items():
        rows = test.index.get_indexer(idx)
        pos = y[rows] == 1
        positives[str(course)] = int(pos.sum())
        if pos.any():
            recall[str(course)] = float(pred[rows][pos].mean())
    cm = confusion_matrix(y, pred, labels=[0, 1]).tolist()
    return Evaluation(metrics, recall, positives, cm, p)


# ---------------------------------------------------------------- post-train


def heldout_f1(ev: Evaluation) -> Gate:
    floor = env_float(ENV_F1_FLOOR, DEFAULT_F1_FLOOR)
    margin = env_float(ENV_DUMMY_MARGIN, DEFAULT_DUMMY_MARGIN)
    f1, dummy = ev.metrics["f1"], ev.metrics["dummy_f1"]
    return Gate(
        "heldout_f1",
        passed=f1 >= floor and f1 >= dummy + margin,
        metadata={
            "f1": round(f1, 4),
            "f1_floor": floor,
            "dummy_f1": round(dummy, 4),
            "dummy_margin": margin,
        },
        failing={"f1": round(f1, 4), "needs": round(max(floor, dummy + margin), 4)},
    )


def slice_recall_gap(ev: Evaluation) -> Gate:
    limit = env_float(ENV_SLICE_GAP, DEFAULT_SLICE_GAP)
    judged = {
        c: r
        for c, r in ev.by_course_recall.items()
        if ev.by_course_positives[c] >= MIN_SLICE_POSITIVES
    }
    md: dict[str, Any] = {
        "recall_by_course": {c: round(r, 4) for c, r in ev.by_course_recall.items()},
        "urgent_test_posts_by_course": ev.by_course_positives,
        "max_gap": limit,
        "min_urgent_posts_per_slice": MIN_SLICE_POSITIVES,
    }
    if len(judged) < 2:
        md["note"] = (
            f"fewer than two courses hold {MIN_SLICE_POSITIVES} urgent held-out posts: a gap "
            "between smaller slices is noise, so it is shown, not judged"
        )
        return Gate("slice_recall_gap", True, md)
    gap = max(judged.values()) - min(judged.values())
    md["recall_gap"] = round(gap, 4)
    worst = min(judged, key=lambda c: judged[c])
    return Gate(
        "slice_recall_gap",
        passed=gap < limit,
        metadata=md,
        failing={
            "recall_gap": round(gap, 4),
            "worst_course": worst,
            "best_course": max(judged, key=lambda c: judged[c]),
        },
    )


def no_regression(
    ev: Evaluation,
    champion_f1: float | None,
    champion_version: str | None,
    *,
    champion_stale: bool = False,
) -> Gate:
    """F1 no worse than the champion's on the same held-out posts, within the tolerance.

    A champion that trained on posts whose students have since withdrawn consent
    (`champion_stale`) must be replaced by the deadline whatever its score: part of what
    it scores with is no longer ours to use, and a model trained without those posts
    may rightly be a little worse. Against such a champion the gate still measures and
    warns, but does not block; the absolute bar (F1 floor, dummy margin, behaviour
    tests, slice gap) still does. Blocking here would keep the withdrawn posts'
    influence in production for as long as the new model falls short."""
    tol = env_float(ENV_REGRESSION_TOLERANCE, DEFAULT_REGRESSION_TOLERANCE)
    f1 = ev.metrics["f1"]
    if champion_f1 is None:
        return Gate(
            "no_regression",
            True,
            {"f1": round(f1, 4), "note": "no champion yet: nothing to regress from"},
        )
    md: dict[str, Any] = {
        "f1": round(f1, 4),
        "champion_version": champion_version,
        "champion_f1_same_heldout": round(champion_f1, 4),
        "tolerance": tol,
    }
    if champion_stale:
        md["note"] = (
            f"the champion v{champion_version} trained on posts whose students withdrew "
            "consent: it must be replaced, so a regression against it warns instead of "
            "blocking (the F1 floor and the behaviour tests still block)"
        )
    return Gate(
        "no_regression",
        passed=f1 >= champion_f1 - tol,
        metadata=md,
        failing={"f1": round(f1, 4), "champion_f1": round(champion_f1, 4)},
        blocking=not champion_stale,
    )


def behaviour_gate(result: Any) -> Gate:
    """A `behavior.BehaviorResult` as a gate."""
    return Gate(
        result.name,
        passed=result.passed,
        metadata={
            "cases": result.cases,
            "pass_rate": result.pass_rate,
            "required": result.required,
            "pass_rate_by_capability": result.by_capability,
            "failing_examples": result.failing,
        },
        failing={"pass_rate": result.pass_rate, "failing_examples": result.failing[:5]},
    )
