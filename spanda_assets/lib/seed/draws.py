"""Seeded random draws: the one source of randomness behind every generated row.

Every value the generator makes (a phone number, an address, a pick from a word
list) goes through one numpy Generator seeded from the run's seed, so the same
seed gives the same data. The order of draws is part of that contract: a new
draw inserted anywhere changes everything generated after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from spanda_assets.lib.seed.vocabulary import Vocabulary, vocabulary

URL_PATH_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


class Draws:
    """Random values in the formats real forms and forum posts hold."""

    def __init__(self, seed: int, salt: int = 0) -> None:
        # The salt keeps each appended batch from replaying the initial load's draws.
        self.rng = np.random.default_rng([seed, salt])
        self.words: Vocabulary = vocabulary()

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def phone(self) -> str:
        a, b, c = (int(x) for x in self.rng.integers([201, 200, 0], [990, 999, 10000]))
        style = int(self.rng.integers(6))
        if style == 0:
            return f"({a}) {b}-{c:04d}"
        if style == 1:
            return f"{a}-{b}-{c:04d}"
        if style == 2:
            return f"{a}.{b}.{c:04d}"
        if style == 3:
            return f"+1 {a} {b} {c:04d}"
        if style == 4:
            return f"+44 20 {b}{c // 1000} {c:04d}"
        return f"{a}{b}{c:04d}"

    def ssn(self) -> str:
        a = int(self.rng.integers(1, 899))
        a = a + 1 if a == 666 else a  # 666 is never issued
        return f"{a:03d}-{int(self.rng.integers(1, 99)):02d}-{int(self.rng.integers(1, 9999)):04d}"

    def ip(self) -> str:
        if self.rng.random() < 0.15:
            parts = self.rng.integers(0, 0xFFFF, 6)
            return "2001:db8:" + ":".join(f"{int(p):x}" for p in parts)
        o = self.rng.integers(1, 255, 4)
        return ".".join(str(int(x)) for x in o)

    def url(self) -> str:
        host = self.pick(self.words.link_hosts)
        path = "".join(self.pick(URL_PATH_ALPHABET) for _ in range(8))
        scheme = "https://" if self.rng.random() < 0.85 else "http://"
        # Some links are written without a scheme, as people type them.
        return f"{scheme}{host}/{path}" if self.rng.random() < 0.9 else f"www.example.org/{path}"

    def date_text(self) -> str:
        months = self.words.months
        month = int(self.rng.integers(1, 13))
        day = int(self.rng.integers(1, 29))
        style = int(self.rng.integers(5))
        if style == 0:
            return f"{months[month - 1]} {ordinal(day)}"
        if style == 1:
            return f"{month}/{day}/2026"
        if style == 2:
            return f"2026-{month:02d}-{day:02d}"
        if style == 3:
            return f"{day} {months[month - 1]} 2026"
        return f"{months[month - 1]} {day}, 2026"

    def address(self) -> str:
        number = int(self.rng.integers(10, 9999))
        street = self.pick(self.words.streets)
        return f"{number} {street} {self.pick(self.words.street_kinds)}"

    def student_number(self, student_id: int) -> str:
        return f"S{student_id + 4_000_000:07d}"


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th ... 11th, 12th, 13th ... 21st."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"
