"""Drift of data, predictions and labels (Evidently), performance without labels, and the
shifted demo batch (`spanda seed --append --drift`) that the drift checks must flag."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import beta

from spanda_assets.cli import main
from spanda_assets.lib.model.drift import (
    DriftResult,
    adjust_to_batch_prior,
    data_drift,
    estimate_performance,
    label_drift,
    prediction_drift,
)
from spanda_assets.lib.seed import SeedSizes, read_ground_truth, seed
from spanda_assets.lib.seed.pool import urgency_pool

COURSES = [f"C{i}" for i in range(12)]


def _posts(n: int, seed: int, shifted: bool = False) -> pd.DataFrame:
    """Forum posts as the drift check sees them: generated text, hour and course."""
    rng = np.random.default_rng(seed)
    bodies = urgency_pool(n, seed=seed).column("body").to_pylist()
    if shifted:
        # what an exam week looks like: at night, long posts, about one course
        hours = rng.integers(0, 6, n)
        bodies = [f"{b} {bodies[(i + 1) % n]} {bodies[(i + 2) % n]}" for i, b in enumerate(bodies)]
        courses = np.where(rng.random(n) < 0.85, "C1", rng.choice(COURSES, n))
    else:
        hours = rng.integers(7, 23, n)
        courses = rng.choice(COURSES, n)
    return pd.DataFrame({"hour": hours, "course": courses, "body": bodies, "other": 0})


def _drift(reference: pd.DataFrame, current: pd.DataFrame, report: Path, **kw: Any) -> DriftResult:
    """data_drift over the posts' hour, course and body."""
    return data_drift(
        reference,
        current,
        numerical=["hour"],
        categorical=["course"],
        text=["body"],
        report_path=report,
        **kw,
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _posts(3000, seed=1)


def _is_html_report(path: Path | None) -> bool:
    assert path is not None and path.is_file()
    head = path.read_text("utf-8")[:2000].lower()
    return "<html" in head


def test_same_distribution_is_not_drifted(reference: pd.DataFrame, tmp_path: Path) -> None:
    report = tmp_path / "reports" / "data.html"
    r = _drift(reference, _posts(3000, seed=2), report)
    assert r.kind == "data"
    assert not r.drifted and r.drift_share < r.threshold == 0.5
    assert r.drifted_columns == []
    # the raw text is compared through its descriptors, each a column of its own
    assert (
        set(r.columns)
        == set(r.methods)
        == {
            "hour",
            "course",
            "body: length (chars)",
            "body: word count",
            "body: has '?'",
            "body: has '!'",
            "body: mentions deadline/exam",
            "body: asks for help",
        }
    )
    assert r.methods["hour"] == "Wasserstein distance (normed)"
    assert r.methods["course"] == "Jensen-Shannon distance"
    assert (r.rows_reference, r.rows_current) == (3000, 3000)
    assert r.report_path == report and _is_html_report(report)
    assert [p.name for p in report.parent.iterdir()] == ["data.html"]  # no temp file left


def test_shifted_posts_are_drifted(reference: pd.DataFrame, tmp_path: Path) -> None:
    r = _drift(reference, _posts(3000, seed=2, shifted=True), tmp_path / "data.html")
    assert r.drifted and r.drift_share >= 0.5
    assert {"hour", "course", "body: length (chars)", "body: word count"} <= set(r.drifted_columns)
    assert r.drift_share == pytest.approx(len(r.drifted_columns) / len(r.columns))
    meta = r.metadata()
    json.dumps(meta, allow_nan=False)  # plain JSON values only
    assert meta["drifted"] is True and meta["report_path"] == str(tmp_path / "data.html")
    assert _is_html_report(r.report_path)


def test_drift_share_sets_the_dataset_verdict(reference: pd.DataFrame, tmp_path: Path) -> None:
    # only the hour moves: 1 drifted column of 8
    current = _posts(3000, seed=2)
    current["hour"] = np.random.default_rng(0).integers(0, 6, len(current))
    lenient = _drift(reference, current, tmp_path / "r.html", drift_share=0.5)
    strict = _drift(reference, current, tmp_path / "r.html", drift_share=0.1)
    assert lenient.drifted_columns == strict.drifted_columns == ["hour"]
    assert not lenient.drifted and strict.drifted and strict.threshold == 0.1


def test_sampling_caps_rows_and_is_deterministic(tmp_path: Path) -> None:
    big_ref, big_cur = _posts(6000, seed=3), _posts(5000, seed=4)
    report = tmp_path / "r.html"
    a = _drift(big_ref, big_cur, report, max_rows=800, seed=7)
    b = _drift(big_ref, big_cur, report, max_rows=800, seed=7)
    other = _drift(big_ref, big_cur, report, max_rows=800, seed=8)
    assert (a.rows_reference, a.rows_current) == (800, 800)
    assert (a.rows_reference_total, a.rows_current_total) == (6000, 5000)
    assert (a.columns, a.drifted_columns, a.drifted) == (b.columns, b.drifted_columns, b.drifted)
    assert other.columns != a.columns  # another seed, another sample
    note = a.metadata()["sampling"]
    assert "800 of 6,000" in note and "800 of 5,000" in note and "seed 7" in note
    assert a.metadata()["sample_seed"] == 7


def test_declared_columns_and_rows_are_checked(reference: pd.DataFrame, tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    with pytest.raises(ValueError, match=r"'hour'.*current"):
        _drift(reference, reference.drop(columns="hour"), report)
    with pytest.raises(ValueError, match=r"'body'.*reference"):
        _drift(reference.drop(columns="body"), reference, report)
    with pytest.raises(ValueError, match="no rows in the current batch: nothing to compare"):
        _drift(reference, reference.iloc[:0], report)
    with pytest.raises(ValueError, match="no rows in the reference batch"):
        prediction_drift([], [0.5], report_path=tmp_path / "p.html")
    assert not (tmp_path / "r.html").exists()


def test_prediction_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ref = rng.beta(2, 5, 4000)
    same = prediction_drift(ref, rng.beta(2, 5, 4000), report_path=tmp_path / "p.html")
    shifted = prediction_drift(ref, rng.beta(4, 3, 4000), report_path=tmp_path / "p.html")
    assert isinstance(same, DriftResult) and same.kind == "prediction"
    assert not same.drifted and same.drifted_columns == []
    assert shifted.drifted and shifted.drifted_columns == ["p_urgent"]
    assert set(shifted.columns) == {"p_urgent"} and _is_html_report(shifted.report_path)
    with pytest.raises(ValueError, match="NaN"):
        prediction_drift(ref, [0.1, float("nan")], report_path=tmp_path / "p.html")


def test_label_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)

    def labels(n: int, urgent: float) -> list[str]:
        return list(rng.choice(["urgent", "not_urgent"], n, p=[urgent, 1 - urgent]))

    ref = labels(4000, 0.2)
    same = label_drift(ref, labels(4000, 0.2), report_path=tmp_path / "l.html")
    shifted = label_drift(ref, labels(4000, 0.6), report_path=tmp_path / "l.html")
    assert same.kind == "label" and not same.drifted
    assert shifted.drifted and shifted.drifted_columns == ["label"]
    assert shifted.methods["label"] == "Jensen-Shannon distance"


def test_estimated_f1_matches_the_realized_f1() -> None:
    rng = np.random.default_rng(11)
    p = rng.beta(2, 5, 200_000)
    y = rng.random(p.size) < p  # labels drawn as Bernoulli(p): p is calibrated
    est = estimate_performance(p, threshold=0.5)
    pred = p >= 0.5
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    realized_f1 = 2 * tp / (2 * tp + fp + fn)
    assert abs(est["f1"] - realized_f1) < 0.02
    assert abs(est["precision"] - tp / (tp + fp)) < 0.02
    assert abs(est["recall"] - tp / (tp + fn)) < 0.02
    assert abs(est["accuracy"] - (pred == y).mean()) < 0.02
    assert est["expected_positive_rate"] == pytest.approx(y.mean(), abs=0.01)
    assert est["rows"] == 200_000


def _label_shift_batch(
    rng: np.random.Generator, n: int, training_prior: float, batch_prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """A batch whose urgent share moved from `training_prior` to `batch_prior`, scored by
    a model calibrated at `training_prior`: each class's scores keep their distribution
    (Beta(5, 2) for urgent, Beta(2, 5) for routine), only the mix changes."""
    y = rng.random(n) < batch_prior
    s = np.where(y, rng.beta(5, 2, n), rng.beta(2, 5, n))
    up = training_prior * beta.pdf(s, 5, 2)
    p = up / (up + (1 - training_prior) * beta.pdf(s, 2, 5))
    return p, y


def _f1(y: np.ndarray, pred: np.ndarray) -> float:
    tp, fp, fn = (pred & y).sum(), (pred & ~y).sum(), (~pred & y).sum()
    return float(2 * tp / (2 * tp + fp + fn))


def test_a_moved_urgent_share_is_estimated_and_the_f1_follows_it() -> None:
    rng = np.random.default_rng(5)
    p, y = _label_shift_batch(rng, 50_000, training_prior=0.22, batch_prior=0.6)
    q, share = adjust_to_batch_prior(p, 0.22)
    assert share == pytest.approx(y.mean(), abs=0.01)  # 0.6, from unlabeled p alone
    assert q.mean() == pytest.approx(share)
    realized = _f1(y, p >= 0.5)
    plain = estimate_performance(p, 0.5)
    moved = estimate_performance(p, 0.5, training_prior=0.22)
    assert abs(moved["f1"] - realized) < 0.01
    # read through the old base rate, the share and the F1 are both off
    assert abs(plain["f1"] - realized) > 0.02
    assert abs(plain["expected_positive_rate"] - y.mean()) > 0.1
    assert moved["expected_positive_rate"] == pytest.approx(y.mean(), abs=0.01)
    assert moved["predicted_positive_rate"] == plain["predicted_positive_rate"]


def test_without_a_shift_the_adjustment_changes_nothing() -> None:
    rng = np.random.default_rng(8)
    p, y = _label_shift_batch(rng, 50_000, training_prior=0.3, batch_prior=0.3)
    q, share = adjust_to_batch_prior(p, 0.3)
    assert share == pytest.approx(0.3, abs=0.01)
    assert np.abs(q - p).max() < 0.03
    realized = _f1(y, p >= 0.5)
    assert abs(estimate_performance(p, 0.5, training_prior=0.3)["f1"] - realized) < 0.01


def test_the_prior_adjustment_refuses_nonsense() -> None:
    for bad in (0.0, 1.0, -0.2, 1.5):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            adjust_to_batch_prior([0.2, 0.7], bad)
    with pytest.raises(ValueError, match="probabilities"):
        adjust_to_batch_prior([0.2, np.nan], 0.3)
    q, share = adjust_to_batch_prior([], 0.3)
    assert q.size == 0 and share == 0.3
    # certain scores stay finite and inside [0, 1]
    q, share = adjust_to_batch_prior([0.0, 1.0, 1.0], 0.3)
    assert np.all((q >= 0) & (q <= 1)) and 0 < share < 1
    assert estimate_performance([0.0, 1.0], 0.5, training_prior=0.3)["rows"] == 2


def test_estimate_performance_edge_cases() -> None:
    empty = estimate_performance([])
    assert empty["rows"] == 0 and all(v == 0.0 for v in empty.values())
    low = estimate_performance([0.1, 0.2, 0.3], threshold=0.5)  # nothing predicted urgent
    assert low["precision"] == low["recall"] == low["f1"] == low["predicted_positive_rate"] == 0.0
    assert low["accuracy"] == pytest.approx(0.8)
    assert not any(np.isnan(v) for v in [*empty.values(), *low.values()])
    zero = estimate_performance(np.zeros(5))
    assert zero["recall"] == 0.0 and zero["accuracy"] == 1.0
    with pytest.raises(ValueError, match="probabilities"):
        estimate_performance([0.2, 1.5])


def _posts_by_batch(home: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    with sqlite3.connect(home / "operational.db") as con:
        posts = pd.read_sql('SELECT PostID, CourseID, Body, CreatedAt FROM "ForumPosts"', con)
    posts["hour"] = pd.to_datetime(posts["CreatedAt"]).dt.hour
    posts["length"] = posts["Body"].str.len()
    first = posts[posts["PostID"] <= 1000]
    return first, posts[posts["PostID"] > 1000]


def _top2_share(courses: pd.Series) -> float:
    return float(courses.value_counts(normalize=True).iloc[:2].sum())


def test_seed_append_drift_writes_a_shifted_batch(spanda_home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["seed", "--size", "tiny"]).exit_code == 0
    out = runner.invoke(main, ["seed", "--size", "tiny", "--append", "--drift"])
    assert out.exit_code == 0, out.output
    assert "shifted batch" in out.output

    first, new = _posts_by_batch(spanda_home)
    assert len(first) == 1000 and len(new) == 100
    assert new["hour"].between(0, 5).all() and not first["hour"].between(0, 5).any()
    assert new["length"].mean() > 2 * first["length"].mean()
    assert _top2_share(new["CourseID"]) > 0.7 and _top2_share(first["CourseID"]) < 0.4
    assert new["CreatedAt"].min() > first["CreatedAt"].max()  # later than everything before

    # the ground truth covers the shifted posts as any others: more of them are urgent
    truth = read_ground_truth(spanda_home / "ground_truth").to_pandas().set_index("post_id")
    urgent = truth["urgent"]
    assert set(new["PostID"]) <= set(truth.index)
    assert urgent.loc[new["PostID"]].mean() > urgent.loc[first["PostID"]].mean() + 0.2
    bodies = dict(zip(new["PostID"], new["Body"], strict=True))
    for pid in new["PostID"]:
        for span in truth.loc[pid, "pii_spans"]:
            text = bodies[pid][span["start"] : span["end"]]
            assert text and text.strip() == text

    # and the drift check flags it
    frames = [
        b.assign(course=b["CourseID"].astype(str), body=b["Body"])[["hour", "course", "body"]]
        for b in (first, new)
    ]
    r = _drift(frames[0], frames[1], tmp_path / "seed.html")
    assert r.drifted
    assert {"hour", "course", "body: length (chars)"} <= set(r.drifted_columns)


def test_seed_drift_needs_append(spanda_home: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["seed", "--size", "tiny", "--drift"])
    assert out.exit_code == 2 and "--drift only applies with --append" in out.output
    assert not (spanda_home / "operational.db").exists()
    with pytest.raises(ValueError, match="append"):
        seed(
            f"sqlite:///{tmp_path / 'x.db'}",
            SeedSizes.preset("tiny"),
            drift=True,
            ground_truth=tmp_path / "gt",
        )


def test_plain_append_is_not_shifted(spanda_home: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["seed", "--size", "tiny"]).exit_code == 0
    out = runner.invoke(main, ["seed", "--size", "tiny", "--append"])
    assert out.exit_code == 0 and "appended to" in out.output and "shifted" not in out.output
    first, new = _posts_by_batch(spanda_home)
    assert not new["hour"].between(0, 5).any()
    assert new["length"].mean() < 1.3 * first["length"].mean()
    assert _top2_share(new["CourseID"]) < 0.5
