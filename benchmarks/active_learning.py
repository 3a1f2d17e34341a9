"""Active learning, simulated: labels needed to reach a target F1, uncertainty vs random sampling.

    python benchmarks/active_learning.py [--target-f1 0.95] [--runs 5] [--seed 0]

The labeled pool is the demo generator's forum posts (spanda_assets/lib/seed/pool.py):
no public, openly licensed set of forum posts labeled for urgency was found (the
Stanford MOOCPosts and the NUS MOOC corpora are released on request only), so the
pool is our own and the figures say how the loop behaves, not how hard real posts
are. The generator writes posts from ten urgent and ten routine templates with
personal-data sentences and small talk mixed in; the oracle answers with the demo's
labels, 5% of which disagree with the text as people's do, and the F1 of `urgent` is
measured on 1,000 held-out posts against their noise-free labels.

Each run starts from the same 10 random labels (both classes), then adds 10 labels a
round: the review order of spanda_assets/lib/labeling/active.py (lowest margin of the
current TF-IDF + logistic-regression model first, with its 10% seeded random share),
against 10 posts drawn at random. It prints, per run and as medians, how many labels
each needed until F1 first reached the target, and the saving.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pyarrow as pa
from sklearn.metrics import f1_score

from spanda_assets.lib.labeling.active import review_order
from spanda_assets.lib.labeling.quality import text_classifier
from spanda_assets.lib.seed.pool import urgency_pool

POOL, TEST, START, STEP, BUDGET = 3000, 1000, 10, 10, 1000


def _f1(
    train_texts: list[str],
    train_y: np.ndarray,
    test_texts: list[str],
    test_y: np.ndarray,
    pool_texts: list[str],
) -> tuple[float, np.ndarray]:
    model = text_classifier(0).fit(train_texts, train_y)
    score = float(f1_score(test_y, model.predict(test_texts)))
    return score, model.predict_proba(pool_texts)[:, 1]


def run(strategy: str, seed: int, target: float) -> int | None:
    """Labels used when F1 first reaches `target` (None: not within BUDGET)."""
    noisy = urgency_pool(POOL + TEST, seed=seed, label_noise=0.05)
    clean = urgency_pool(POOL + TEST, seed=seed)
    texts = noisy["body"].to_pylist()
    oracle = np.asarray([label == "urgent" for label in noisy["label"].to_pylist()], dtype=int)
    truth = np.asarray([label == "urgent" for label in clean["label"].to_pylist()], dtype=int)
    pool_texts, test_texts, test_y = texts[:POOL], texts[POOL:], truth[POOL:]
    rng = np.random.default_rng(seed)
    labeled = list(rng.choice(POOL, START, replace=False))
    while len(set(oracle[labeled])) < 2:  # the model needs both classes to start
        labeled.append(int(rng.integers(POOL)))
    keys = [f"{i}" for i in range(POOL)]
    while len(labeled) <= BUDGET:
        y = oracle[labeled]
        score, p_urgent = _f1([pool_texts[i] for i in labeled], y, test_texts, test_y, pool_texts)
        if score >= target:
            return len(labeled)
        unlabeled = np.setdiff1d(np.arange(POOL), labeled)
        if strategy == "random":
            labeled += [int(i) for i in rng.choice(unlabeled, STEP, replace=False)]
            continue
        candidates = pa.table(
            {
                "post_key": [keys[i] for i in unlabeled],
                "urgent_probability": p_urgent[unlabeled],
            }
        )
        order = review_order(
            candidates.to_batches(max_chunksize=1000),
            batch_size=STEP,
            seed=seed + len(labeled),
        )
        labeled += [int(k) for k in order["post_key"].to_pylist()]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target-f1", type=float, default=0.95)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"pool: {POOL} generated forum posts (demo generator, 5% label noise), "
        f"test: {TEST} held-out posts, target F1(urgent) >= {args.target_f1}, "
        f"start {START} labels, +{STEP} a round"
    )
    print(f"{'run (seed)':<12}{'uncertainty':>14}{'random':>10}{'saving':>10}")
    found: dict[str, list[int]] = {"uncertainty": [], "random": []}
    for seed in range(args.seed, args.seed + args.runs):
        a = run("uncertainty", seed, args.target_f1)
        b = run("random", seed, args.target_f1)
        saving = f"{1 - a / b:.0%}" if a and b else "-"
        print(f"{seed:<12}{a or f'>{BUDGET}':>14}{b or f'>{BUDGET}':>10}{saving:>10}")
        found["uncertainty"].append(a or BUDGET + STEP)
        found["random"].append(b or BUDGET + STEP)
    med_a = statistics.median(found["uncertainty"])
    med_b = statistics.median(found["random"])
    saving = 1 - med_a / med_b
    print(f"{'median':<12}{med_a:>14g}{med_b:>10g}{saving:>10.0%}")
    verdict = "met" if saving >= 0.30 else "NOT met"
    print(f"target >= 30% fewer labels: {verdict}  ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
