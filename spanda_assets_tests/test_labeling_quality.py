"""Resolving annotations, agreement figures, confident learning and the review order."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from spanda_assets.defs.labeling.checks import label_audits
from spanda_assets.lib.labeling.active import review_order
from spanda_assets.lib.labeling.agreement import (
    agreement,
    fleiss_kappa,
    krippendorff_alpha_nominal,
)
from spanda_assets.lib.labeling.labeled import LabeledResult
from spanda_assets.lib.labeling.quality import likely_mislabeled, minimum_per_class
from spanda_assets.lib.labeling.resolve import resolve
from spanda_assets.lib.labeling.store import ANNOTATION_SCHEMA
from spanda_assets.lib.seed.pool import urgency_pool

T0 = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)


def _annotations(rows: list[tuple[Any, ...]]) -> pa.Table:
    """(post_key, annotator, label, cancelled, ground_truth[, prelabel]) -> ANNOTATION_SCHEMA."""
    out = []
    for i, row in enumerate(rows):
        key, who, label, cancelled, gt, *pre = row
        out.append(
            {
                "post_key": key,
                "task_id": 1,
                "annotation_id": i + 1,
                "completed_by": who,
                "label": label,
                "was_cancelled": cancelled,
                "ground_truth": gt,
                "created_at": T0,
                "updated_at": T0,
                "lead_time": None,
                "prelabel": pre[0] if pre else None,
                "prelabel_model_version": "lf-x" if pre else None,
            }
        )
    return pa.Table.from_pylist(out, schema=ANNOTATION_SCHEMA)


def test_ground_truth_wins_majority_decides_ties_stay_open() -> None:
    table = _annotations(
        [
            ("a", "1", "urgent", False, False, "urgent"),
            ("a", "2", "not_urgent", False, False, "urgent"),
            ("a", "3", "not_urgent", False, True, "urgent"),  # ground truth: wins over majority
            ("b", "1", "urgent", False, False),
            ("b", "2", "urgent", False, False),
            ("b", "3", "not_urgent", False, False),
            ("c", "1", "urgent", False, False, "not_urgent"),
            ("c", "2", "not_urgent", False, False, "not_urgent"),  # 1-1: unresolved
            ("d", "1", "", True, False),  # cancelled
            ("d", "2", "maybe", False, False),  # not a label of the project
            ("gone", "1", "urgent", False, False),
        ]
    )
    result = resolve(table, live_keys={"a", "b", "c", "d"})
    rows = {r["post_key"]: r for r in result.labels.to_pylist()}
    assert rows["a"]["label"] == "not_urgent" and rows["a"]["method"] == "ground_truth"
    assert rows["b"] == {
        "post_key": "b",
        "label": "urgent",
        "method": "majority",
        "annotations": 3,
        "agreeing": 2,
    }
    assert set(rows) == {"a", "b"}
    assert result.unresolved == ["c"]
    meta = result.metadata()
    assert (meta["skipped_cancelled"], meta["skipped_unknown_label"]) == (1, 1)
    assert meta["skipped_deleted_task"] == 1
    assert meta["by_label"] == {"not_urgent": 1, "urgent": 1}
    assert meta["by_annotator"] == {"1": 3, "2": 3, "3": 2}
    # pre-labels: a (urgent) kept once, changed twice; c (not_urgent) changed once, kept once
    assert (meta["prelabels_accepted"], meta["prelabels_changed"]) == (2, 3)


def test_krippendorff_alpha_matches_krippendorffs_worked_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": 4 observers,
    # 12 units, missing values; nominal alpha = 0.743.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in unit if v is not None] for unit in zip(*observers, strict=True)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"]]) == 1.0
    assert krippendorff_alpha_nominal([["a", "a"], ["a", "a"]]) is None  # no variation
    assert krippendorff_alpha_nominal([["a"], ["b"]]) is None  # nothing pairable


def test_fleiss_kappa_matches_fleiss_1971_example() -> None:
    # The worked example of Fleiss' kappa: 10 subjects, 14 raters, 5 categories; 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert fleiss_kappa(np.array([[2, 0], [1, 2]])) is None  # unequal numbers of raters


def test_agreement_on_the_overlap_sample() -> None:
    labels = ["urgent", "not_urgent"]
    rows = []
    # annotators 1 and 2 share 10 posts and disagree on 2; post z has one label only
    for i in range(10):
        first = labels[i % 2]
        second = first if i < 8 else labels[(i + 1) % 2]
        rows += [(f"p{i}", "1", first, False, False), (f"p{i}", "2", second, False, False)]
    rows.append(("z", "3", "urgent", False, False))
    result = agreement(_annotations(rows))
    assert result["overlap_posts"] == 10
    assert result["cohen_pair"] == ["1", "2"] and result["cohen_posts"] == 10
    # 8 of 10 agree; both annotators use each label 5 times: kappa = (0.8 - 0.5) / 0.5
    assert result["cohen_kappa"] == pytest.approx(0.6)
    assert result["fleiss_raters"] == 2 and result["fleiss_posts"] == 10
    assert result["fleiss_kappa"] == pytest.approx(0.6, abs=0.02)
    assert result["krippendorff_alpha"] == pytest.approx(0.62, abs=0.01)
    assert agreement(_annotations([("a", "1", "urgent", False, False)]))["overlap_posts"] == 0


def test_confident_learning_finds_labels_flipped_on_purpose() -> None:
    """5% of a clean pool's labels flipped: >= 80% of the flags are flips (issue 10)."""
    pool = urgency_pool(2000, seed=5)
    rng = np.random.default_rng(5)
    flipped = set(rng.choice(pool.num_rows, pool.num_rows // 20, replace=False).tolist())
    other = {"urgent": "not_urgent", "not_urgent": "urgent"}
    noisy = [
        other[label] if i in flipped else label for i, label in enumerate(pool["label"].to_pylist())
    ]
    flags = likely_mislabeled(pool.set_column(2, "label", pa.array(noisy)), seed=5)
    keys = pool["post_key"].to_pylist()
    flipped_keys = {keys[i] for i in flipped}
    hits = sum(k in flipped_keys for k in flags["post_key"].to_pylist())
    precision, recall = hits / flags.num_rows, hits / len(flipped_keys)
    assert precision >= 0.8, (precision, recall)
    assert recall >= 0.5, (precision, recall)
    # a flag suggests the other label, and the worst label comes first
    first = flags.slice(0, 1).to_pylist()[0]
    assert first["suggested"] != first["label"]
    quality = flags["label_quality"].to_pylist()
    assert quality[0] <= quality[-1]


def test_minimum_labels_per_class() -> None:
    assert minimum_per_class({"urgent": 40, "not_urgent": 200}, 30) == []
    (short,) = minimum_per_class({"not_urgent": 200}, 30)
    assert (short.label, short.have, short.need) == ("urgent", 0, 30)
    with pytest.raises(ValueError, match="too few labels"):
        likely_mislabeled(
            pa.table({"post_key": ["a", "b"], "body": ["x", "y"], "label": ["urgent"] * 2})
        )


def test_review_order_lowest_margin_first_with_a_seeded_random_share() -> None:
    keys = [f"k{i:03d}" for i in range(200)]
    probability = (np.arange(200) % 100) / 99.0  # closest to 0.5: k049, k050, k149, k150
    posts = pa.table({"post_key": keys, "urgent_probability": probability})
    order = review_order(
        posts.to_batches(max_chunksize=33), batch_size=20, random_share=0.25, seed=3
    )
    assert order.num_rows == 20
    reasons = order["reason"].to_pylist()
    assert reasons.count("random") == 5 and reasons.count("uncertain") == 15
    uncertain = [r for r in order.to_pylist() if r["reason"] == "uncertain"]
    margins = [r["margin"] for r in uncertain]
    assert margins == sorted(margins)
    everyone = np.abs(2 * probability - 1)
    assert max(margins) <= np.sort(everyone)[14] + 1e-12  # exactly the 15 smallest
    assert uncertain[0]["post_key"] in {"k049", "k050", "k149", "k150"}
    # random picks are spread through the batch, and the same seed gives the same batch
    assert reasons[:10].count("random") >= 2
    again = review_order(
        posts.to_batches(max_chunksize=50), batch_size=20, random_share=0.25, seed=3
    )
    assert again["post_key"].to_pylist() == order["post_key"].to_pylist()
    other = review_order(posts.to_batches(), batch_size=20, random_share=0.25, seed=4)
    assert other["post_key"].to_pylist() != order["post_key"].to_pylist()
    # a batch larger than the pool holds every post once
    whole = review_order(posts.to_batches(), batch_size=500)["post_key"].to_pylist()
    assert sorted(whole) == keys


def test_an_annotator_who_saved_twice_has_one_vote() -> None:
    rows = _annotations(
        [("p", "ann1", "urgent", False, False), ("p", "ann2", "not_urgent", False, False)]
    ).to_pylist()
    again = {**rows[0], "annotation_id": 3, "updated_at": T0 + dt.timedelta(minutes=5)}
    result = resolve(pa.Table.from_pylist([*rows, again], schema=ANNOTATION_SCHEMA))
    assert result.unresolved == ["p"]  # one vote each: still a tie, not 2 to 1
    assert result.skipped_superseded == 1
    changed = {**again, "label": "not_urgent"}  # ann1 changed their mind: their latest counts
    flipped = resolve(pa.Table.from_pylist([*rows, changed], schema=ANNOTATION_SCHEMA))
    assert flipped.labels.column("label").to_pylist() == ["not_urgent"]


def _audit_agreement(rows: list[tuple[Any, ...]]) -> Any:
    audits = label_audits(LabeledResult(annotations=_annotations(rows)))
    return audits[2](None)  # type: ignore[arg-type]  # agreement reads no staged rows


def test_the_agreement_audit_judges_only_a_measurable_overlap() -> None:
    agree = [(f"p{i}", who, "urgent", False, False) for i in range(30) for who in ("a", "b")]
    one_class = _audit_agreement(agree)
    assert one_class.passed and "one label only" in one_class.metadata["note"]
    rng = np.random.default_rng(3)
    noisy = []
    for i in range(40):
        first = "urgent" if i % 2 else "not_urgent"
        second = (
            first if rng.random() < 0.55 else ("urgent" if first == "not_urgent" else "not_urgent")
        )
        noisy += [(f"q{i}", "a", first, False, False), (f"q{i}", "b", second, False, False)]
    judged = _audit_agreement(noisy)
    assert judged.passed is False
    assert judged.metadata["krippendorff_alpha"] < 0.6 and judged.metadata["overlap_posts"] == 40
