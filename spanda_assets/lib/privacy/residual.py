"""An independent scan for identifiers that survived de-identification.

Deliberately not the scrubber's code path: it never calls lib/privacy/scrub or
its detectors. Its own patterns (shapes only: no checksums, no libraries, no
context cues), another regex engine (Arrow's vectorized RE2 kernels over whole
columns), and exact matching of known full names and emails from the
restricted zone. If the scrubber has a blind spot, this scan is unlikely to
share it (docs/decisions/0024). It reports counts per category and the keys of
example rows, never the values themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.incremental import read_files
from spanda_assets.lib.privacy.identifiers import load_site_patterns
from spanda_assets.lib.privacy.people import known_people
from spanda_assets.lib.writes import unpublished_files

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.writes import Pending

# Column names that must never appear in a de-identified table.
FORBIDDEN_COLUMNS = frozenset(
    {
        "given_name",
        "family_name",
        "first_name",
        "last_name",
        "email",
        "phone",
        "ssn",
        "street_address",
        "city",
        "zip_code",
        "birth_date",
        "last_login_ip",
        "sourced_id",
        "student_id",
        "instructor_name",
        "instructor_email",
        "did",
    }
)

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATES = (
    rf"\b{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?\b|\b\d{{1,2}}(?:st|nd|rd|th)?(?: of)? {_MONTHS}\b"
    r"|\b\d{1,2}[/.]\d{1,2}[/.](?:\d{4}|\d{2})\b|\b\d{4}-\d{2}-\d{2}\b"
)
# Shapes only, written apart from the scrubber's detectors (lib/privacy/detectors): no
# checksums, no libraries, no context. A survivor needs only to look like an identifier
# to stop publication; docs/decisions/0024 says what each side uses.
SCAN_PATTERNS: dict[str, str] = {
    "EMAIL": r"(?i)[a-z0-9._%+-]+@[a-z0-9-]+\.[a-z0-9.-]*[a-z]",
    "URL": r"(?i)(?:https?://|www\.)[^\s]+|[a-z0-9-]+\.(?:com|org|edu|net)/",
    "IP": r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b|\b[0-9a-fA-F]{1,4}(?::[0-9a-fA-F]{0,4}){3,7}\b",
    "SSN": r"\b\d{3}-\d{2}-\d{4}\b",
    "PHONE": (
        r"\(\d{3}\)\s*\d{3}[-. ]\d{4}|\b\d{3}[-.]\d{3}[-.]\d{4}\b"
        r"|\+\d{1,3}[ .-]?\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}\b"
        # national numbers with a trunk zero: 020 7946 0958, 030 12345678, 01 42 68 53 00
        r"|\b0\d{1,4}[ .-]\d{2,4}[ .-]\d{2,4}(?:[ .-]\d{2,4})?\b|\b0\d{2,4} ?\d{6,8}\b"
    ),
    "IBAN": r"(?i)\b[a-z]{2}\d{2} ?[a-z0-9]{4}(?: ?[a-z0-9]{4}){2,6}(?: ?[a-z0-9]{1,3})?\b",
    "CARD": r"\b\d{4}[ -]\d{4}[ -]\d{4}[ -]\d{1,4}\b|\b\d{4}[ -]\d{6}[ -]\d{5}\b",
    # Inside free text only: a value that is a date and nothing else is a structured
    # column (a term's start, an enrollment's begin date), which the column policy rules.
    "DATE": rf"(?i)\S\s+(?:{_DATES})|(?:{_DATES})\s+\S",
    "ADDRESS": (
        r"\b\d{1,6} (?:[A-Z][a-z]+ ){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|"
        r"Boulevard|Blvd|Way|Court|Ct|Place)\b"
        r"|(?i)\b(?:apt|apartment|suite|flat)\.? ?#?\d+\b|(?i)\bp\.? ?o\.? box \d+"
        r"|(?i)\b[a-zäöüß]+(?:straße|strasse|weg|gasse|vej|gatan|katu|straat|laan) \d+\b"
        r"|(?i)\b(?:rue|via|calle|rua|ul\.) (?:\S+ ){1,4}\d+\b"
    ),
    "ID": r"\b[A-Z]\d{7}\b|\b\d{7,}\b",
}


@dataclass
class ScanReport:
    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    forbidden_columns: list[str] = field(default_factory=list)
    rows_scanned: int = 0

    @property
    def passed(self) -> bool:
        return not self.forbidden_columns and not any(self.counts.values())


def _names_pattern(names: Iterable[str]) -> str | None:
    escaped = sorted({re.escape(n) for n in names if n and " " in n}, key=len, reverse=True)
    if not escaped:
        return None
    return r"\b(?:" + "|".join(escaped) + r")\b"


class ResidualScanner:
    def __init__(
        self,
        full_names: Iterable[str] = (),
        emails: Iterable[str] = (),
        pseudonym_columns: Iterable[str] = (),
        extra_patterns: dict[str, str] | None = None,
    ) -> None:
        # Columns known to hold keyed pseudonyms may carry an identifier's name.
        self.forbidden = FORBIDDEN_COLUMNS - set(pseudonym_columns)
        # The institution's own identifier formats (lib/privacy/identifiers.py) join ours.
        self.patterns = {**SCAN_PATTERNS, **(extra_patterns or {})}
        names = _names_pattern(full_names)
        if names:
            self.patterns["NAME"] = names
        self.exact_emails = pa.array(sorted({e.lower() for e in emails if e}), pa.string())

    def scan(
        self, table: pa.Table, key: str, report: ScanReport | None = None, examples: int = 5
    ) -> ScanReport:
        report = report or ScanReport()
        report.rows_scanned += table.num_rows
        report.forbidden_columns = sorted(
            set(report.forbidden_columns) | (set(table.column_names) & self.forbidden)
        )
        keys = table.column(key)
        for name in table.column_names:
            col = table.column(name)
            if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
                continue
            for category, pattern in self.patterns.items():
                hits = pc.fill_null(pc.match_substring_regex(col, pattern), False)
                self._record(report, category, hits, keys, examples)
            if len(self.exact_emails):
                hits = pc.fill_null(pc.is_in(pc.utf8_lower(col), self.exact_emails), False)
                self._record(report, "EMAIL", hits, keys, examples)
        return report

    @staticmethod
    def _record(
        report: ScanReport,
        category: str,
        hits: pa.ChunkedArray,
        keys: pa.ChunkedArray,
        examples: int,
    ) -> None:
        n = pc.sum(hits).as_py() or 0
        report.counts[category] = report.counts.get(category, 0) + n
        if n:
            found = report.examples.setdefault(category, [])
            if len(found) < examples:
                found.extend(
                    str(k) for k in keys.filter(hits).slice(0, examples - len(found)).to_pylist()
                )


def scanner_for(catalog: Catalog) -> ResidualScanner:
    """A scanner that also knows every student's and instructor's full name and email,
    read in the restricted zone, for exact matching, and the institution's own
    identifier formats (SPANDA_IDENTIFIER_PATTERNS)."""
    people = known_people(catalog)
    return ResidualScanner(
        full_names=people.full_names,
        emails=people.emails,
        extra_patterns=load_site_patterns().scan_patterns(),
    )


def scan_pending(
    scanner: ResidualScanner,
    pending: Pending,
    key: str,
    batch_rows: int = 100_000,
    report: ScanReport | None = None,
) -> ScanReport:
    """Scan every row the audit branch holds that main lacks (whole new files), and the
    schema for identifying columns: the cost follows the unpublished rows, not the table."""
    report = report if report is not None else ScanReport()
    tasks = unpublished_files(pending.view, pending.after_sequence)
    for batch in read_files(pending.view, tasks, batch_rows):
        scanner.scan(pa.Table.from_batches([batch]), key, report)
    # Whatever was scanned, the schema itself must hold no identifying column.
    scanner.scan(pending.view.schema().as_arrow().empty_table(), key, report)
    return report
