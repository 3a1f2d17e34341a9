"""Phone and fax numbers in any region's format, through libphonenumber's matcher.

`phonenumbers.PhoneNumberMatcher` finds numbers written the ways people write
them (international prefixes, trunk zeros in parentheses, dots, extensions)
for each region in `regions()`. A number that is valid in some region is taken
as it is. A number that is only *possible* (the right length, but not in a
range the region has assigned: typical of made-up and of newly assigned
numbers) is taken when the text says it is a phone ("call me on", "Fax:",
"... office") or it is written with an international prefix.
"""

from __future__ import annotations

import os
import re
from functools import cache

import phonenumbers
import re2
from phonenumbers import Leniency, PhoneNumberMatcher

from spanda_assets.lib.privacy.detectors.base import Span, before

ENV_PHONE_REGIONS = "SPANDA_PHONE_REGIONS"
# The regions whose national formats (no international prefix) are recognized.
DEFAULT_REGIONS = ("US", "GB", "DE", "FR", "IN")

# Seven digits close together: a post without them has no phone number, and the
# matcher (pure Python) is not run at all.
_GATE = re2.compile(r"\d(?:[\s().\-/]{0,3}\d){6}")
# The gate admits a post by seven digits close together; a shorter match inside it
# (possible in the matcher's lenient mode) is a postal code or a room number. The few
# countries with shorter numbers (Niue, the Falklands) are left to their cues.
_MIN_DIGITS = 7
_CUE_BEFORE = re.compile(
    r"\b(?:phone|tel|telephone|mobile|cell|fax|call|text|whatsapp|sms|desk|office|reach|ring|"
    r"dial|number|contact|answering|messages to|no|ph|m|t|f)\b[\s\S]{0,12}$"
)
# ZIP+4 ("02139-4307") and what follows "zip code" are postal codes, whatever else they
# could dial in Germany.
_POSTAL = re.compile(r"^\d{5}-\d{4}$")
_POSTAL_CUE = re.compile(r"\b(?:zip|zip\s*code|postal\s*code|post\s*code|postcode|plz)\W*$")
# Numbers that a post says are something else.
_OTHER_CUE = re.compile(
    r"\b(?:account|acct|card|iban|order|invoice|ticket|ref|reference|isbn|id|student)\b"
    r"[\s\S]{0,8}$"
)
_CUE_AFTER = re.compile(r"^\W{0,3}(?:office|home|mobile|cell|fax|work|desk|ext)\b", re.IGNORECASE)


@cache
def regions() -> tuple[str, ...]:
    """SPANDA_PHONE_REGIONS (comma-separated ISO 3166 codes) or the default set."""
    raw = os.environ.get(ENV_PHONE_REGIONS, "")
    chosen = tuple(r.strip().upper() for r in raw.split(",") if r.strip())
    return chosen or DEFAULT_REGIONS


def _phone_shaped(raw: str) -> bool:
    """Written the way only phone numbers are: an international prefix, an area code in
    parentheses, or ten digits or more in groups."""
    if raw[0] in "+(":
        return True
    digits = sum(c.isdigit() for c in raw)
    return digits >= 10 and any(not c.isdigit() for c in raw)


def _cued(text: str, start: int, end: int) -> bool:
    return bool(_CUE_BEFORE.search(before(text, start, 30))) or bool(
        _CUE_AFTER.match(text[end : end + 12])
    )


def _valid(raw: str, number: phonenumbers.PhoneNumber, region: str) -> bool:
    """Valid, and written as that region writes its numbers: a national number
    where the region dials a trunk prefix ("0" in GB, DE, FR, IN) starts with it,
    so "541 6343" is not taken for a number in Osnabrück."""
    if not phonenumbers.is_valid_number(number):
        return False
    if raw.startswith("+"):
        return True
    trunk = phonenumbers.ndd_prefix_for_region(region, True)
    return not trunk or trunk == "1" or raw.lstrip("(").startswith(trunk)


def phone_spans(text: str) -> list[Span]:
    if not _GATE.search(text):
        return []
    found: dict[tuple[int, int], bool] = {}
    for region in regions():
        for m in PhoneNumberMatcher(text, region, leniency=Leniency.POSSIBLE):
            key = (m.start, m.end)
            if not found.get(key):
                found[key] = _valid(m.raw_string, m.number, region)
    spans: list[Span] = []
    for (start, end), valid in sorted(found.items()):
        if (start and text[start - 1].isalnum()) or (end < len(text) and text[end].isalpha()):
            continue  # digits inside a token: "S4000187" is a student number
        if sum(c.isdigit() for c in text[start:end]) < _MIN_DIGITS:
            continue  # "Aalborg NO 9100": a short code after a cue word is a postal code
        left = before(text, start, 15)
        if _POSTAL.match(text[start:end]) or _POSTAL_CUE.search(left) or _OTHER_CUE.search(left):
            continue
        if valid or _phone_shaped(text[start:end]) or _cued(text, start, end):
            spans.append(Span("PHONE", start, end))
    return spans
