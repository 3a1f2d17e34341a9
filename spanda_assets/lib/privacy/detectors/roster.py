"""Names the institution knows (students, parents, instructors), matched token by token."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from spanda_assets.lib.privacy.detectors.base import Span, overlaps

_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+(?:[-'][A-Z][a-z]+)?\b")

# Capitalized words that are also common names in rosters ("Will", "May") are
# only taken for names beside another name token or after a title.
AMBIGUOUS = frozenset(
    (  # noqa: SIM905 - a word list reads best as words
        "Will May June April August Grant Hope Joy Faith Grace Summer Autumn Dawn Rose Bill "
        "Mark Art Chase Guy Rich Sandy Wade Drew Frank Gene Hunter Lane Miles Page Ray Rob Sky "
        "Young King Bell Hill Wood Stone Rivers Brown Green White Black Gray Long Short Cook "
        "Price Hall Ward Rice Bush Hunt Moss Cross Church Park Strong Lake Field Fields Banks "
        "Love Little Small Day Knight Cash Sharp Snow Wise Golden Free Case Hale Best Early "
        "Major Noble Person Law Judge Holiday French English Newton Monday Friday Christian "
        "Thanks Thank Does Great Happy Just Here Please Call Looking Nobody Urgent Quiz Final "
        "Project Midterm Lab Report Exam Can Is Hi The"
    ).split()
)


@dataclass
class Roster:
    """Names the institution knows: single tokens, and full names to match first."""

    tokens: set[str] = field(default_factory=set)

    @classmethod
    def from_names(cls, names: Iterable[str | None]) -> Roster:
        tokens: set[str] = set()
        for name in names:
            if not name:
                continue
            for part in str(name).replace(".", " ").split():
                if len(part) > 1 and part[0].isupper():
                    tokens.add(part)
        return cls(tokens=tokens)


def roster_spans(text: str, roster: Roster, taken: list[Span]) -> list[Span]:
    found: list[Span] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if not run:
            return
        words = [m.group(0) for m in run]
        lone_ambiguous = len(words) == 1 and words[0] in AMBIGUOUS
        if not lone_ambiguous:
            found.append(Span("NAME", run[0].start(), run[-1].end()))
        run.clear()

    for m in _CAPITALIZED.finditer(text):
        word = m.group(0)
        if word not in roster.tokens or overlaps(taken, m.start(), m.end()):
            flush()
            continue
        if run and text[run[-1].end() : m.start()] != " ":
            flush()
        run.append(m)
    flush()
    return found
