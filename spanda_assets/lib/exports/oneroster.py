"""A 1EdTech OneRoster 1.1 CSV bulk package from the de-identified gold tables.

Read: gold.validated_enrollments and gold.validated_assessments (main snapshots, one
data file at a time). Written: `manifest.csv` and the files the data supports, every
one declared `bulk` (the package is the whole roster, not a change set):

| file              | one row per                                  | sourcedId                  |
|-------------------|----------------------------------------------|----------------------------|
| orgs              | the publisher (the school every class is at) | org-<publisher slug>       |
| academicSessions  | calendar year seen in the data (schoolYear)  | year-<YYYY>                |
| courses           | course_id                                    | course-<course_id>         |
| classes           | course_id (one class per course)             | class-<course_id>          |
| users             | subject_id (enrolled, or with a result)      | the subject_id pseudonym   |
| enrollments       | validated_enrollments row                    | enrollment_id              |
| categories        | one category, "Assessment"                   | category-assessment        |
| lineItems         | (course_id, assessment_name, year)           | li-<20 hex of their hash>  |
| results           | validated_assessments row                    | result_id                  |

Identifiers are gold's keyed pseudonyms and course numbers; nothing comes from bronze.
The personal fields of users (username, userIds, givenName, familyName, middleName,
identifier, email, sms, phone, password) are left **blank**, never filled with the
pseudonym: the pseudonym is already the sourcedId, and the platform's validator
(`schemas/submission_rules.yaml`, identifier_columns) refuses any value in those
columns of a de-identified package. The 1.1 spec asks for a username, givenName and
familyName; a de-identified roster cannot give them, and says so by leaving them empty.
Course and class titles are "Course <n>": gold keeps no course title.

`status` and `dateLastModified` are blank in every file (bulk). Years become dates as
lib/exports/common.py says: a start or a point in time is YYYY-01-01 (beginDate,
startDate, assignDate, scoreDate), an end is YYYY-12-31 (endDate, dueDate); a year
gold does not know stays blank. Roles: gold's student and teacher are the same in
users and enrollments; an aide is `aide` in users and, since enrollments allow only
administrator, proctor, student and teacher, a non-primary `teacher` (primary=false)
in enrollments. A user enrolled in several roles is listed with the first of student,
teacher, aide. lineItems are per year because a gradebook column belongs to one
offering; their range is 0 to the largest max_score seen.

Order and memory: enrollments and results are written in the snapshot's scan order
(fixed for a snapshot), everything else sorted by key, so the same snapshots always
give the same bytes. Users go through an external sort (lib/exports/spill.py: memory
bounded by its run size, not by the number of students); courses, years and line items
are held in memory, bounded by the catalog of courses and assessments, not by rows.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.exports.common import (
    ASSESSMENT_COLUMNS,
    CsvFile,
    ExportError,
    number_text,
    require_columns,
    rows_of,
    year_end,
    year_start,
)
from spanda_assets.lib.exports.spill import SortedKeys

ENROLLMENTS = "gold.validated_enrollments"
ASSESSMENTS = "gold.validated_assessments"
ENROLLMENT_COLUMNS = (
    "enrollment_id",
    "subject_id",
    "course_id",
    "role",
    "begin_date_year",
    "end_date_year",
)
SOURCES: dict[str, tuple[str, ...]] = {
    ENROLLMENTS: ENROLLMENT_COLUMNS,
    ASSESSMENTS: ASSESSMENT_COLUMNS,
}

# The 1.1 CSV column order of every file written (sourcedId, status, dateLastModified first).
HEADERS: dict[str, tuple[str, ...]] = {
    "orgs": (
        "sourcedId",
        "status",
        "dateLastModified",
        "name",
        "type",
        "identifier",
        "parentSourcedId",
    ),
    "academicSessions": (
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "type",
        "startDate",
        "endDate",
        "parentSourcedId",
        "schoolYear",
    ),
    "courses": (
        "sourcedId",
        "status",
        "dateLastModified",
        "schoolYearSourcedId",
        "title",
        "courseCode",
        "grades",
        "orgSourcedId",
        "subjects",
        "subjectCodes",
    ),
    "classes": (
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "grades",
        "courseSourcedId",
        "classCode",
        "classType",
        "location",
        "schoolSourcedId",
        "termSourcedIds",
        "subjects",
        "subjectCodes",
        "periods",
    ),
    "users": (
        "sourcedId",
        "status",
        "dateLastModified",
        "enabledUser",
        "orgSourcedIds",
        "role",
        "username",
        "userIds",
        "givenName",
        "familyName",
        "middleName",
        "identifier",
        "email",
        "sms",
        "phone",
        "agentSourcedIds",
        "grades",
        "password",
    ),
    "enrollments": (
        "sourcedId",
        "status",
        "dateLastModified",
        "classSourcedId",
        "schoolSourcedId",
        "userSourcedId",
        "role",
        "primary",
        "beginDate",
        "endDate",
    ),
    "categories": ("sourcedId", "status", "dateLastModified", "title"),
    "lineItems": (
        "sourcedId",
        "status",
        "dateLastModified",
        "title",
        "description",
        "assignDate",
        "dueDate",
        "classSourcedId",
        "categorySourcedId",
        "gradingPeriodSourcedId",
        "resultValueMin",
        "resultValueMax",
    ),
    "results": (
        "sourcedId",
        "status",
        "dateLastModified",
        "lineItemSourcedId",
        "studentSourcedId",
        "scoreStatus",
        "score",
        "scoreDate",
        "comment",
    ),
}
# Every file the 1.1 manifest names; those not written are declared absent.
ALL_FILES = (
    "academicSessions",
    "categories",
    "classResources",
    "classes",
    "courseResources",
    "courses",
    "demographics",
    "enrollments",
    "lineItems",
    "orgs",
    "resources",
    "results",
    "users",
)
# gold role -> (users.role, enrollments.role, enrollments.primary, rank for users.role)
ROLES = {
    "student": ("student", "student", "", "0"),
    "teacher": ("teacher", "teacher", "", "1"),
    "aide": ("aide", "teacher", "false", "2"),
}
USER_ROLE_BY_RANK = {rank: user_role for user_role, _, _, rank in ROLES.values()}
STUDENT_RANK = ROLES["student"][3]
CATEGORY_ID = "category-assessment"
SEP = "\x1f"  # between a pseudonym and its role rank in the users' sort key


@dataclass(frozen=True)
class Org:
    """The one organisation of the package: the publisher of the datasets."""

    name: str

    @property
    def sourced_id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-")
        return f"org-{slug or 'publisher'}"


def course_id(course: int) -> str:
    return f"course-{int(course)}"


def class_id(course: int) -> str:
    return f"class-{int(course)}"


def session_id(year: int) -> str:
    return f"year-{int(year):04d}"


def line_item_id(course: int, name: str, year: int | None) -> str:
    """A stable id for a gradebook column; hashed because the name is free text."""
    raw = f"{int(course)}{SEP}{name}{SEP}{'' if year is None else int(year)}"
    return "li-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


@dataclass
class _LineItem:
    course: int
    name: str
    year: int | None
    max_score: Any


class _Roster:
    """What the streamed rows leave behind for the files written after them."""

    def __init__(self, spill: Path, run_keys: int) -> None:
        self.course_years: dict[int, set[int]] = {}
        self.line_items: dict[str, _LineItem] = {}
        self.users = SortedKeys(spill, run_keys)
        self.skipped: dict[str, int] = {}

    def course(self, course: int, *years: int | None) -> None:
        seen = self.course_years.setdefault(int(course), set())
        seen.update(int(y) for y in years if y is not None)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def write_oneroster(
    enrollments: Iterable[pa.RecordBatch],
    assessments: Iterable[pa.RecordBatch],
    out: Path,
    spill: Path,
    org: Org,
    run_keys: int = 1_000_000,
) -> tuple[dict[str, int], dict[str, int]]:
    """Write the package into `out` (an empty folder); `spill` holds the users' sort runs.

    Returns (rows per file written, rows skipped per reason). A row without a
    pseudonym or a course cannot be placed in a roster and is skipped (gold's rules
    make that impossible today; the count says if it ever happens)."""
    roster = _Roster(spill, run_keys)
    rows: dict[str, int] = {}
    with CsvFile(out / "enrollments.csv", HEADERS["enrollments"]) as f:
        _enrollments(enrollments, f, roster, org)
        rows["enrollments"] = f.rows
    with CsvFile(out / "results.csv", HEADERS["results"]) as f:
        _results(assessments, f, roster)
        rows["results"] = f.rows
    rows["orgs"] = _one_file(out, "orgs", [[org.sourced_id, "", "", org.name, "school", "", ""]])
    years = sorted({y for ys in roster.course_years.values() for y in ys})
    rows["academicSessions"] = _one_file(
        out,
        "academicSessions",
        (
            [session_id(y), "", "", str(y), "schoolYear", year_start(y), year_end(y), "", str(y)]
            for y in years
        ),
    )
    courses = sorted(roster.course_years)
    rows["courses"] = _one_file(
        out,
        "courses",
        (
            [course_id(c), "", "", "", f"Course {c}", str(c), "", org.sourced_id, "", ""]
            for c in courses
        ),
    )
    rows["classes"] = _one_file(
        out,
        "classes",
        (
            [
                class_id(c),
                "",
                "",
                f"Course {c}",
                "",
                course_id(c),
                str(c),
                "scheduled",
                "",
                org.sourced_id,
                ",".join(session_id(y) for y in sorted(roster.course_years[c])),
                "",
                "",
                "",
            ]
            for c in courses
        ),
    )
    rows["users"] = _one_file(out, "users", _users(roster.users, org))
    rows["categories"] = _one_file(out, "categories", [[CATEGORY_ID, "", "", "Assessment"]])
    rows["lineItems"] = _one_file(
        out,
        "lineItems",
        (
            [
                li,
                "",
                "",
                item.name,
                "",
                year_start(item.year),
                year_end(item.year),
                class_id(item.course),
                CATEGORY_ID,
                "" if item.year is None else session_id(item.year),
                "0",
                number_text(item.max_score),
            ]
            for li, item in sorted(roster.line_items.items())
        ),
    )
    _manifest(out, org, written=set(rows))
    return dict(sorted(rows.items())), dict(sorted(roster.skipped.items()))


def _enrollments(batches: Iterable[pa.RecordBatch], f: CsvFile, roster: _Roster, org: Org) -> None:
    for batch in batches:
        require_columns(batch.schema, ENROLLMENT_COLUMNS, ENROLLMENTS)
        keys: list[str] = []
        for sid, subject, course, role, begin, end in rows_of(batch, ENROLLMENT_COLUMNS):
            if sid is None or subject is None or course is None:
                roster.skip("enrollment without id, subject or course")
                continue
            if role not in ROLES:
                raise ExportError(
                    f"{ENROLLMENTS}: role {role!r} has no OneRoster mapping (known: "
                    f"{', '.join(ROLES)}); add it to ROLES in lib/exports/oneroster.py"
                )
            _, enrollment_role, primary, rank = ROLES[role]
            f.row(
                [
                    sid,
                    "",
                    "",
                    class_id(course),
                    org.sourced_id,
                    subject,
                    enrollment_role,
                    primary,
                    year_start(begin),
                    year_end(end),
                ]
            )
            roster.course(course, begin, end)
            keys.append(f"{subject}{SEP}{rank}")
        roster.users.add(pa.array(keys, pa.large_string()))


def _results(batches: Iterable[pa.RecordBatch], f: CsvFile, roster: _Roster) -> None:
    for batch in batches:
        require_columns(batch.schema, ASSESSMENT_COLUMNS, ASSESSMENTS)
        for sid, subject, course, name, score, max_score, year, attempt in rows_of(
            batch, ASSESSMENT_COLUMNS
        ):
            if sid is None or subject is None or course is None or not name:
                roster.skip("result without id, subject, course or assessment name")
                continue
            li = line_item_id(course, name, year)
            item = roster.line_items.get(li)
            if item is None:
                roster.line_items[li] = _LineItem(int(course), name, year, max_score)
            elif max_score is not None and (item.max_score is None or max_score > item.max_score):
                roster.line_items[li] = _LineItem(item.course, item.name, item.year, max_score)
            f.row(
                [
                    sid,
                    "",
                    "",
                    li,
                    subject,
                    "fully graded",
                    number_text(score),
                    year_start(year),
                    "" if attempt is None else f"attempt {int(attempt)}",
                ]
            )
            roster.course(course, year)
        subjects = pc.cast(batch.column("subject_id").drop_null(), pa.large_string())
        suffix = pa.scalar(f"{SEP}{STUDENT_RANK}", pa.large_string())
        roster.users.add(
            pc.binary_join_element_wise(subjects, suffix, pa.scalar("", pa.large_string()))
        )


def _users(keys: SortedKeys, org: Org) -> Iterable[list[str]]:
    """One row per pseudonym: the sorted keys are `<pseudonym><SEP><rank>`, so a user's
    first key carries the role that ranks first."""
    previous: str | None = None
    for key in keys.sorted_unique():
        subject, _, rank = key.rpartition(SEP)
        if subject == previous:
            continue
        previous = subject
        yield [subject, "", "", "true", org.sourced_id, USER_ROLE_BY_RANK[rank]] + [""] * 12


def _one_file(out: Path, name: str, rows: Iterable[list[str]]) -> int:
    with CsvFile(out / f"{name}.csv", HEADERS[name]) as f:
        for row in rows:
            f.row(row)
        return f.rows


def _manifest(out: Path, org: Org, written: set[str]) -> None:
    with CsvFile(out / "manifest.csv", ("propertyName", "value")) as f:
        f.row(["manifest.version", "1.0"])
        f.row(["oneroster.version", "1.1"])
        for name in ALL_FILES:
            f.row([f"file.{name}", "bulk" if name in written else "absent"])
        f.row(["source.systemName", "Spanda"])
        f.row(["source.systemCode", org.sourced_id])
