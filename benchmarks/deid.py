"""De-identification quality and speed: Spanda's scrubber beside scrubadub, in one run.

    python benchmarks/deid.py            # 20,000 posts (seeded once, cached)
    python benchmarks/deid.py --posts 100000

Ground truth comes from the seed generator (the PII spans it inserted in each
post). A ground-truth span counts as found when a detection of the same
category overlaps it (recall); a detection counts as correct when it overlaps a
ground-truth span of its category (precision). scrubadub runs with its default
detectors; its filth types are mapped onto Spanda's categories where one
exists, and anything else it flags counts against its precision.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import scrubadub

from spanda_assets.lib.privacy.scrub import Roster, find_spans, replace_spans
from spanda_assets.lib.seed import SeedSizes, read_ground_truth, seed

CACHE = Path(os.environ.get("SPANDA_BENCH_DIR", tempfile.gettempdir())) / "spanda-bench"
TARGET_RECALL = {
    "EMAIL": 0.99,
    "PHONE": 0.99,
    "SSN": 0.99,
    "URL": 0.99,
    "IP": 0.99,
    "ID": 0.99,
    "NAME": 0.95,
}
SCRUBADUB_TYPES = {
    "email": "EMAIL",
    "phone": "PHONE",
    "url": "URL",
    "social_security_number": "SSN",
    "credit_card": "ID",
    "name": "NAME",
    "address": "ADDRESS",
    "postalcode": "ZIP",
    "date_of_birth": "DATE",
}


def ensure_source(posts: int) -> tuple[Path, Path]:
    db = CACHE / f"deid-{posts}.db"
    gt = CACHE / f"deid-gt-{posts}"
    if not (db.exists() and any(gt.glob("posts-*.parquet"))):
        CACHE.mkdir(parents=True, exist_ok=True)
        if db.exists():
            db.unlink()
        print(f"seeding {posts:,} posts (once; cached) ...", flush=True)
        seed(
            f"sqlite:///{db}",
            SeedSizes(students=max(200, posts // 10), courses=200, posts=posts, results=1),
            ground_truth=gt,
        )
    return db, gt


def load(
    db: Path, gt: Path
) -> tuple[list[tuple[int, str]], dict[int, list[dict[str, object]]], list[str]]:
    con = sqlite3.connect(db)
    posts = con.execute('SELECT PostID, Body FROM "ForumPosts" ORDER BY PostID').fetchall()
    names = [f"{g} {f}" for g, f in con.execute('SELECT GivenName, FamilyName FROM "Students"')]
    names += [n for (n,) in con.execute('SELECT InstructorName FROM "Courses"')]
    con.close()
    truth = {r["post_id"]: r["pii_spans"] for r in read_ground_truth(gt).to_pylist()}
    return posts, truth, names


def score(
    detections: list[list[tuple[str, int, int]]],
    posts: list[tuple[int, str]],
    truth: dict[int, list[dict[str, object]]],
) -> tuple[dict[str, float], dict[str, float], float]:
    found, total, correct, flagged = Counter(), Counter(), Counter(), Counter()
    for (pid, _), spans in zip(posts, detections, strict=True):
        gold = truth[pid]
        for g in gold:
            cat, gs, ge = g["category"], int(g["start"]), int(g["end"])  # type: ignore[call-overload]
            total[cat] += 1
            if any(c == cat and s < ge and gs < e for c, s, e in spans):
                found[cat] += 1
        for c, s, e in spans:
            flagged[c] += 1
            if any(c == g["category"] and s < int(g["end"]) and int(g["start"]) < e for g in gold):  # type: ignore[call-overload]
                correct[c] += 1
    recall = {c: found[c] / total[c] for c in total}
    precision = {c: correct[c] / flagged[c] for c in flagged}
    overall = sum(correct.values()) / max(1, sum(flagged.values()))
    return recall, precision, overall


def run_spanda(
    posts: list[tuple[int, str]], names: list[str]
) -> tuple[list[list[tuple[str, int, int]]], float]:
    roster = Roster.from_names(names)
    start = time.perf_counter()
    out = []
    for _, body in posts:
        spans = find_spans(body, roster)
        replace_spans(body, spans)  # the full scrub: detection and replacement
        out.append([(s.category, s.start, s.end) for s in spans])
    return out, len(posts) / (time.perf_counter() - start)


def run_scrubadub(
    posts: list[tuple[int, str]],
) -> tuple[list[list[tuple[str, int, int]]], float, float]:
    """Detections (for scoring), and throughput two ways.

    `scrubadub.clean(text)` is the documented one-liner; it builds its detectors
    on every call. A reused `Scrubber().clean` is what a careful user writes.
    Both are printed so the comparison is not flattering by construction.
    """
    warnings.filterwarnings("ignore")

    scrubber = scrubadub.Scrubber()
    out = []
    for _, body in posts:
        filth = list(scrubber.iter_filth(body))
        out.append([(SCRUBADUB_TYPES.get(f.type, f.type.upper()), f.beg, f.end) for f in filth])
    sample = [body for _, body in posts[:5000]]
    start = time.perf_counter()
    for body in sample:
        scrubadub.clean(body)
    one_liner = len(sample) / (time.perf_counter() - start)
    start = time.perf_counter()
    for body in sample:
        scrubber.clean(body)
    reused = len(sample) / (time.perf_counter() - start)
    return out, one_liner, reused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=20_000)
    args = parser.parse_args()
    db, gt = ensure_source(args.posts)
    posts, truth, names = load(db, gt)
    spans = sum(len(v) for v in truth.values())
    print(f"\n{len(posts):,} forum posts, {spans:,} PII spans in the ground truth\n")
    spanda, spanda_rate = run_spanda(posts, names)
    scrub_, one_liner, reused = run_scrubadub(posts)
    s_recall, s_precision, s_overall = score(spanda, posts, truth)
    b_recall, b_precision, b_overall = score(scrub_, posts, truth)
    cats = sorted(set(s_recall) | set(b_recall))
    header = ("category", "Spanda recall", "precision", "scrubadub recall", "precision", "target")
    print(
        "".join(
            f"{h:>{w}}" if i else f"{h:<{w}}"
            for i, (h, w) in enumerate(zip(header, (10, 15, 11, 19, 11, 9), strict=True))
        )
    )
    for c in cats:
        target = f">={TARGET_RECALL[c]:.2f}" if c in TARGET_RECALL else ""
        print(
            f"{c:<10}{s_recall.get(c, 0):>15.4f}{s_precision.get(c, float('nan')):>11.4f}"
            f"{b_recall.get(c, 0):>19.4f}{b_precision.get(c, float('nan')):>11.4f}{target:>9}"
        )
    print(f"{'overall precision':<25}{s_overall:>11.4f}{'':>19}{b_overall:>11.4f}{'>=0.95':>9}")
    print("\nthroughput (detect + replace, one core):")
    print(f"  Spanda scrub                    {spanda_rate:>9,.0f} posts/s")
    print(
        f"  scrubadub.clean(text)           {one_liner:>9,.0f} posts/s"
        f"  -> Spanda {spanda_rate / one_liner:.1f}x (target >= 10x of this figure)"
    )
    print(
        f"  scrubadub Scrubber() reused     {reused:>9,.0f} posts/s"
        f"  -> Spanda {spanda_rate / reused:.1f}x"
    )


if __name__ == "__main__":
    main()
