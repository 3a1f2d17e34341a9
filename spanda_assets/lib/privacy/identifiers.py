"""Identifier formats of one institution, declared as data (SPANDA_IDENTIFIER_PATTERNS).

Every district has its own: student numbers like `SN-1234`, badge ids, a
learning platform's user handles. They are too short or too local for the
scrubber's general patterns. A YAML file lists them:

    identifiers:
      - name: district_student_number
        pattern: '\\bSN-\\d{4}\\b'   # RE2 syntax
        category: ID                 # the placeholder the scrubber writes: [ID]
        scrub: true                  # false: only the residual scan looks for it

The residual scan always looks for every entry, so a format can be declared
first as a tripwire (`scrub: false`) and then scrubbed. Changing the scrubbed
set changes the rules' fingerprint: silver re-derives its unpublished rows
with the new rules, so a failed audit is fixed by declaring what it found.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import re2
import yaml

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.privacy.scrub import PLACEHOLDERS

ENV_IDENTIFIER_PATTERNS = "SPANDA_IDENTIFIER_PATTERNS"


@dataclass(frozen=True)
class SiteIdentifier:
    name: str
    pattern: str
    category: str
    scrub: bool


@dataclass(frozen=True)
class SitePatterns:
    identifiers: tuple[SiteIdentifier, ...] = ()

    @property
    def scrubbed(self) -> tuple[SiteIdentifier, ...]:
        return tuple(i for i in self.identifiers if i.scrub)

    def fingerprint(self) -> str:
        """Identity of what the scrubber removes (a change re-derives unpublished rows)."""
        doc = [[i.name, i.pattern, i.category] for i in self.scrubbed]
        return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]

    def scan_patterns(self) -> dict[str, str]:
        """Every declared format, for the residual scan (by upper-case name)."""
        return {i.name.upper(): i.pattern for i in self.identifiers}


def parse(text: str, origin: str) -> SitePatterns:
    doc = yaml.safe_load(text) or {}
    entries = doc.get("identifiers") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{origin}: expected a mapping with a list under 'identifiers'")
    out: list[SiteIdentifier] = []
    for i, e in enumerate(entries):
        where = f"{origin}: identifiers[{i}]"
        if not isinstance(e, dict) or not e.get("name") or not e.get("pattern"):
            raise ConfigError(f"{where}: each entry needs a name and a pattern")
        category = str(e.get("category", "ID"))
        if category not in PLACEHOLDERS:
            raise ConfigError(
                f"{where} ({e['name']}): category {category!r} is not one of "
                f"{', '.join(sorted(PLACEHOLDERS))}"
            )
        try:
            re2.compile(str(e["pattern"]))
        except re2.error as exc:
            raise ConfigError(f"{where} ({e['name']}): pattern is not valid RE2: {exc}") from exc
        out.append(
            SiteIdentifier(str(e["name"]), str(e["pattern"]), category, bool(e.get("scrub")))
        )
    return SitePatterns(tuple(out))


@cache
def _load(path: str, mtime: float) -> SitePatterns:
    return parse(Path(path).read_text(encoding="utf-8"), path)


def load_site_patterns() -> SitePatterns:
    """The file SPANDA_IDENTIFIER_PATTERNS names, or none."""
    path = os.environ.get(ENV_IDENTIFIER_PATTERNS)
    if not path:
        return SitePatterns()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{ENV_IDENTIFIER_PATTERNS}={path}: no such file")
    return _load(str(p.resolve()), p.stat().st_mtime)
