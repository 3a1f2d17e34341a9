"""Identifiers with a fixed shape, found in one RE2 pass.

Emails, URLs, IP and MAC addresses, SSNs, dates, license plates, device serials,
account and record numbers, and five-digit ZIP codes. RE2 runs the whole
alternation as one automaton (one linear pass per text, about seven times
faster here than Python's backtracking `re` on the same patterns); it has no
look-arounds, so the rules that need one are checked on the candidates.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import re2

from spanda_assets.lib.privacy.detectors.base import Span

# English, German, French and Spanish month names; a month counts only beside a day
# or a year ("the March exam" stays).
_MONTH = (
    r"(?i:Jan(?:uary|uar|vier)?|Feb(?:ruary|ruar)?|f[ée]vrier|Mar(?:ch)?|M(?:ä|ae)rz|mars|"
    r"Apr(?:il)?|avril|May|Mai|June?|Juni|juin|July?|Juli|juillet|Aug(?:ust)?|ao[uû]t|"
    r"Sep(?:t(?:ember)?)?|septembre|Oct(?:ober)?|Okt(?:ober)?|octobre|Nov(?:ember)?|novembre|"
    r"Dec(?:ember)?|Dez(?:ember)?|d[ée]cembre|enero|febrero|marzo|abril|mayo|junio|julio|"
    r"agosto|septiembre|octubre|noviembre|diciembre)"
)
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?i:st|nd|rd|th|er)?"
_YEAR = r"(?:1[89]\d\d|2\d\d\d)"
_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2})?\b|\b)"
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_H = r"[0-9A-Fa-f]{1,4}"
# A cue word before a day-and-month without a year ("due 3/14", "on the 14th").
_CUE_WORDS = (
    r"on|by|due|until|till|before|after|from|since|born|moved\s+to|meet\s+me(?:\s+on)?|"
    r"(?:bday|b-day|birthday|dob|d\.o\.b\.?)(?:\s+is)?:?"
)
_CUE = rf"(?i:\b(?:{_CUE_WORDS})\s+)"

# Order matters where patterns could overlap: the first alternative that matches
# at a position wins, so the more specific shapes come first.
PATTERNS: list[tuple[str, str]] = [
    ("EMAIL", r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    (
        "URL",
        r"(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
        r"|\b(?:[a-z0-9-]+\.)+(?:com|org|net|edu|gov|io|co|uk|us|info)/[^\s<>\"']*[^\s<>\"'.,;:!?)\]]",
    ),
    ("SERIAL", r"\b(?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}\b"),
    (
        "IP",
        rf"\b{_OCTET}(?:\.{_OCTET}){{3}}\b"
        rf"|\b(?:{_H}:){{3,7}}{_H}\b|\b(?:{_H}:){{1,6}}:(?:{_H}(?::{_H})*)?",
    ),
    ("SSN", r"\b\d{3}[- ]\d{2}[- ]\d{4}\b"),
    (
        "DATE",
        rf"\b{_YEAR}[-/.]\d{{1,2}}[-/.]\d{{1,2}}{_TIME}"
        rf"|\b\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:{_YEAR}|\d{{2}}){_TIME}"
        rf"|\b{_DAY}[-\s]{_MONTH}[-\s](?:{_YEAR}|\d{{2}})\b"
        rf"|\b{_MONTH}\.?[-\s]+{_DAY}\b(?:,?[-\s]+{_YEAR}\b)?"
        rf"|\b{_DAY}\.?\s+(?:of\s+|de\s+)?{_MONTH}\b\.?(?:,?\s+(?:de\s+)?{_YEAR}\b)?"
        rf"|\b{_MONTH}\.?,?\s+{_YEAR}\b"
        rf"|{_CUE}(?:the\s+)?(?:[12]\d|3[01]|0?[1-9])(?i:st|nd|rd|th)\b(?:\s+of\s+{_MONTH}\b)?"
        rf"|{_CUE}\d{{1,2}}/\d{{1,2}}(?:/(?:{_YEAR}|\d{{2}}))?\b"
        # "moved to 14.3.", "DOB 14 03 2004": a day and month with dots, or spaced with a year
        rf"|{_CUE}\d{{1,2}}\.\d{{1,2}}\.\B"
        rf"|{_CUE}\d{{1,2}} \d{{1,2}} {_YEAR}\b",
    ),
    (
        "SERIAL",
        r"(?i:\b(?:serial(?:\s+(?:number|no\.?))?|S/N|IMEI|device\s+id)\s*[:#]?\s*)"
        r"[A-Z0-9][A-Z0-9-]{5,}\b",
    ),
    (
        "PLATE",
        r"(?i:\b(?:license|licence|plate|tag)\s+(?:plate\s+)?(?:number|no\.?|#)?\s*[:#]?\s*)"
        r"[A-Z0-9]{1,4}[- ]?[A-Z0-9]{2,4}\b"
        r"|\b[A-Z0-9]{2,4}-[A-Z0-9]{3,4}\b",
    ),
    (
        "ID",
        r"\b[A-Z]{1,3}-?\d{5,}\b|\b\d{6,}\b"
        r"|(?i:\b(?:acct|account)\s*(?:no\.?|#|number)?\s*[:#]?\s*)\d[\d-]{3,}\d\b",
    ),
    ("ZIP", r"\b\d{5}(?:-\d{4})?\b"),
]

_COMBINED = re2.compile("|".join(f"(?P<{cat}{i}>{pat})" for i, (cat, pat) in enumerate(PATTERNS)))
_GROUP_CATEGORY = {f"{cat}{i}": cat for i, (cat, _) in enumerate(PATTERNS)}
_PLATE_SHAPE = re.compile(r"^[A-Z0-9]{2,4}-[A-Z0-9]{3,4}$")
_NUMERIC_DATE = re.compile(r"^(\d{1,4})[-/.](\d{1,2})(?:[-/.](\d{1,4}))?")
_CUED = re.compile(rf"^(?:{_CUE_WORDS})\s+", re.IGNORECASE)


def _valid_ssn(text: str) -> bool:
    # SSA never issues area 000, 666 or 9xx, group 00 or serial 0000.
    area, group, serial = text[:3], text[4:6], text[7:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _valid_plate(text: str) -> bool:
    # A bare "AB-123" shape is a plate only if it mixes letters and digits.
    if not _PLATE_SHAPE.match(text):
        return True  # introduced by "license plate" / "tag": context decided
    return any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def _valid_ip(text: str) -> bool:
    return text.count(":") != 2 or "::" in text  # "10:30:15" is a time, not IPv6


def _valid_date(text: str) -> bool:
    m = _NUMERIC_DATE.match(text)
    if m is None:
        return True  # month names: the pattern decided
    a, b, c = (int(g or 1) for g in m.groups())
    if len(m.group(1)) == 4:  # year first: 2026-03-14
        return 1 <= b <= 12 and 1 <= c <= 31
    # day and month in either order: 3/14/2026 (US) and 14.03.2026 (most of the world)
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= a <= 31 and 1 <= b <= 12)


_VALID: dict[str, Callable[[str], bool]] = {
    "SSN": _valid_ssn,
    "PLATE": _valid_plate,
    "IP": _valid_ip,
    "DATE": _valid_date,
}


def shape_spans(text: str) -> list[Span]:
    """Every shaped identifier in `text` (one RE2 pass, then the candidates' checks)."""
    found: list[Span] = []
    for m in _COMBINED.finditer(text):
        category = _GROUP_CATEGORY[m.lastgroup or ""]
        value = m.group(0)
        start = m.start()
        if category == "DATE" and (cue := _CUED.match(value)):
            # "due 3/14", "on the 14th": the cue word stays in the text
            start += cue.end()
            value = value[cue.end() :]
        check = _VALID.get(category)
        if check is None or check(value):
            found.append(Span(category, start, m.end()))
    return found
