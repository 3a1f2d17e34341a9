"""The people the institution knows by name, read from the restricted zone.

One reader serves both sides of de-identification: the scrubber's roster
(which names to remove from free text) and the residual scan's exact matches
(which full names and emails must never appear in silver).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from spanda_assets.lib.lakehouse import load_table_or_none

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


@dataclass(frozen=True)
class KnownPeople:
    full_names: list[str]
    emails: list[str]


def known_people(catalog: Catalog) -> KnownPeople:
    """Students' and instructors' full names and emails (bronze tables that exist)."""
    names: list[str] = []
    emails: list[str] = []
    students = load_table_or_none(catalog, "bronze", "students")
    if students is not None:
        t = students.scan(selected_fields=("given_name", "family_name", "email")).to_arrow()
        for given, family in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True):
            names.append(" ".join(p for p in (given, family) if p))
        emails += [e for e in t.column(2).to_pylist() if e]
    courses = load_table_or_none(catalog, "bronze", "courses")
    if courses is not None:
        t = courses.scan(selected_fields=("instructor_name", "instructor_email")).to_arrow()
        names += [n for n in t.column(0).to_pylist() if n]
        emails += [e for e in t.column(1).to_pylist() if e]
    return KnownPeople(full_names=[n for n in names if n], emails=emails)
