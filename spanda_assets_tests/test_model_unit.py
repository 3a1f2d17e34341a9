"""The model's parts on their own: gates, behavioural tests, the frame digest, the
pyfunc's trust list, credentials in URIs. No server, no Dagster."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import skops.io

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.model import behavior, gates, registry
from spanda_assets.lib.model.features import model_inputs, normalize
from spanda_assets.lib.model.frame import frame_digest
from spanda_assets.lib.model.predict import Reservoir
from spanda_assets.lib.model.pyfunc_model import load_pipeline
from spanda_assets.lib.model.registry import redacted_uri
from spanda_assets.lib.model.train import metric_name

URGENT = [
    "The deadline is tonight and I cannot submit, please help",
    "Locked out of the exam and the quiz closes in an hour",
    "The upload fails with an error and I will miss the deadline",
    "Urgent: my grade shows zero but I submitted on time",
]
ROUTINE = [
    "Thanks for the great lecture, the examples helped",
    "Does anyone want to form a study group",
    "Sharing my notes from week three in case they help",
    "Is the reading the whole chapter or the first part",
]


def _subject(i: int) -> str:
    return "ps_" + hashlib.md5(str(i).encode()).hexdigest()


def _frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    filler = ["today", "again", "also", "in the course", "on the forum", "this week", "now"]
    for i in range(n):
        urgent = bool(rng.random() < 0.3)
        text = (URGENT if urgent else ROUTINE)[int(rng.integers(4))]
        text += " " + " ".join(rng.choice(filler, size=int(rng.integers(0, 6))))
        student = int(rng.integers(40))
        rows.append(
            {
                "post_key": f"ps_{i:032x}",
                "subject_id": _subject(student),
                "course_id": 1 + i % 5,
                "body": text,
                "label": "urgent" if urgent else "not_urgent",
                "split": "test" if student < 8 else "train",
            }
        )
    return pd.DataFrame(rows)


def test_a_clean_frame_passes_every_pre_train_gate() -> None:
    result = {g.name: g for g in gates.pre_train(_frame(), need=20, departed=lambda k: set())}
    assert set(result) == set(gates.PRE_TRAIN)
    assert all(g.passed for g in result.values()), {n: g.failing for n, g in result.items()}


def test_the_frame_contract_names_the_failing_column_and_post() -> None:
    df = _frame()
    df.loc[3, "label"] = "maybe"
    df.loc[5, "body"] = "   "
    (schema,) = gates.pre_train(df, need=20)  # later gates do not run on a broken frame
    assert not schema.passed
    failures = schema.failing["failures"]
    assert {f["column"] for f in failures} == {"label", "body"}
    assert df.loc[3, "post_key"] in {f["post_key"] for f in failures}


def test_class_balance_refuses_too_few_labels_and_a_test_split_without_a_class() -> None:
    df = _frame()
    short = gates.class_balance(df, need=1_000)
    assert not short.passed and short.failing["short"]["urgent"]["need"] == 1_000
    no_test_urgent = df[~((df["split"] == "test") & (df["label"] == "urgent"))]
    gate = gates.class_balance(no_test_urgent, need=5)
    assert not gate.passed and gate.failing["missing_in_test_split"] == ["urgent"]


def test_a_student_on_both_sides_of_the_split_is_caught() -> None:
    df = _frame()
    df.loc[df.index[-1], "split"] = "test" if df.iloc[-1]["split"] == "train" else "train"
    gate = gates.split_disjoint(df)
    assert not gate.passed and gate.failing["students_in_both_splits"] == [
        df.iloc[-1]["subject_id"]
    ]


def test_a_label_word_left_in_the_text_is_a_leak() -> None:
    df = _frame()
    df["body"] = df["body"] + np.where(df["label"] == "urgent", " flagurgent", " flagcalm")
    gate = gates.single_feature_leakage(df)
    assert not gate.passed
    assert {"word:flagurgent", "word:flagcalm"} & set(gate.failing["leaking_features"])


def test_a_course_that_only_ever_holds_urgent_posts_is_a_leak() -> None:
    df = _frame()
    df["course_id"] = np.where(df["label"] == "urgent", 99, 1)
    assert "course_id" in gates.single_feature_leakage(df).failing["leaking_features"]


def test_f1_floor_and_dummy_margin() -> None:
    df = _frame()
    train, test = df[df["split"] == "train"], df[df["split"] == "test"].reset_index(drop=True)
    y = (test["label"] == "urgent").to_numpy()
    good = gates.evaluate(np.where(y, 0.9, 0.1), test, train)
    assert gates.heldout_f1(good).passed and good.metrics["f1"] == 1.0
    shuffled = gates.evaluate(
        np.random.default_rng(1).permutation(np.where(y, 0.9, 0.1)), test, train
    )
    gate = gates.heldout_f1(shuffled)
    assert not gate.passed and gate.metadata["dummy_f1"] > 0
    # the regression gate compares with the champion on the same posts
    assert not gates.no_regression(shuffled, champion_f1=1.0, champion_version="3").passed
    assert gates.no_regression(good, champion_f1=None, champion_version=None).passed
    # against a champion trained on withdrawn posts it measures and warns, never blocks
    stale = gates.no_regression(shuffled, 1.0, "3", champion_stale=True)
    assert not stale.passed and not stale.blocking and "withdrew consent" in stale.metadata["note"]
    assert gates.no_regression(shuffled, 1.0, "3").blocking


def test_slices_are_judged_only_when_large_enough() -> None:
    ev = gates.Evaluation(
        {}, {"1": 0.9, "2": 0.5}, {"1": 12, "2": 3}, [[0, 0], [0, 0]], np.array([])
    )
    assert gates.slice_recall_gap(ev).passed  # course 2 is too small to judge
    ev.by_course_positives["2"] = 11
    gate = gates.slice_recall_gap(ev)
    assert not gate.passed and gate.failing["worst_course"] == "2"


def _keyword_model(texts: list[str] | tuple[str, ...]) -> np.ndarray:
    words = ("deadline", "exam", "locked", "urgent", "help", "hospital", "charged", "tonight")
    out = []
    for text in texts:
        t = normalize(text)
        hits = sum(w in t for w in words) - 2 * sum(w in t for w in ("solved", "thanks"))
        out.append(1 / (1 + np.exp(-(hits * 2 - 1))))
    return np.asarray(out)


def test_behavioural_tests_report_per_capability_with_failing_examples() -> None:
    mft = behavior.minimum_functionality(_keyword_model)
    assert mft.cases >= 30 and set(mft.by_capability) >= {"deadline", "appreciation"}
    inv = behavior.invariance(_keyword_model)
    assert inv.passed, inv.failing  # keywords ignore names, codes, casing, whitespace
    assert set(inv.by_capability) == {
        "names",
        "course_codes",
        "placeholders",
        "casing",
        "whitespace",
        "typos",
    }

    def name_sensitive(texts: list[str] | tuple[str, ...]) -> np.ndarray:
        return np.asarray([0.9 if "Maria" in t else 0.1 for t in texts])

    broken = behavior.invariance(name_sensitive)
    assert not broken.passed and broken.failing[0]["perturbation"] == "names"
    assert broken.metrics()["invariance.pass_rate"] == broken.pass_rate


def test_a_test_case_file_with_a_bad_row_says_which(tmp_path: Path) -> None:
    (tmp_path / behavior.MFT_FILE).write_text(
        "capability,expected,text\nx,urgent,ok\ny,maybe,bad\n"
    )
    with pytest.raises(ConfigError, match=r"line 3: expected must be urgent or not_urgent"):
        behavior.minimum_functionality(_keyword_model, tmp_path)
    (tmp_path / behavior.DIRECTIONAL_FILE).write_text("tolerance: 0.1\nposts: [a]\n")
    with pytest.raises(ConfigError, match="missing field"):
        behavior.directional(_keyword_model, tmp_path)


def test_normalization_removes_what_carries_no_urgency() -> None:
    assert normalize("Hi [NAME],  CS101 exam\tTOMORROW") == "hi , exam tomorrow"
    inputs = model_inputs(pd.DataFrame({"body": ["Help!!", None], "other": [1, 2]}))
    assert list(inputs.columns) == ["text", "exclamations", "questions"]
    assert inputs["exclamations"].tolist() == [2, 0]
    with pytest.raises(ValueError, match="body"):
        model_inputs(pd.DataFrame({"text": ["x"]}))


def test_the_frame_digest_does_not_depend_on_chunking() -> None:
    t = pa.table({"post_key": ["a", "b", "c"], "label": ["urgent", "not_urgent", "urgent"]})
    chunked = pa.Table.from_batches(t.to_batches(max_chunksize=1))
    assert frame_digest(t) == frame_digest(chunked)
    assert frame_digest(t) != frame_digest(t.slice(0, 2))


def test_credentials_never_show_in_the_tracking_uri() -> None:
    assert redacted_uri("https://alice:s3cret@mlflow.example:5000/x?token=abc") == (
        "https://mlflow.example:5000/x"
    )
    assert redacted_uri("sqlite:////tmp/m/mlflow.db") == "sqlite:////tmp/m/mlflow.db"
    assert redacted_uri("http://mlflow:5000?token=abc") == "http://mlflow:5000"


def test_metric_names_are_made_acceptable_to_mlflow() -> None:
    assert metric_name("directional.up: I'm lost!") == "directional.up: I_m lost_"


def test_the_pyfunc_refuses_a_pipeline_with_unexpected_types(tmp_path: Path) -> None:
    class Sneaky:
        pass

    path = tmp_path / "p.skops"
    skops.io.dump({"x": Sneaky()}, path)
    with pytest.raises(ValueError, match="refusing to load"):
        load_pipeline(str(path))


def test_the_consent_gate_refuses_a_frame_with_a_departed_students_post() -> None:
    df = _frame()
    gone = set(df["post_key"].iloc[:3])
    gate = gates.consent_current(df, lambda keys: keys & gone)
    assert not gate.passed and gate.failing["departed_posts"] == 3
    assert gates.consent_current(df, lambda keys: set()).passed
    names = [g.name for g in gates.pre_train(df, need=20, departed=lambda keys: keys & gone)]
    assert "consent_current" in names


def test_the_scoring_sample_is_uniform_bounded_and_seeded() -> None:
    def sample(seed: int) -> np.ndarray:
        r = Reservoir(200, seed=seed)
        for start in range(0, 20_000, 1_300):
            r.add(pa.table({"x": np.arange(start, min(start + 1_300, 20_000))}))
        t = r.table()
        assert t is not None
        return np.asarray(t["x"])

    x = sample(1)
    assert len(x) == 200 == len(set(x.tolist()))
    assert 8_000 < x.mean() < 12_000  # uniform over 0..19,999, not the first 200 rows
    assert (sample(1) == x).all() and not (sample(2) == x).all()
    small = Reservoir(50)
    small.add(pa.table({"x": np.arange(10)}))
    assert small.table().num_rows == 10  # type: ignore[union-attr]


def test_credentials_in_the_tracking_uri_move_to_mlflows_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    bare = registry._credentials_to_env("https://alice:s%40cret@mlflow.example:5000/root")
    assert bare == "https://mlflow.example:5000/root"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "s@cret"
    err = registry.wrap(
        "register", RuntimeError("API request to https://bob:pw@h/api?token=abc failed")
    )
    assert "pw" not in str(err) and "abc" not in str(err) and "https://h/api" in str(err)


def test_the_default_store_follows_spanda_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow copies a tracking URI into the environment; the embedded default must not
    stick there, or a later SPANDA_HOME (a test, a child process) would use this one."""
    monkeypatch.setenv("SPANDA_HOME", str(tmp_path / "a"))
    registry.client()
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("SPANDA_HOME", str(tmp_path / "b"))
    assert registry.tracking_uri() == f"sqlite:///{tmp_path / 'b' / 'mlflow' / 'mlflow.db'}"
