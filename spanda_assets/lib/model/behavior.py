"""Behavioural tests of the model, as data: minimum functionality, invariance, direction.

The test cases are files under `config/model_tests/` (a CSV of clear cases, two YAML
files of perturbations), so that instructors and researchers can add a case without
touching code, as CheckList proposed for NLP models. Each test takes a `score`
function (texts in, P(urgent) out) and returns its pass rate per capability and
the failing examples; the model asset turns them into blocking asset checks and
logs the same figures to MLflow.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spanda_assets.lib.errors import ConfigError

Score = Callable[[Sequence[str]], np.ndarray]
TESTS_DIR = Path(__file__).resolve().parent.parent.parent / "config" / "model_tests"
MFT_FILE = "minimum_functionality.csv"
INVARIANCE_FILE = "invariance.yaml"
DIRECTIONAL_FILE = "directional.yaml"
MFT_MIN_PASS_RATE = 0.95
FAILURES_SHOWN = 10
THRESHOLD = 0.5  # the default decision threshold; a model brings its own


@dataclass
class BehaviorResult:
    name: str
    passed: bool
    cases: int
    pass_rate: float
    required: str  # the rule, in words
    by_capability: dict[str, float] = field(default_factory=dict)
    failing: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat figures for MLflow (`<name>.pass_rate`, `<name>.<capability>`)."""
        out = {f"{self.name}.pass_rate": self.pass_rate}
        out.update({f"{self.name}.{k}": v for k, v in self.by_capability.items()})
        return out


def _label(p: float, threshold: float = THRESHOLD) -> str:
    return "urgent" if p >= threshold else "not_urgent"


def _yaml(path: Path, required: Sequence[str]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read model tests: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with {', '.join(required)}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{path}: missing field(s) {', '.join(missing)}")
    return data


def minimum_functionality(
    score: Score, directory: Path = TESTS_DIR, threshold: float = THRESHOLD
) -> BehaviorResult:
    """Clear cases must get their expected label (pass rate >= 95%)."""
    path = directory / MFT_FILE
    rows: list[dict[str, str]] = []
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if row.get("expected") not in ("urgent", "not_urgent") or not row.get("text"):
                raise ConfigError(
                    f"{path}, line {line}: expected must be urgent or not_urgent and text "
                    f"must not be empty (got expected={row.get('expected')!r})"
                )
            rows.append(row)
    p = score([r["text"] for r in rows])
    ok = [_label(float(pi), threshold) == r["expected"] for pi, r in zip(p, rows, strict=True)]
    by_cap: dict[str, list[bool]] = {}
    for r, good in zip(rows, ok, strict=True):
        by_cap.setdefault(r["capability"] or "other", []).append(good)
    rate = float(np.mean(ok)) if ok else 0.0
    failing = [
        {
            "capability": r["capability"],
            "text": r["text"],
            "expected": r["expected"],
            "p": round(float(pi), 3),
        }
        for pi, r, good in zip(p, rows, ok, strict=True)
        if not good
    ]
    return BehaviorResult(
        "minimum_functionality",
        passed=bool(rows) and rate >= MFT_MIN_PASS_RATE,
        cases=len(rows),
        pass_rate=round(rate, 4),
        required=f"pass rate >= {MFT_MIN_PASS_RATE:.0%}",
        by_capability={k: round(float(np.mean(v)), 4) for k, v in sorted(by_cap.items())},
        failing=failing[:FAILURES_SHOWN],
    )


def _swap_typo(text: str, nth: int) -> str:
    """Swap two adjacent letters in the nth word of 6+ letters (from the end if nth < 0)."""
    words = text.split(" ")
    long_words = [i for i, w in enumerate(words) if len(w) >= 6 and w.isalpha()]
    if not long_words:
        return text
    i = long_words[nth % len(long_words)]
    w = words[i]
    mid = len(w) // 2
    words[i] = w[: mid - 1] + w[mid] + w[mid - 1] + w[mid + 1 :]
    return " ".join(words)


def _variants(
    post: str, names: list[str], codes: list[str], kinds: list[str]
) -> list[tuple[str, str, str]]:
    """(kind, original, variant) for one post template."""
    original = post.replace("{NAME}", names[0]).replace("{COURSE}", codes[0])
    out: list[tuple[str, str, str]] = []
    for kind in kinds:
        if kind == "names":
            out += [
                (kind, original, post.replace("{NAME}", n).replace("{COURSE}", codes[0]))
                for n in names[1:]
            ]
        elif kind == "course_codes":
            out += [
                (kind, original, post.replace("{NAME}", names[0]).replace("{COURSE}", c))
                for c in codes[1:]
            ]
        elif kind == "placeholders":
            out.append(
                (kind, original, post.replace("{NAME}", "[NAME]").replace("{COURSE}", "[COURSE]"))
            )
        elif kind == "casing":
            out += [
                (kind, original, v) for v in (original.upper(), original.lower(), original.title())
            ]
        elif kind == "whitespace":
            out += [
                (kind, original, v)
                for v in (
                    original.replace(" ", "  "),
                    original.replace(" ", "\t", 1),
                    f"  {original}  ",
                    original.replace(". ", ".\n", 1),
                )
            ]
        elif kind == "typos":
            out += [(kind, original, _swap_typo(original, n)) for n in (0, -1)]
        else:
            raise ConfigError(
                f"{INVARIANCE_FILE}: unknown perturbation {kind!r}; known: names, "
                "course_codes, placeholders, casing, whitespace, typos"
            )
    return out


def invariance(
    score: Score, directory: Path = TESTS_DIR, threshold: float = THRESHOLD
) -> BehaviorResult:
    """Names, placeholders, course codes, casing, whitespace and typos must not move p."""
    path = directory / INVARIANCE_FILE
    cfg = _yaml(
        path, ("tolerance", "max_failing_share", "posts", "names", "course_codes", "perturbations")
    )
    tol = float(cfg["tolerance"])
    cases = [
        v
        for post in cfg["posts"]
        for v in _variants(
            str(post), list(cfg["names"]), list(cfg["course_codes"]), list(cfg["perturbations"])
        )
    ]
    originals = sorted({c[1] for c in cases})
    p_orig = dict(zip(originals, score(originals), strict=True))
    p_var = score([c[2] for c in cases])
    by_kind: dict[str, list[bool]] = {}
    failing: list[dict[str, Any]] = []
    for (kind, original, variant), pv in zip(cases, p_var, strict=True):
        po = float(p_orig[original])
        moved = abs(float(pv) - po)
        good = moved <= tol and _label(po, threshold) == _label(float(pv), threshold)
        by_kind.setdefault(kind, []).append(good)
        if not good:
            failing.append(
                {
                    "perturbation": kind,
                    "original": original,
                    "variant": variant,
                    "p_original": round(po, 3),
                    "p_variant": round(float(pv), 3),
                }
            )
    failing.sort(key=lambda f: -abs(f["p_variant"] - f["p_original"]))
    share = len(failing) / max(len(cases), 1)
    return BehaviorResult(
        "invariance",
        passed=bool(cases) and share <= float(cfg["max_failing_share"]),
        cases=len(cases),
        pass_rate=round(1 - share, 4),
        required=(
            f"|delta p| <= {tol} and no label flip in all but "
            f"{float(cfg['max_failing_share']):.0%} of cases"
        ),
        by_capability={k: round(float(np.mean(v)), 4) for k, v in sorted(by_kind.items())},
        failing=failing[:FAILURES_SHOWN],
    )


def directional(score: Score, directory: Path = TESTS_DIR) -> BehaviorResult:
    """Urgent additions must not lower p_urgent; resolving additions must not raise it."""
    path = directory / DIRECTIONAL_FILE
    cfg = _yaml(path, ("tolerance", "min_pass_rate", "posts", "additions"))
    tol = float(cfg["tolerance"])
    posts = [str(p) for p in cfg["posts"]]
    additions = list(cfg["additions"])
    for i, a in enumerate(additions):
        if not isinstance(a, dict) or a.get("direction") not in ("up", "down") or not a.get("text"):
            raise ConfigError(f"{path}: additions[{i}] needs text and direction up or down")
    base = score(posts)
    variants = [(post, a) for post in posts for a in additions]
    pv = score([f"{post} {a['text']}" for post, a in variants])
    p0 = dict(zip(posts, base, strict=True))
    by_addition: dict[str, list[bool]] = {}
    failing: list[dict[str, Any]] = []
    for (post, a), p_new in zip(variants, pv, strict=True):
        delta = float(p_new) - float(p0[post])
        good = delta >= -tol if a["direction"] == "up" else delta <= tol
        key = f"{a['direction']}: {a['text']}"
        by_addition.setdefault(key, []).append(good)
        if not good:
            failing.append(
                {
                    "post": post,
                    "added": a["text"],
                    "direction": a["direction"],
                    "p_before": round(float(p0[post]), 3),
                    "p_after": round(float(p_new), 3),
                }
            )
    rate = float(np.mean([g for v in by_addition.values() for g in v])) if variants else 0.0
    return BehaviorResult(
        "directional",
        passed=bool(variants) and rate >= float(cfg["min_pass_rate"]),
        cases=len(variants),
        pass_rate=round(rate, 4),
        required=(
            f"moves the expected way (tolerance {tol}) in >= "
            f"{float(cfg['min_pass_rate']):.0%} of cases"
        ),
        by_capability={k: round(float(np.mean(v)), 4) for k, v in by_addition.items()},
        failing=failing[:FAILURES_SHOWN],
    )
