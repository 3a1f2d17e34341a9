"""Scoring a PII detector against labeled text that the project did not generate.

Two corpora live under benchmarks/corpus (README.md there gives sources and licences):

* Presidio's synthetic PII data set (microsoft/presidio-research, MIT): 1,500
  labeled texts, each taken as one forum post;
* hand-written forum posts in real-world formats (UK/DE/IN/FR phones, IBANs of
  several countries, addresses with units, ten date formats, names from several
  cultures), labeled by value.

Their labels map onto the scrubber's categories (`PRESIDIO_LABELS`). Counting
rules, shared by every engine the benchmark compares:

* a labeled span is *found* when a detection of the same category overlaps it;
  street addresses and postal codes are one geographic group (Safe Harbor's
  "geographic subdivisions smaller than a state"), so either placeholder counts;
* a detection is *correct* when it overlaps a labeled span of its category (or
  group), *neutral* when it only overlaps a label that is not scored (a bare
  year or weekday: Safe Harbor keeps years, and a weekday is no date), and a
  false positive otherwise;
* dates are scored only where they hold more than a year ("every element of a
  date but the year"); organizations, places (GPE), titles, ages and
  nationalities are not scored.

`coverage` is stricter than recall: the share of labeled characters that some
detection, of any category, replaced.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PRESIDIO_LABELS = {
    "PERSON": "NAME",
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "US_SSN": "SSN",
    "CREDIT_CARD": "CARD",
    "IP_ADDRESS": "IP",
    "IBAN_CODE": "IBAN",
    "STREET_ADDRESS": "ADDRESS",
    "ZIP_CODE": "ZIP",
    "DATE_TIME": "DATE",
    "DOMAIN_NAME": "URL",
    "US_DRIVER_LICENSE": "ID",
}
# Recall target, and precision target where the issue sets one.
TARGETS: dict[str, tuple[float, float | None]] = {
    "EMAIL": (0.95, None),
    "PHONE": (0.95, None),
    "SSN": (0.95, None),
    "CARD": (0.95, None),
    "IP": (0.95, None),
    "IBAN": (0.95, None),
    "ADDRESS": (0.90, None),
    "ZIP": (0.90, None),
    "DATE": (0.90, None),
    "NAME": (0.85, 0.85),
}
_GROUP = {"ADDRESS": "GEO", "ZIP": "GEO"}
_WEEKDAY = re.compile(r"(?i)^(?:mon|tues|wednes|thurs|fri|satur|sun)day$")
_YEAR = re.compile(r"^\d{4}$")

Detection = tuple[str, int, int]  # category, start, end


@dataclass(frozen=True)
class Gold:
    category: str
    start: int
    end: int
    scored: bool = True


@dataclass(frozen=True)
class Post:
    text: str
    gold: tuple[Gold, ...]
    source: str


def _date_scored(value: str) -> bool:
    value = value.strip()
    return not (_YEAR.match(value) or _WEEKDAY.match(value))


def load_presidio(path: Path) -> list[Post]:
    """Presidio-research's synth_dataset_v2.json: full_text plus spans with entity_type."""
    posts: list[Post] = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        gold: list[Gold] = []
        for s in item["spans"]:
            category = PRESIDIO_LABELS.get(s["entity_type"])
            if category is None:
                continue
            scored = category != "DATE" or _date_scored(s["entity_value"])
            gold.append(Gold(category, s["start_position"], s["end_position"], scored))
        posts.append(Post(item["full_text"], tuple(gold), "presidio"))
    return posts


def load_handwritten(path: Path) -> list[Post]:
    """One JSON object a line: {"text": ..., "pii": [[CATEGORY, value], ...]}; a value
    is found in the text after the previous occurrence of the same value."""
    posts: list[Post] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        item = json.loads(line)
        text: str = item["text"]
        gold: list[Gold] = []
        after: Counter[str] = Counter()
        for category, value in item["pii"]:
            start = text.find(value, after[value])
            if start < 0:
                raise ValueError(f"{path.name}:{n}: {value!r} is not in the text")
            after[value] = start + len(value)
            gold.append(Gold(category, start, start + len(value)))
        posts.append(Post(text, tuple(gold), "handwritten"))
    return posts


@dataclass
class Score:
    found: Counter[str] = field(default_factory=Counter)
    total: Counter[str] = field(default_factory=Counter)
    correct: Counter[str] = field(default_factory=Counter)
    flagged: Counter[str] = field(default_factory=Counter)
    covered: Counter[str] = field(default_factory=Counter)
    chars: Counter[str] = field(default_factory=Counter)

    def recall(self, category: str) -> float | None:
        n = self.total[category]
        return self.found[category] / n if n else None

    def precision(self, category: str) -> float | None:
        n = self.flagged[category]
        return self.correct[category] / n if n else None

    def coverage(self, category: str) -> float | None:
        n = self.chars[category]
        return self.covered[category] / n if n else None

    def met(self, category: str) -> bool | None:
        """Whether the category meets its target; None where no target is set."""
        if category not in TARGETS:
            return None
        want_recall, want_precision = TARGETS[category]
        recall, precision = self.recall(category), self.precision(category)
        if recall is None or recall < want_recall:
            return False
        return want_precision is None or (precision is not None and precision >= want_precision)


def _same(a: str, b: str) -> bool:
    return a == b or (_GROUP.get(a) is not None and _GROUP.get(a) == _GROUP.get(b))


def score(posts: Sequence[Post], detections: Iterable[Sequence[Detection]]) -> Score:
    out = Score()
    for post, found in zip(posts, detections, strict=True):
        for g in post.gold:
            if not g.scored:
                continue
            out.total[g.category] += 1
            if any(_same(c, g.category) and s < g.end and g.start < e for c, s, e in found):
                out.found[g.category] += 1
            chars = [i for i in range(g.start, g.end) if not post.text[i].isspace()]
            out.chars[g.category] += len(chars)
            out.covered[g.category] += sum(any(s <= i < e for _, s, e in found) for i in chars)
        for c, s, e in found:
            hits = [g for g in post.gold if g.start < e and s < g.end and _same(c, g.category)]
            if hits and not any(g.scored for g in hits):
                continue  # a bare year or weekday: neither right nor wrong
            out.flagged[c] += 1
            out.correct[c] += bool(hits)
    return out
