"""A later batch of the demo data: what an incremental extract must pick up.

Given the rows already in the operational database, `later_batch` generates new
students (with their enrollments and consent), changes to existing students
and enrollments with a later ModifiedAt, and consent withdrawals. It is pure:
`writer.py` reads the current state and writes the batch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import (
    PURPOSES,
    Row,
    consent_rows,
    enrollment_rows,
    student_rows,
)


@dataclass
class LaterBatch:
    new_students: list[Row]
    changed_students: list[Row]  # partial rows keyed by StudentID
    graded_enrollments: list[Row]  # partial rows keyed by EnrollmentID
    new_enrollments: list[Row]
    consent: list[Row]  # for the new students, then withdrawals


def later_batch(
    g: Draws,
    students: list[Row],
    enrollment_ids: list[int],
    n_courses: int,
    max_ids: dict[str, int],
    when: dt.datetime,
) -> LaterBatch:
    """The batch after `students` (in StudentID order); `max_ids` holds each table's top key."""
    new_students = student_rows(
        g, max_ids["Students"] + 1, max(1, len(students) // 50), when, later=True
    )

    # ~5% of students move, change phone or status; several share one ModifiedAt.
    k = max(1, len(students) // 20)
    changed = []
    for idx in g.rng.choice(len(students), size=min(k, len(students)), replace=False):
        s = students[int(idx)]
        changed.append(
            {
                "StudentID": s["StudentID"],
                "Phone": g.phone(),
                "StreetAddress": g.address(),
                "EnrollmentStatus": g.pick(g.words.statuses),
                "ModifiedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 5))),
            }
        )

    graded = []
    m = max(1, len(enrollment_ids) // 10)
    for eid in g.rng.choice(
        np.asarray(enrollment_ids), size=min(m, len(enrollment_ids)), replace=False
    ):
        graded.append(
            {
                "EnrollmentID": int(eid),
                "FinalGrade": round(float(g.rng.uniform(40, 100)), 2),
                "ModifiedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 5))),
            }
        )
    new_enrollments = enrollment_rows(
        g, new_students, n_courses, max_ids["Enrollments"] + 1, when, later=True
    )

    consent = consent_rows(g, new_students, when, start_id=max_ids["ConsentEvents"] + 1)
    next_cid = max_ids["ConsentEvents"] + 1 + len(consent)
    # Some students withdraw consent for one purpose, citing the current notice.
    for idx in g.rng.choice(len(students), size=max(1, len(students) // 40), replace=False):
        consent.append(
            {
                "ConsentEventID": next_cid,
                "StudentID": students[int(idx)]["StudentID"],
                "Purpose": g.pick(PURPOSES),
                "State": "withdrawn",
                "RecordedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 60))),
                "CollectionMethod": g.pick(g.words.collection_methods),
                "NoticeVersion": g.words.notice_versions[-1],
            }
        )
        next_cid += 1
    return LaterBatch(
        new_students=new_students,
        changed_students=changed,
        graded_enrollments=graded,
        new_enrollments=new_enrollments,
        consent=consent,
    )
