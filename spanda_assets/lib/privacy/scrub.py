"""Free-text scrubbing: find identifiers in text and replace them with typed placeholders.

The detectors live in lib/privacy/detectors, one module per kind of identifier:

* shaped identifiers in one RE2 pass (emails, URLs, IPs, SSNs, dates, plates, serials,
  record numbers, ZIP codes);
* IBANs and payment cards, accepted only when their check digits agree (schwifty,
  python-stdnum);
* phone and fax numbers in any region's format (phonenumbers);
* street addresses and postal codes, international formats included (usaddress
  for what follows a street);
* people's names: the roster of people the institution knows, and names beyond
  it from given-name counts, word frequencies and context cues;
* optionally, Presidio's NER with a spaCy model (SPANDA_NER=presidio).

`find_spans` returns what was found (category, start, end) so the benchmark can
score precision and recall against labeled corpora; `scrub` replaces those
spans. Where two detectors claim overlapping text, the more specific one wins
(`PRIORITY`): an IBAN's digits are not a phone number, a date is not a ZIP code.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import re2

from spanda_assets.lib.privacy.detectors.addresses import address_spans, postal_spans
from spanda_assets.lib.privacy.detectors.base import Span, overlaps
from spanda_assets.lib.privacy.detectors.finance import card_spans, iban_spans
from spanda_assets.lib.privacy.detectors.names import name_spans
from spanda_assets.lib.privacy.detectors.ner import ner_spans
from spanda_assets.lib.privacy.detectors.patterns import shape_spans
from spanda_assets.lib.privacy.detectors.phones import phone_spans
from spanda_assets.lib.privacy.detectors.roster import Roster, roster_spans

__all__ = [
    "PLACEHOLDERS",
    "SCRUBBER_VERSION",
    "Roster",
    "Span",
    "find_spans",
    "replace_spans",
    "scrub",
]

# Part of silver's rules fingerprint: rows staged but not yet published are derived
# again when it changes. Raise it with any change that alters what the detectors find.
SCRUBBER_VERSION = "2026.11.29"

PLACEHOLDERS = {
    "NAME": "[NAME]",
    "EMAIL": "[EMAIL]",
    "PHONE": "[PHONE]",
    "SSN": "[SSN]",
    "ID": "[ID]",
    "IBAN": "[IBAN]",
    "CARD": "[CARD]",
    "URL": "[URL]",
    "IP": "[IP]",
    "DATE": "[DATE]",
    "ADDRESS": "[ADDRESS]",
    "ZIP": "[ZIP]",
    "PLATE": "[PLATE]",
    "SERIAL": "[SERIAL]",
}

# Most specific first: a span overlapping one of an earlier category is dropped.
PRIORITY = (
    "EMAIL",
    "URL",
    "IBAN",
    "CARD",
    "SSN",
    "IP",
    "SERIAL",
    "DATE",
    "PHONE",
    "ADDRESS",
    "PLATE",
    "ZIP",
    "ID",
    "NAME",
)
_RANK = {category: i for i, category in enumerate(PRIORITY)}


@cache
def _site_automaton(patterns: tuple[tuple[str, str], ...]) -> tuple[Any, dict[str, str]]:
    """One RE2 automaton for an institution's declared identifier formats."""
    groups = {f"SITE{i}": category for i, (category, _) in enumerate(patterns)}
    combined = "|".join(f"(?P<SITE{i}>{pat})" for i, (_, pat) in enumerate(patterns))
    return re2.compile(combined), groups


def find_spans(
    text: str, roster: Roster | None = None, site: tuple[tuple[str, str], ...] = ()
) -> list[Span]:
    """Every identifier found in `text`, without overlaps, in order.

    `site`: (category, RE2 pattern) of the institution's own identifier formats
    (lib/privacy/identifiers.py); they are found first.
    """
    spans: list[Span] = []
    if site:
        automaton, groups = _site_automaton(site)
        spans += [
            Span(groups[m.lastgroup or ""], m.start(), m.end()) for m in automaton.finditer(text)
        ]
    candidates = [
        *shape_spans(text),
        *iban_spans(text),
        *card_spans(text),
        *phone_spans(text),
        *address_spans(text),
        *postal_spans(text),
        *name_spans(text),
        *ner_spans(text),
    ]
    candidates.sort(key=lambda s: (_RANK[s.category], s.start, s.start - s.end))
    for span in candidates:
        if not overlaps(spans, span.start, span.end):
            spans.append(span)
        elif span.category == "ADDRESS":
            # An address grown over several lines keeps its parts around a more specific
            # identifier inside it (a phone number, a postal code taken by a cue).
            spans += _address_pieces(text, span, spans)
    if roster is not None and roster.tokens:
        spans.extend(roster_spans(text, roster, spans))
    spans.sort(key=lambda s: s.start)
    return spans


def _address_pieces(text: str, span: Span, taken: list[Span]) -> list[Span]:
    """The parts of an address candidate around identifiers already taken, where a part
    still holds a number and a word."""
    bounds: list[tuple[int, int]] = []
    start = span.start
    for other in sorted(taken, key=lambda s: s.start):
        if other.end <= start or other.start >= span.end:
            continue
        bounds.append((start, other.start))
        start = max(start, other.end)
    bounds.append((start, span.end))
    pieces: list[Span] = []
    for a, b in bounds:
        part = text[a:b]
        if not (any(c.isdigit() for c in part) and any(c.isalpha() for c in part)):
            continue
        first = a + len(part) - len(part.lstrip(" ,\n>"))
        last = b - (len(part) - len(part.rstrip(" ,\n>")))
        if last - first >= 6:
            pieces.append(Span("ADDRESS", first, last))
    return pieces


def replace_spans(text: str, spans: list[Span]) -> str:
    out: list[str] = []
    pos = 0
    for s in spans:
        if s.start < pos:
            continue
        out.append(text[pos : s.start])
        out.append(PLACEHOLDERS[s.category])
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def scrub(
    text: str | None, roster: Roster | None = None, site: tuple[tuple[str, str], ...] = ()
) -> str | None:
    """`text` with every identifier replaced by its typed placeholder."""
    if not text:
        return text
    return replace_spans(text, find_spans(text, roster, site))
