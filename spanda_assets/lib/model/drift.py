"""Drift between a reference batch and the current one, and performance without labels.

`data_drift`, `prediction_drift` and `label_drift` run Evidently's DataDriftPreset
(0.7) on at most `max_rows` rows per side and return what it decided, column by
column and for the whole batch, with the saved HTML report beside it for a person
to read. Evidently picks each column's test itself (for up to 1,000 reference
rows a p-value test, KS or chi-squared; above that a distance, Wasserstein or
Jensen-Shannon); the result keeps the score and the method's name as reported, and
a column counts as drifted when Evidently's own per-column test failed.

Text columns are compared through descriptors computed on the text (length, word
count, question and exclamation marks, deadline/exam words, calls for help), never
as raw text: Evidently's raw-text test trains a TF-IDF domain classifier that takes
~6 s per report at up to 1,000 rows (a bootstrap of 1,000 ROC AUCs), raises on a
batch whose text has no vocabulary (blank posts), and does not see posts growing
longer, which is the drift that matters here. The descriptors need no downloads
(Sentiment and OOV would call `nltk.download`, which fails offline).

`estimate_performance` estimates precision, recall and F1 from calibrated
probabilities alone (confidence-based performance estimation, the idea behind
NannyML's CBPE): it is what can be said about a batch before anyone labels it.
Given the share of urgent posts the model was trained on, it first re-estimates the
batch's own share by EM (`adjust_to_batch_prior`), so that a week in which far more
posts are urgent is not read through the training week's base rate.

Evidently is imported inside the functions (~2.6 s), never when this module loads.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Evidently's snapshot dict: the metric and test types this module reads.
VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
DRIFTED_COLUMNS = "evidently:metric_v2:DriftedColumnsCount"
PREDICTION_COLUMN = "p_urgent"
LABEL_COLUMN = "label"

# Descriptor name suffix -> what it measures on a text column; named "<column>: <suffix>".
TEXT_DESCRIPTORS = (
    "length (chars)",
    "word count",
    "has '?'",
    "has '!'",
    "mentions deadline/exam",
    "asks for help",
)
DEADLINE_WORDS = r"(?i)\b(deadline|due|exam|exams|quiz|test|final|extension)\b"
HELP_WORDS = r"(?i)\b(help|urgent|asap|please|locked|stuck|error)\b"


@dataclass
class DriftResult:
    """What Evidently decided about one comparison, in plain values."""

    kind: str  # "data" | "prediction" | "label"
    drifted: bool  # the dataset-level verdict
    drift_share: float  # share of columns judged drifted (0..1)
    threshold: float  # the drift_share at or above which `drifted` is True
    columns: dict[str, float]  # per-column drift score as Evidently reports it
    methods: dict[str, str]  # per-column test/method name Evidently chose
    drifted_columns: list[str]
    rows_reference: int  # rows actually given to Evidently
    rows_current: int
    rows_reference_total: int  # before sampling
    rows_current_total: int
    sample_seed: int
    report_path: Path | None  # the saved Evidently HTML report

    @property
    def sampling_note(self) -> str:
        sides = (
            ("reference", self.rows_reference, self.rows_reference_total),
            ("current", self.rows_current, self.rows_current_total),
        )
        parts = []
        for side, used, total in sides:
            if used < total:
                parts.append(f"{side}: {used:,} of {total:,} rows sampled without replacement")
            else:
                parts.append(f"{side}: all {total:,} rows")
        return "; ".join(parts) + f" (numpy default_rng seed {self.sample_seed})"

    def metadata(self) -> dict[str, Any]:
        """JSON-able values only (a Dagster materialization's metadata, a log line)."""
        return {
            "kind": self.kind,
            "drifted": bool(self.drifted),
            "drift_share": float(self.drift_share),
            "threshold": float(self.threshold),
            # NaN (a test with nothing to compare, e.g. one value on both sides) is not JSON.
            "columns": {c: _json_float(v) for c, v in self.columns.items()},
            "methods": dict(self.methods),
            "drifted_columns": list(self.drifted_columns),
            "rows_reference": int(self.rows_reference),
            "rows_current": int(self.rows_current),
            "rows_reference_total": int(self.rows_reference_total),
            "rows_current_total": int(self.rows_current_total),
            "sample_seed": int(self.sample_seed),
            "sampling": self.sampling_note,
            "report_path": str(self.report_path) if self.report_path is not None else "",
        }


def data_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: Sequence[str],
    categorical: Sequence[str],
    text: Sequence[str] = (),
    report_path: Path,
    max_rows: int = 5000,
    seed: int = 0,
    drift_share: float = 0.5,
) -> DriftResult:
    """Drift of the declared columns (text through its descriptors) from `reference`."""
    return _drift(
        "data",
        reference,
        current,
        numerical=list(numerical),
        categorical=list(categorical),
        text=list(text),
        report_path=report_path,
        max_rows=max_rows,
        seed=seed,
        drift_share=drift_share,
    )


def prediction_drift(
    reference: np.ndarray | Sequence[float],
    current: np.ndarray | Sequence[float],
    *,
    report_path: Path,
    max_rows: int = 5000,
    seed: int = 0,
) -> DriftResult:
    """Drift of the distribution of the model's `p_urgent` scores."""
    frames = [
        pd.DataFrame({PREDICTION_COLUMN: _scores(v, side)})
        for v, side in ((reference, "reference"), (current, "current"))
    ]
    return _drift(
        "prediction",
        frames[0],
        frames[1],
        numerical=[PREDICTION_COLUMN],
        categorical=[],
        text=[],
        report_path=report_path,
        max_rows=max_rows,
        seed=seed,
        drift_share=0.5,
    )


def label_drift(
    reference: Sequence[str],
    current: Sequence[str],
    *,
    report_path: Path,
    max_rows: int = 5000,
    seed: int = 0,
) -> DriftResult:
    """Drift of the label distribution (a categorical column)."""
    frames = [
        pd.DataFrame({LABEL_COLUMN: pd.Series([str(v) for v in labels], dtype=object)})
        for labels in (reference, current)
    ]
    return _drift(
        "label",
        frames[0],
        frames[1],
        numerical=[],
        categorical=[LABEL_COLUMN],
        text=[],
        report_path=report_path,
        max_rows=max_rows,
        seed=seed,
        drift_share=0.5,
    )


def _probabilities(p_urgent: np.ndarray | Sequence[float]) -> np.ndarray:
    p = np.asarray(p_urgent, dtype=float).ravel()
    if p.size and (not np.all(np.isfinite(p)) or p.min() < 0.0 or p.max() > 1.0):
        raise ValueError("p_urgent must hold probabilities in [0, 1], without NaN")
    return p


def adjust_to_batch_prior(
    p_urgent: np.ndarray | Sequence[float],
    training_prior: float,
    *,
    tolerance: float = 1e-8,
    max_iterations: int = 1_000,
) -> tuple[np.ndarray, float]:
    """The batch's share of urgent posts, and its posts' probabilities under that share.

    A calibrated model's p is P(urgent | text) at the share of urgent posts it was
    trained on. When the share moves (an exam week), every p is read through the old
    base rate and the expected confusion matrix is off even if nothing else changed.
    EM re-estimates the batch's share from its own unlabeled probabilities (Saerens,
    Latinne & Decaestecker, Neural Computation 14(1), 2002): rescale each p by the
    ratio of the new share to the old, renormalize, take the mean as the new share,
    repeat. Without a shift it stays where it started. The text-to-label relation is
    assumed unchanged (label shift); under concept drift no unlabeled method can tell.
    """
    p = _probabilities(p_urgent)
    if not 0.0 < training_prior < 1.0:
        raise ValueError(
            f"training_prior must be a share strictly between 0 and 1, got {training_prior!r}"
        )
    if p.size == 0:
        return p, training_prior
    eps = 1e-9
    p = np.clip(p, eps, 1.0 - eps)
    prior = training_prior
    q = p
    for _ in range(max_iterations):
        up = prior / training_prior * p
        down = (1.0 - prior) / (1.0 - training_prior) * (1.0 - p)
        q = up / (up + down)
        new = float(q.mean())
        done = abs(new - prior) < tolerance
        prior = new
        if done:
            break
    return q, prior


def estimate_performance(
    p_urgent: np.ndarray | Sequence[float],
    threshold: float = 0.5,
    training_prior: float | None = None,
) -> dict[str, float]:
    """Expected precision, recall, F1 and accuracy of `p >= threshold`, from `p` alone.

    If the probabilities are calibrated, a post predicted urgent is truly urgent with
    probability p, so the expected confusion matrix is TP = sum p and FP = sum (1 - p)
    over the predicted positives, FN = sum p and TN = sum (1 - p) over the rest.

    With `training_prior` (the urgent share of the model's training posts) the
    probabilities are first moved to the batch's own share by `adjust_to_batch_prior`;
    the decisions stay those of the raw `p >= threshold`, as the model made them. The
    estimate is only as good as the calibration, and says nothing under concept drift
    (when the same text comes to mean something else); it is a warning, not a score.
    An empty batch or an empty denominator gives 0.0, never NaN.
    """
    p = _probabilities(p_urgent)
    predicted = p >= threshold
    q = p
    if training_prior is not None:
        q, _ = adjust_to_batch_prior(p, training_prior)
    tp = float(q[predicted].sum())
    fp = float((1.0 - q[predicted]).sum())
    fn = float(q[~predicted].sum())
    tn = float((1.0 - q[~predicted]).sum())
    n = int(p.size)
    return {
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": _ratio(tp + tn, n),
        # the expected share of truly urgent posts (after the prior adjustment, when
        # one was asked for), and the share predicted urgent
        "expected_positive_rate": _ratio(float(q.sum()), n),
        "predicted_positive_rate": _ratio(float(predicted.sum()), n),
        "rows": float(n),
    }


def _drift(
    kind: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numerical: list[str],
    categorical: list[str],
    text: list[str],
    report_path: Path,
    max_rows: int,
    seed: int,
    drift_share: float,
) -> DriftResult:
    declared = numerical + categorical + text
    _check_inputs(reference, current, numerical, categorical, text, max_rows, drift_share)
    descriptor_names = [f"{c}: {d}" for c in text for d in TEXT_DESCRIPTORS]
    clash = sorted(set(descriptor_names) & set(declared))
    if clash:
        raise ValueError(f"column {clash[0]!r} has the name of a text descriptor; rename it")

    rng = np.random.default_rng(seed)
    ref = _sample(reference[declared], max_rows, rng)
    cur = _sample(current[declared], max_rows, rng)

    os.environ.setdefault("DO_NOT_TRACK", "1")  # before evidently is imported
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=numerical, categorical_columns=categorical, text_columns=text
    )
    datasets = [
        Dataset.from_pandas(
            frame, data_definition=definition, descriptors=_text_descriptors(text) or None
        )
        for frame in (ref, cur)
    ]
    # Raw text is left out of the comparison (see the module docstring): its descriptors stand in.
    compared = numerical + categorical + descriptor_names
    report = Report(
        [DataDriftPreset(columns=compared, drift_share=drift_share)], include_tests=True
    )
    snapshot = report.run(datasets[1], datasets[0])  # current first, then reference
    scores, methods, drifted_columns, share, verdict = _read_snapshot(
        json.loads(snapshot.json()), compared
    )

    report_path = Path(report_path)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=report_path.parent, prefix=f".{report_path.name}.", suffix=".tmp"
    )
    os.close(fd)
    try:
        snapshot.save_html(tmp)
        os.replace(tmp, report_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

    return DriftResult(
        kind=kind,
        drifted=verdict,
        drift_share=share,
        threshold=float(drift_share),
        columns=scores,
        methods=methods,
        drifted_columns=drifted_columns,
        rows_reference=len(ref),
        rows_current=len(cur),
        rows_reference_total=len(reference),
        rows_current_total=len(current),
        sample_seed=seed,
        report_path=report_path,
    )


def _read_snapshot(
    snap: dict[str, Any], compared: list[str]
) -> tuple[dict[str, float], dict[str, str], list[str], float, bool]:
    """Scores, methods, drifted columns, drifted share and verdict from `Snapshot.json()`.

    Evidently 0.7.23 gives {"metrics": [...], "tests": [...]}. A ValueDrift metric has
    config {"column", "method", "threshold"} and a float value; DriftedColumnsCount
    has value {"count", "share"}. With include_tests, each ValueDrift has a test whose
    status is "FAIL" when that column drifted, and DriftedColumnsCount a "lt" test on
    the share that fails when share >= drift_share (the dataset-level verdict).
    """
    scores: dict[str, float] = {}
    methods: dict[str, str] = {}
    share: float | None = None
    for m in snap.get("metrics", []):
        config = m.get("config") or {}
        if config.get("type") == VALUE_DRIFT:
            scores[config["column"]] = float(m["value"])
            methods[config["column"]] = str(config.get("method"))
        elif config.get("type") == DRIFTED_COLUMNS:
            share = float(m["value"]["share"])
    drifted: set[str] = set()
    verdict: bool | None = None
    for t in snap.get("tests", []):
        params = (t.get("metric_config") or {}).get("params") or {}
        if params.get("type") == VALUE_DRIFT and t.get("status") == "FAIL":
            drifted.add(params["column"])
        elif params.get("type") == DRIFTED_COLUMNS:
            verdict = t.get("status") == "FAIL"
    missing = [c for c in compared if c not in scores]
    if share is None or verdict is None or missing:
        raise RuntimeError(
            "Evidently's report lacks the drift share, its test, or the scores of "
            f"{missing}: its output format changed (this module reads evidently 0.7.23's)"
        )
    return scores, methods, [c for c in compared if c in drifted], share, verdict


def _check_inputs(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numerical: list[str],
    categorical: list[str],
    text: list[str],
    max_rows: int,
    drift_share: float,
) -> None:
    declared = numerical + categorical + text
    if not declared:
        raise ValueError("no columns declared: nothing to compare")
    twice = sorted({c for c in declared if declared.count(c) > 1})
    if twice:
        raise ValueError(f"column {twice[0]!r} is declared more than once (one kind per column)")
    for side, frame in (("reference", reference), ("current", current)):
        if len(frame) == 0:
            raise ValueError(f"no rows in the {side} batch: nothing to compare")
    for side, frame in (("reference", reference), ("current", current)):
        for kind, names in (("numerical", numerical), ("categorical", categorical), ("text", text)):
            for name in names:
                if name not in frame.columns:
                    raise ValueError(
                        f"{kind} column {name!r} is missing from the {side} frame "
                        f"(it has {sorted(map(str, frame.columns))})"
                    )
    if max_rows < 1:
        raise ValueError(f"max_rows must be at least 1, not {max_rows}")
    if not 0.0 < drift_share <= 1.0:
        raise ValueError(f"drift_share must be in (0, 1], not {drift_share}")


def _sample(frame: pd.DataFrame, max_rows: int, rng: np.random.Generator) -> pd.DataFrame:
    """At most `max_rows` rows, drawn without replacement, kept in their original order."""
    if len(frame) <= max_rows:
        return frame.reset_index(drop=True)
    rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows].reset_index(drop=True)


def _text_descriptors(text: list[str]) -> list[Any]:
    """Evidently descriptors for each text column, in the order of TEXT_DESCRIPTORS."""
    if not text:
        return []
    from evidently.descriptors import Contains, RegExp, TextLength, WordCount

    out: list[Any] = []
    for c in text:
        length, words, question, exclaim, deadline, help_ = (f"{c}: {d}" for d in TEXT_DESCRIPTORS)
        out += [
            TextLength(c, alias=length),
            WordCount(c, alias=words),
            Contains(c, items=["?"], alias=question),
            Contains(c, items=["!"], alias=exclaim),
            RegExp(c, reg_exp=DEADLINE_WORDS, alias=deadline),
            RegExp(c, reg_exp=HELP_WORDS, alias=help_),
        ]
    return out


def _scores(values: np.ndarray | Sequence[float], side: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"the {side} {PREDICTION_COLUMN} scores hold NaN or infinite values")
    return arr


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else 0.0


def _json_float(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None
