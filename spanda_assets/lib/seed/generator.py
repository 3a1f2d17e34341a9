"""Rows of the demo tables, generated from a seed: no database, no files.

Each function takes the run's `Draws` and returns plain row dicts keyed by the
column names of `spanda_assets.lib.domain`. What reads the operational
database or writes anything lives in `writer.py`; forum posts and their ground
truth live in `posts.py`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from spanda_assets.lib.seed.draws import Draws

BASE_TIME = dt.datetime(2026, 9, 1, 8, 0, 0)
CHUNK = 50_000  # rows generated (and inserted) at a time, so the large preset fits in memory
RESTRICTED_SHARE = 0.08
# Consent purposes the pipeline knows, with the share of students who give each.
CONSENT_SHARES = (("research", 0.88), ("model_training", 0.75))
PURPOSES = tuple(p for p, _ in CONSENT_SHARES)

Row = dict[str, Any]


@dataclass(frozen=True)
class SeedSizes:
    students: int
    courses: int
    posts: int
    results: int

    @classmethod
    def preset(cls, name: str) -> SeedSizes:
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown size {name!r}; choose one of {', '.join(PRESETS)}") from None


PRESETS = {
    "tiny": SeedSizes(students=200, courses=12, posts=1_000, results=1_000),
    "small": SeedSizes(students=1_000, courses=40, posts=10_000, results=10_000),
    "medium": SeedSizes(students=20_000, courses=400, posts=1_000_000, results=500_000),
    "large": SeedSizes(students=200_000, courses=4_000, posts=10_000_000, results=5_000_000),
}


@dataclass
class Roster:
    """Who a forum post or an assessment result can be about."""

    ids: list[int]
    names: list[tuple[str, str]]
    emails: list[str]
    instructors: list[str]
    course_ids: list[int]


def roster(students: list[Row], courses: list[Row]) -> Roster:
    return Roster(
        ids=[s["StudentID"] for s in students],
        names=[(s["GivenName"], s["FamilyName"]) for s in students],
        emails=[s["Email"] for s in students],
        instructors=[c["InstructorName"] for c in courses],
        course_ids=[c["CourseID"] for c in courses],
    )


def student_rows(
    g: Draws, start_id: int, count: int, when: dt.datetime, later: bool = False
) -> list[Row]:
    """Students modified before `when` (initial load) or after it (`later`, appended batch)."""
    w = g.words
    direction = 1 if later else -1
    rows = []
    for sid in range(start_id, start_id + count):
        first, last = g.pick(w.first_names), g.pick(w.last_names)
        if g.rng.random() < RESTRICTED_SHARE:
            city, state, zip3 = g.pick(w.restricted_places)
        else:
            city, state, zip3 = g.pick(w.open_places)
        zipcode = f"{zip3}{int(g.rng.integers(0, 100)):02d}"
        if g.rng.random() < 0.2:
            zipcode += f"-{int(g.rng.integers(0, 10000)):04d}"
        # ~1.5% are over 89 (mature learners), the Safe Harbor edge case.
        if g.rng.random() < 0.015:
            birth_year = int(g.rng.integers(1925, 1937))
        else:
            birth_year = int(g.rng.integers(1960, 2012))
        birth = dt.date(birth_year, int(g.rng.integers(1, 13)), int(g.rng.integers(1, 29)))
        domain = g.pick(w.email_domains)
        rows.append(
            {
                "StudentID": sid,
                "SourcedId": str(uuid.UUID(bytes=g.rng.bytes(16), version=4)),
                "GivenName": first,
                "FamilyName": last,
                "Email": f"{first.lower()}.{last.lower()}{sid}@{domain}",
                "Phone": g.phone(),
                "BirthDate": birth,
                "StreetAddress": g.address(),
                "City": city,
                "State": state,
                "ZipCode": zipcode,
                "SSN": g.ssn(),
                "LastLoginIP": g.ip(),
                "GradeLevel": g.pick(w.grade_levels),
                "EnrollmentStatus": g.pick(w.statuses),
                # Whole minutes: many students share a ModifiedAt (non-unique cursor).
                "ModifiedAt": when + direction * dt.timedelta(minutes=int(g.rng.integers(0, 600))),
            }
        )
    return rows


def course_rows(g: Draws, count: int, when: dt.datetime) -> list[Row]:
    w = g.words
    rows = []
    subjects = list(w.subjects)
    for cid in range(1, count + 1):
        subject = subjects[(cid - 1) % len(subjects)]
        title = g.pick(w.subjects[subject])
        first, last = g.pick(w.first_names), g.pick(w.last_names)
        rows.append(
            {
                "CourseID": cid,
                "CourseCode": f"{subject[:4].upper().replace(' ', '')}{100 + cid}",
                "Title": title,
                "Subject": subject,
                "Term": g.pick(w.terms),
                "InstructorName": f"{first} {last}",
                "InstructorEmail": f"{first[0].lower()}{last.lower()}@example.edu",
                # Two legacy courses were imported before ModifiedAt existed.
                "ModifiedAt": None if cid in (3, 7) else when - dt.timedelta(days=cid % 5),
            }
        )
    return rows


def enrollment_rows(
    g: Draws,
    students: list[Row],
    n_courses: int,
    start_id: int,
    when: dt.datetime,
    later: bool = False,
) -> list[Row]:
    direction = 1 if later else -1
    rows = []
    eid = start_id
    for s in students:
        k = min(n_courses, int(g.rng.integers(1, 6)))
        for cid in g.rng.choice(np.arange(1, n_courses + 1), size=k, replace=False):
            begin = dt.date(2026, 8, 25) + dt.timedelta(days=int(g.rng.integers(0, 20)))
            rows.append(
                {
                    "EnrollmentID": eid,
                    "StudentID": s["StudentID"],
                    "CourseID": int(cid),
                    "Role": "student" if g.rng.random() < 0.97 else "aide",
                    "BeginDate": begin,
                    "EndDate": begin + dt.timedelta(days=110),
                    "FinalGrade": None,
                    "ModifiedAt": when
                    + direction * dt.timedelta(minutes=int(g.rng.integers(0, 300))),
                }
            )
            eid += 1
    return rows


def consent_rows(g: Draws, students: list[Row], when: dt.datetime, start_id: int = 1) -> list[Row]:
    """Consent given before `when`, per student and purpose."""
    rows = []
    cid = start_id
    for s in students:
        for purpose, p in CONSENT_SHARES:
            if g.rng.random() < p:
                rows.append(
                    {
                        "ConsentEventID": cid,
                        "StudentID": s["StudentID"],
                        "Purpose": purpose,
                        "State": "given",
                        "RecordedAt": when - dt.timedelta(days=int(g.rng.integers(1, 30))),
                        "CollectionMethod": g.pick(g.words.collection_methods),
                        "NoticeVersion": g.pick(g.words.notice_versions),
                    }
                )
                cid += 1
    return rows


def result_chunks(
    g: Draws, roster: Roster, start_id: int, count: int, when: dt.datetime
) -> Iterator[list[Row]]:
    """AssessmentResults, `CHUNK` rows at a time."""
    rid = start_id
    end = start_id + count
    assessments = g.words.assessments
    while rid < end:
        n = min(CHUNK, end - rid)
        sids = g.rng.choice(np.asarray(roster.ids), size=n)
        cids = g.rng.choice(np.asarray(roster.course_ids), size=n)
        ability = g.rng.beta(5, 2, size=n)
        rows = []
        for i in range(n):
            name = g.pick(assessments)
            max_score = 100 if name in ("Midterm", "Final Exam") else 20
            score = round(float(ability[i]) * max_score, 2)
            rows.append(
                {
                    "ResultID": rid,
                    "StudentID": int(sids[i]),
                    "CourseID": int(cids[i]),
                    "AssessmentName": name,
                    "Score": score,
                    "MaxScore": max_score,
                    "SubmittedAt": when + dt.timedelta(minutes=int(rid % 100_000)),
                    "AttemptNo": int(g.rng.integers(1, 4)),
                }
            )
            rid += 1
        yield rows
