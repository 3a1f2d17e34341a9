"""What every detector returns, and the small helpers they share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """An identifier found in a text: its category (a placeholder's name) and position."""

    category: str
    start: int
    end: int


def overlaps(spans: list[Span], start: int, end: int) -> bool:
    return any(s.start < end and start < s.end for s in spans)


def before(text: str, start: int, width: int = 40) -> str:
    """The lower-cased text just before `start`, for context cues ("call me at", "zip:")."""
    return text[max(0, start - width) : start].lower()
