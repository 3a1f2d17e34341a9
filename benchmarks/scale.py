"""De-identification and scoring, in process beside a local Ray cluster, in one run.

For each size (default 1,000,000 posts) it prints rows/s of the two heavy per-row
stages as the stages run them (lib/scale.py): the same pure batch function, mapped
over 100,000-row batches (silver's batch size) for de-identification and
20,000-row batches (gold.post_predictions') for scoring, once in this process and
once on a Ray head started here on 127.0.0.1 with --workers CPUs. It checks that
both give the same rows, and stops the cluster afterwards (its process group).

    python benchmarks/scale.py                          # 1M posts, 2 Ray workers
    python benchmarks/scale.py --rows 1000000,5000000   # both sizes side by side

The posts come from the demo generator (its templates, names and identifiers),
generated once per run and repeated to the size, with distinct keys: the cost is the
scrubber's and the model's per post, not the generator's. Reading bronze and the
Iceberg commits are not in these figures: the driver does them either way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # spanda_assets_tests

from spanda_assets.lib import scale
from spanda_assets.lib.model.features import build_pipeline, model_inputs, p_urgent
from spanda_assets.lib.model.predict import score_consenting
from spanda_assets.lib.privacy.policy import policy_for
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.privacy.scrub import Roster
from spanda_assets.lib.privacy.silver import SilverInputs, deidentify
from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import Roster as Who
from spanda_assets.lib.seed.posts import post_body
from spanda_assets_tests.ray_cluster import ray_head

DEID_BATCH = 100_000  # stage_silver's batch_rows
SCORE_BATCH = 20_000  # predict.READ_ROWS
POOL = 50_000  # distinct generated posts, repeated to the size
STUDENTS = 5_000
NAMES = [("Maria", "Lopez"), ("Ahmed", "Khan"), ("Li", "Wei"), ("John", "Smith")]


class PipelineModel:
    """The urgency pipeline behind the pyfunc model's `predict` (lib/model/pyfunc_model)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"p_urgent": p_urgent(self.pipeline, frame)}, index=frame.index)


def generated(n: int, seed: int) -> tuple[list[str], list[str]]:
    """n demo posts (bodies with the generator's names, e-mails, phones...) and labels."""
    g = Draws(seed)
    who = Who(
        names=NAMES,
        emails=["student@example.edu"],
        ids=list(range(1, STUDENTS + 1)),
        course_ids=list(range(1, 41)),
        instructors=["Dr. Ada Byron"],
    )
    bodies, labels = [], []
    for i in range(n):
        body, urgent, _ = post_body(g, who, 1 + i % STUDENTS)
        bodies.append(body)
        labels.append("urgent" if urgent else "not_urgent")
    return bodies, labels


def bronze_batches(pool: list[str], rows: int, size: int) -> Iterator[pa.Table]:
    """bronze.forum_posts-shaped batches of `size` rows, `rows` in all, distinct keys."""
    when = dt.datetime(2026, 3, 1, 12, 0)
    for start in range(0, rows, size):
        n = min(size, rows - start)
        ids = np.arange(start + 1, start + n + 1, dtype=np.int64)
        yield pa.table(
            {
                "post_id": pa.array(ids),
                "student_id": pa.array(1 + ids % STUDENTS),
                "course_id": pa.array(1 + ids % 40),
                "body": pa.array([pool[i % len(pool)] for i in ids], pa.string()),
                "created_at": pa.array([when] * n, pa.timestamp("us")),
            }
        )


def gold_batches(pool: list[str], rows: int, size: int) -> Iterator[pa.RecordBatch]:
    """gold.validated_posts-shaped batches (post_id, subject_id, course_id, body)."""
    for batch in bronze_batches(pool, rows, size):
        yield pa.RecordBatch.from_pydict(
            {
                "post_id": batch["post_id"].cast(pa.string()).combine_chunks(),
                "subject_id": pa.array([f"ps_{s}" for s in batch["student_id"].to_pylist()]),
                "course_id": batch["course_id"].combine_chunks(),
                "body": batch["body"].combine_chunks(),
            }
        )


def digest(tables: list[pa.Table]) -> str:
    h = hashlib.sha256()
    for t in tables:
        for column in t.columns:
            h.update(repr(column.to_pylist()).encode())
    return h.hexdigest()[:16]


def timed(
    runner: scale.Runner, fn: Callable[..., Any], batches: Iterator[Any], *shared: Any
) -> tuple[float, list[Any]]:
    t = time.perf_counter()
    out = list(runner.map(fn, batches, *shared))
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", default="1000000", help="posts per run, comma-separated sizes")
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray head")
    args = ap.parse_args()
    sizes = [int(s) for s in args.rows.replace("_", "").split(",")]

    t = time.perf_counter()
    pool, labels = generated(POOL, seed=1)
    pipeline = build_pipeline().fit(
        model_inputs(pd.DataFrame({"body": pool[:20_000]})), labels[:20_000]
    )
    model = PipelineModel(pipeline)
    inputs = SilverInputs(
        policy=policy_for("forum_posts"),
        pseudonymizer=Pseudonymizer(os.urandom(32).hex().encode()),
        subjects={s: f"ps_{s}" for s in range(1, STUDENTS + 1)},
        active=set(range(1, STUDENTS + 1)),
        consent_events=pa.table({"student_id": pa.array([], pa.int64())}),
        roster=Roster.from_names(f"{a} {b}" for a, b in NAMES),
        on=dt.date(2026, 11, 30),
        upsert=False,
    )
    allowed = pa.array([f"ps_{s}" for s in range(1, STUDENTS + 1)], pa.string())
    now = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)
    print(f"generated {POOL:,} posts and trained the model in {time.perf_counter() - t:.0f} s")

    def deid(runner: scale.Runner, rows: int) -> tuple[float, str]:
        s, out = timed(
            runner, deidentify, bronze_batches(pool, rows, DEID_BATCH), inputs, frozenset()
        )
        assert sum(d.rows.num_rows for d in out) == rows
        return s, digest([d.rows for d in out])

    def score(runner: scale.Runner, rows: int) -> tuple[float, str]:
        s, out = timed(
            runner,
            score_consenting,
            gold_batches(pool, rows, SCORE_BATCH),
            model,
            allowed,
            "1",
            1,
            now,
            0.5,
        )
        assert sum(x.rows.num_rows for x in out) == rows
        return s, digest([x.rows for x in out])

    results: dict[tuple[str, int, str], tuple[float, str]] = {}
    local = scale.Runner("bench")
    for rows in sizes:
        results[("deid", rows, "in process")] = deid(local, rows)
        results[("score", rows, "in process")] = score(local, rows)
    with ray_head(cpus=args.workers) as cluster:
        os.environ["SPANDA_EXECUTOR"] = "ray"
        os.environ["RAY_ADDRESS"] = cluster.address
        try:
            on_ray = scale.runner("bench")
            # warm: each worker process imports spanda_assets once (~5 s), not per run
            list(
                on_ray.map(
                    deidentify,
                    bronze_batches(pool, 1_000 * args.workers, 1_000),
                    inputs,
                    frozenset(),
                )
            )
            for rows in sizes:
                on_ray = scale.runner("bench")
                results[("deid", rows, "ray")] = deid(on_ray, rows)
                on_ray = scale.runner("bench")
                results[("score", rows, "ray")] = score(on_ray, rows)
        finally:
            scale.disconnect()

    print(
        f"\n{os.cpu_count()} cores here; Ray: one local head, {args.workers} worker CPUs; "
        f"batches of {DEID_BATCH:,} (de-identification) and {SCORE_BATCH:,} (scoring)\n"
    )
    print(f"  {'stage':<22}{'posts':>11}{'in process':>22}{'Ray':>22}{'speed-up':>10}  same rows")
    for stage, name in (("deid", "de-identification"), ("score", "scoring")):
        for rows in sizes:
            (a, da), (b, db) = results[(stage, rows, "in process")], results[(stage, rows, "ray")]
            print(
                f"  {name:<22}{rows:>11,}{rows / a:>13,.0f} rows/s{rows / b:>15,.0f} rows/s"
                f"{a / b:>9.2f}x  {'yes' if da == db else 'NO'}"
            )


if __name__ == "__main__":
    main()
