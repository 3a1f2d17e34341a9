"""Labeling functions: the YAML format, its errors, and the pre-labels and statistics they give."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.labeling.rules import (
    load_labeling_functions,
    parse_labeling_functions,
)
from spanda_assets.lib.labeling.weak import (
    LabelingStats,
    majority,
    prelabel_batches,
    vote_matrix,
    weighted,
)
from spanda_assets.lib.seed.pool import urgency_pool

RULES = b"""functions:
  - name: asap
    vote: urgent
    keywords: [asap, "can't submit"]
  - name: deadline
    vote: urgent
    regex: "deadline.{0,20}(today|tonight)"
  - name: thanks
    vote: not_urgent
    keywords: [thanks for]
  - name: shouting
    vote: urgent
    heuristic: {measure: exclamation_marks, at_least: 2}
"""


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_labeling_functions(text.encode(), origin="lf.yaml")
    return str(info.value)


def test_model_version_is_the_hash_of_the_file_bytes() -> None:
    rules = parse_labeling_functions(RULES)
    assert rules.model_version == "lf-" + hashlib.sha256(RULES).hexdigest()[:12]
    assert rules.names == ["asap", "deadline", "thanks", "shouting"]
    # a comment is an edit too: another version, so Label Studio never mixes the two
    assert parse_labeling_functions(RULES + b"# tuned\n").model_version != rules.model_version


def test_the_packaged_rules_load_and_the_env_var_overrides_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    packaged = load_labeling_functions()
    assert len(packaged.functions) >= 10
    assert {f.vote for f in packaged.functions} == {"urgent", "not_urgent"}
    own = tmp_path / "rules.yaml"
    own.write_bytes(RULES)
    monkeypatch.setenv("SPANDA_LABELING_FUNCTIONS_FILE", str(own))
    assert load_labeling_functions().names == ["asap", "deadline", "thanks", "shouting"]
    monkeypatch.setenv("SPANDA_LABELING_FUNCTIONS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_labeling_functions()


def test_errors_name_file_line_rule_and_field() -> None:
    bad_vote = "functions:\n  - name: a\n    vote: maybe\n    keywords: [x]\n"
    assert _error(bad_vote) == (
        "lf.yaml, line 3, column 5: functions[0] ('a'): vote: must be 'urgent' or "
        "'not_urgent', got 'maybe'"
    )
    bad_regex = "functions:\n  - name: b\n    vote: urgent\n    regex: '(?<=a)b'\n"
    message = _error(bad_regex)
    assert message.startswith("lf.yaml, line 4, column 5: functions[0] ('b'): regex: ")
    assert "not an RE2 pattern" in message
    two_kinds = "functions:\n  - name: c\n    vote: urgent\n    keywords: [x]\n    regex: y\n"
    assert "exactly one of keywords, regex or heuristic, got keywords, regex" in _error(two_kinds)
    typo = "functions:\n  - name: d\n    vote: urgent\n    keyword: [x]\n"
    assert "line 4, column 5: functions[0] ('d'): unknown key 'keyword'" in _error(typo)
    missing_vote = "functions:\n  - name: e\n    keywords: [x]\n"
    assert "line 2, column 5: functions[0] ('e'): 'vote' is required" in _error(missing_vote)
    no_bounds = "functions:\n  - name: f\n    vote: urgent\n    heuristic: {measure: words}\n"
    assert "heuristic: needs at_least, at_most or both" in _error(no_bounds)
    dup = (
        "functions:\n  - {name: g, vote: urgent, keywords: [x]}\n"
        "  - {name: g, vote: urgent, regex: y}\n"
    )
    assert "line 3" in _error(dup) and "'g' is used twice" in _error(dup)
    assert "top-level 'functions:'" in _error("rules: []\n")
    assert "not valid YAML" in _error("functions: [\n")


def test_keywords_match_whole_words_any_apostrophe_and_case() -> None:
    rules = parse_labeling_functions(RULES)
    bodies = pa.array(
        [
            "I CAN’T SUBMIT my essay",  # curly apostrophe, upper case
            "cant   submit",  # no apostrophe, several spaces
            "the asapfoo tool",  # not a whole word
            "Deadline is tonight!!",
            "Thanks for the notes",
            None,
        ]
    )
    votes = vote_matrix(rules, bodies)
    assert votes[:, 0].tolist() == [1, 1, -1, -1, -1, -1]
    assert votes[:, 1].tolist() == [-1, -1, -1, 1, -1, -1]
    assert votes[:, 2].tolist() == [-1, -1, -1, -1, 0, -1]
    assert votes[:, 3].tolist() == [-1, -1, -1, 1, -1, -1]


def test_majority_confidence_and_the_weighted_label_model() -> None:
    votes = np.array([[1, -1, -1], [1, 1, 1], [1, 1, 0], [1, 0, -1], [-1, -1, -1]], np.int8)
    assert majority(votes).round(3).tolist() == [0.667, 0.8, 0.6, 0.5, 0.5]
    # a rule known to be right 95% of the time outvotes two coin-like rules
    p = weighted(np.array([[0, 1, 1]], np.int8), np.array([0.95, 0.55, 0.55]))
    assert p[0] < 0.5


def test_prelabels_stream_and_stats_add_up() -> None:
    rules = parse_labeling_functions(RULES)
    posts = pa.table(
        {
            "post_key": ["a", "b", "c", "d"],
            "body": ["asap please", "thanks for it, asap", "hello", "deadline today!!"],
        }
    )
    stats = LabelingStats(rules.names)
    out = pa.Table.from_batches(
        list(
            prelabel_batches(
                rules,
                posts.to_batches(max_chunksize=2),
                stats=stats,
                known_labels={"a": "urgent", "b": "not_urgent", "d": "urgent"},
            )
        )
    )
    assert out["prelabel"].to_pylist() == ["urgent", None, None, "urgent"]
    assert out["confidence"].to_pylist()[0] == pytest.approx(2 / 3)
    assert out["confidence"].to_pylist()[3] == pytest.approx(3 / 4)  # deadline and shouting
    assert set(out["model_version"].to_pylist()) == {rules.model_version}
    rows = {r["function"]: r for r in stats.summary()}
    assert rows["asap"] == {
        "function": "asap",
        "votes": 2,
        "coverage": 0.5,
        "overlap": 0.25,  # b: asap and thanks
        "conflict": 0.25,  # ... which disagree
        "labeled": 2,
        "accuracy": 0.5,  # right on a, wrong on b
    }
    assert rows["deadline"]["overlap"] == 0.25 and rows["deadline"]["conflict"] == 0.0
    assert rows["thanks"]["accuracy"] == 1.0
    assert stats.totals() == {"posts": 4, "coverage": 0.75, "conflict": 0.25}


def test_the_packaged_rules_work_on_generated_posts() -> None:
    """Tuned on generic urgency cues; measured on the generator's clean-labeled posts."""
    pool = urgency_pool(1500, seed=11)
    rules = load_labeling_functions()
    out = pa.Table.from_batches(list(prelabel_batches(rules, pool.to_batches(max_chunksize=400))))
    pre, truth = out["prelabel"].to_pylist(), pool["label"].to_pylist()
    decided = [(p, t) for p, t in zip(pre, truth, strict=True) if p is not None]
    assert len(decided) / len(pre) > 0.95
    assert sum(p == t for p, t in decided) / len(decided) > 0.95
    urgent = [p for p, t in zip(pre, truth, strict=True) if t == "urgent"]
    assert urgent.count("urgent") / len(urgent) > 0.9
