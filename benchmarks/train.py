"""Training, scoring and drift-check cost of the urgency model, beside MLflow's evaluator.

Prints, in one run:
* training: the pipeline fit on N labeled posts (default 100,000), posts/s;
* evaluation of the same held-out metrics: ours (`gates.evaluate`) beside
  `mlflow.models.evaluate(model_type="classifier")` on the same model and rows;
* scoring: the logged pyfunc over M posts (default 1,000,000) in Arrow-sized batches
  of 20,000 (as `gold.post_predictions` does), posts/s and peak memory;
* the drift check at M rows: ours (a fixed-seed sample of 5,000 per side) beside
  Evidently given all rows of both sides (capped by --evidently-rows, default 100,000,
  since it holds every row in memory).

The posts come from the demo generator (its templates and vocabulary), so the figures
are about cost, not quality: quality is what the gates measure on real labels.

    python benchmarks/train.py [--labeled 100000] [--scored 1000000]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
from spanda_assets.lib.model import gates
from spanda_assets.lib.model.features import build_pipeline, model_inputs, p_urgent


def posts(n: int, seed: int) -> pd.DataFrame:
    """n generated posts with their urgency label and a course."""
    from spanda_assets.lib.seed.draws import Draws
    from spanda_assets.lib.seed.generator import Roster
    from spanda_assets.lib.seed.posts import post_body

    g = Draws(seed)
    roster = Roster(
        names=[("Maria", "Lopez"), ("Ahmed", "Khan"), ("Li", "Wei"), ("John", "Smith")],
        emails=["student@example.edu"],
        ids=list(range(1, 201)),
        course_ids=list(range(1, 13)),
        instructors=["Dr. Ada Byron"],
    )
    bodies, labels = [], []
    for i in range(n):
        body, urgent, _ = post_body(g, roster, 1 + i % 200)
        bodies.append(body)
        labels.append("urgent" if urgent else "not_urgent")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"body": bodies, "label": labels, "course_id": rng.integers(1, 13, size=n)})


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(what: str, ours: str, peer: str) -> None:
    print(f"  {what:<34} {ours:>28}   {peer:>32}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--labeled", type=int, default=100_000)
    ap.add_argument("--scored", type=int, default=1_000_000)
    ap.add_argument("--evidently-rows", type=int, default=100_000)
    args = ap.parse_args()

    t = time.perf_counter()
    labeled = posts(args.labeled, seed=1)
    split = np.where(np.arange(len(labeled)) % 5 == 0, "test", "train")
    train, test = labeled[split == "train"], labeled[split == "test"]
    print(f"generated {len(labeled):,} labeled posts in {time.perf_counter() - t:.1f} s")

    print(f"\n{'':<36}{'spanda':>28}   {'peer':>32}")
    t = time.perf_counter()
    pipeline = build_pipeline().fit(model_inputs(train), train["label"])
    fit_s = time.perf_counter() - t
    line(
        f"train on {len(train):,} posts",
        f"{fit_s:.1f} s ({len(train) / fit_s:,.0f} posts/s)",
        "-",
    )
    from spanda_assets.lib.model.train import THRESHOLD_SAMPLE, choose_threshold

    t = time.perf_counter()
    with_students = train.assign(subject_id=[f"s{i % 5_000}" for i in range(len(train))])
    threshold = choose_threshold(with_students)
    line(
        f"decision threshold (OOF, <= {THRESHOLD_SAMPLE:,} posts)",
        f"{time.perf_counter() - t:.1f} s (t = {threshold})",
        "-",
    )

    t = time.perf_counter()
    p = p_urgent(pipeline, test)
    ours = gates.evaluate(p, test.reset_index(drop=True), train, threshold=threshold)
    ours_s = time.perf_counter() - t
    peer_s, peer_f1 = _mlflow_evaluate(pipeline, test, threshold)
    line(
        f"held-out metrics, {len(test):,} posts",
        f"{ours_s:.2f} s (F1 {ours.metrics['f1']:.3f})",
        f"mlflow.models.evaluate {peer_s:.2f} s (F1 {peer_f1:.3f})",
    )

    model = _logged_pyfunc(pipeline)
    scored = 0
    t = time.perf_counter()
    batch = 20_000
    chunk = posts(min(args.scored, 200_000), seed=2)  # generated once, scored repeatedly
    all_p = []
    while scored < args.scored:
        n = min(batch, args.scored - scored)
        start = scored % len(chunk)
        frame = chunk.iloc[start : start + n]
        all_p.append(np.asarray(model.predict(frame[["body"]])["p_urgent"]))
        scored += len(frame)
    score_s = time.perf_counter() - t
    line(
        f"score {scored:,} posts (pyfunc)",
        f"{score_s:.1f} s ({scored / score_s:,.0f} posts/s)",
        f"peak RSS {peak_mb():,.0f} MB",
    )

    ref = _drift_frame(train.sample(min(len(train), args.scored), replace=True, random_state=3))
    cur = _drift_frame(chunk.sample(args.scored, replace=True, random_state=4))
    from spanda_assets.lib.model.drift import data_drift
    from spanda_assets.lib.model.frame import DRIFT_CATEGORICAL, DRIFT_NUMERIC, DRIFT_TEXT

    with tempfile.TemporaryDirectory() as tmp:
        # warm: Evidently's import (~3 s) is paid once per process, not per check
        data_drift(
            ref.iloc[:200],
            cur.iloc[:200],
            numerical=DRIFT_NUMERIC,
            categorical=DRIFT_CATEGORICAL,
            text=DRIFT_TEXT,
            report_path=Path(tmp) / "warm.html",
        )
        t = time.perf_counter()
        data_drift(
            ref,
            cur,
            numerical=DRIFT_NUMERIC,
            categorical=DRIFT_CATEGORICAL,
            text=DRIFT_TEXT,
            report_path=Path(tmp) / "ours.html",
        )
        ours_drift = time.perf_counter() - t
        n = min(args.evidently_rows, len(cur))
        t = time.perf_counter()
        data_drift(
            ref.iloc[:n],
            cur.iloc[:n],
            numerical=DRIFT_NUMERIC,
            categorical=DRIFT_CATEGORICAL,
            text=DRIFT_TEXT,
            report_path=Path(tmp) / "all.html",
            max_rows=n,
        )
        all_drift = time.perf_counter() - t
    line(
        f"data drift, {len(cur):,} rows a side",
        f"{ours_drift:.1f} s (sample 5,000)",
        f"Evidently on {n:,} rows: {all_drift:.1f} s",
    )
    print(f"\npeak RSS of the whole run: {peak_mb():,.0f} MB")


def _drift_frame(df: pd.DataFrame) -> pd.DataFrame:
    bodies = df["body"].tolist()
    return pd.DataFrame(
        {
            "body": bodies,
            "body_length": [len(b) for b in bodies],
            "word_count": [len(b.split()) for b in bodies],
            "course_id": df["course_id"].astype(str).to_numpy(),
            "student_mean_score": np.random.default_rng(5).uniform(0.4, 1.0, len(df)),
        }
    )


def _mlflow_evaluate(pipeline: object, test: pd.DataFrame, threshold: float) -> tuple[float, float]:
    """mlflow.models.evaluate on the same rows, with a scikit-learn flavor of the model."""
    import mlflow
    from sklearn.pipeline import FunctionTransformer, make_pipeline

    with tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
        mlflow.set_experiment(experiment_id=mlflow.create_experiment("bench", f"file://{tmp}/a"))
        data = test.assign(target=(test["label"] == "urgent").astype(int))[["body", "target"]]
        wrapped = make_pipeline(FunctionTransformer(model_inputs), _binary(pipeline, threshold))
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(wrapped, name="m", serialization_format="cloudpickle")
            t = time.perf_counter()
            result = mlflow.models.evaluate(
                info.model_uri, data, targets="target", model_type="classifier"
            )
            took = time.perf_counter() - t
        return took, float(result.metrics["f1_score"])


def _binary(pipeline: object, threshold: float) -> object:
    """The fitted pipeline answering 0/1, as mlflow's classifier evaluator expects."""
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Binary(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
        def __init__(self, pipeline: object = None) -> None:
            self.pipeline = pipeline

        def fit(self, x: object, y: object = None) -> object:
            self.classes_ = np.array([0, 1])
            return self

        def predict(self, x: pd.DataFrame) -> np.ndarray:
            return (self.predict_proba(x)[:, 1] >= threshold).astype(int)

        def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
            classes = list(self.pipeline.classes_)  # type: ignore[attr-defined]
            proba = self.pipeline.predict_proba(x)  # type: ignore[attr-defined]
            urgent = proba[:, classes.index("urgent")]
            return np.column_stack([1 - urgent, urgent])

    return Binary(pipeline).fit(None)


def _logged_pyfunc(pipeline: object) -> object:
    """The pipeline saved and loaded back exactly as the registry serves it."""
    import mlflow
    import skops.io

    from spanda_assets.lib.model import train as train_mod

    tmp = Path(tempfile.mkdtemp())
    skops.io.dump(pipeline, tmp / "pipeline.skops")
    path = tmp / "model"
    mlflow.pyfunc.save_model(
        str(path),
        python_model=str(train_mod.MODEL_DIR / "pyfunc_model.py"),
        artifacts={"pipeline": str(tmp / "pipeline.skops")},
        code_paths=[str(train_mod.MODEL_DIR / "features.py")],
        pip_requirements=[],
    )
    return mlflow.pyfunc.load_model(str(path))


if __name__ == "__main__":
    main()
