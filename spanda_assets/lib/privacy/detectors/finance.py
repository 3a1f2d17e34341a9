"""Bank accounts (IBAN) and payment cards, accepted only when their check digits agree.

A candidate is found by its shape (RE2); `schwifty` then checks an IBAN's
country, length, BBAN format and ISO 7064 check digits, and `python-stdnum`
checks a card number's Luhn digit. Checksums are what let these detectors
take grouped digits ("DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111")
without flagging every long number in a post.
"""

from __future__ import annotations

import re2
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from stdnum import luhn

from spanda_assets.lib.privacy.detectors.base import Span

# Two letters, two check digits, then 11 to 30 letters or digits, possibly in groups.
_IBAN = re2.compile(r"\b[A-Za-z]{2}\d{2}(?:[ -]?[A-Za-z0-9]){11,30}")
# 12 to 19 digits, together or in the groups cards are printed in (4-4-4-4[-3], 4-6-5):
# other groupings are phone numbers far more often than cards.
_CARD = re2.compile(
    r"\b(?:\d{12,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,3})?|\d{4}[ -]\d{6}[ -]\d{4,5})\b"
)


def _iban_end(text: str, start: int, candidate: str) -> int | None:
    """End of the valid IBAN starting at `start`, or None.

    The shape may run into the next word ("GB82 WEST ... 32 please"): the
    country's IBAN length says where it stops.
    """
    compact = "".join(c for c in candidate if c.isalnum()).upper()
    try:
        length = IBAN(compact, allow_invalid=True).spec.iban_length
    except (SchwiftyException, KeyError, ValueError):
        return None
    if len(compact) < length:
        return None
    try:
        IBAN(compact[:length])
    except SchwiftyException:
        return None
    seen = 0
    for i, c in enumerate(candidate):
        if c.isalnum():
            seen += 1
            if seen == length:
                return start + i + 1
    return None


def iban_spans(text: str) -> list[Span]:
    found: list[Span] = []
    for m in _IBAN.finditer(text):
        end = _iban_end(text, m.start(), m.group(0))
        if end is not None:
            found.append(Span("IBAN", m.start(), end))
    return found


def card_spans(text: str) -> list[Span]:
    found: list[Span] = []
    for m in _CARD.finditer(text):
        digits = "".join(c for c in m.group(0) if c.isdigit())
        if luhn.is_valid(digits) and len(set(digits)) > 1:
            found.append(Span("CARD", m.start(), m.end()))
    return found
