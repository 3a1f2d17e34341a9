"""Sample submissions for the demo inbox, tests and the validator benchmark.

`write_oneroster` writes a de-identified OneRoster 1.1 bulk export (names and
emails left empty, as a research submission must) with `dataset_description.json`.
Rows are streamed to disk, so a million enrollments need no memory to write.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

DESCRIPTION: dict[str, Any] = {
    "Identifier": "10.99999/spanda.sample",
    "Creators": [{"name": "Example District Research Office"}],
    "Title": "Grade 9 algebra enrollments, fall term",
    "Publisher": "Example District",
    "PublicationYear": 2026,
    "ResourceType": {"resourceTypeGeneral": "Dataset"},
    "License": "CC-BY-4.0",
    "DataUseAgreement": "DUA-2026-017 (research use only, no re-identification)",
    "ConsentBasis": "FERPA studies exception; parental opt-out honoured",
    "Contact": "research-office@example.org",
    "Description": "Roster and enrollment records for a study of algebra placement.",
    "Subjects": ["education", "mathematics"],
    "Keywords": ["OneRoster", "enrollment"],
    "Version": "1.0",
    "Language": "en",
    "Discipline": {"GradeLevels": ["09"], "Subjects": ["Algebra I"], "Instruments": []},
}

FILES = ["orgs", "academicSessions", "courses", "classes", "users", "enrollments"]


def _write(path: Path, header: list[str], rows: Any) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_oneroster(
    root: Path, users: int = 200, enrollments: int = 400, classes: int = 10
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION, indent=2))
    _write(
        root / "manifest.csv",
        ["propertyName", "value"],
        [["manifest.version", "1.0"], ["oneroster.version", "1.1"]]
        + [[f"file.{f}", "bulk"] for f in FILES]
        + [["file.results", "absent"], ["file.lineItems", "absent"]],
    )
    base = ["sourcedId", "status", "dateLastModified"]
    _write(
        root / "orgs.csv",
        [*base, "name", "type", "identifier", "parentSourcedId"],
        [["org-1", "", "", "Example High", "school", "", ""]],
    )
    _write(
        root / "academicSessions.csv",
        [*base, "title", "type", "startDate", "endDate", "parentSourcedId", "schoolYear"],
        [["term-1", "", "", "Fall 2026", "term", "2026-08-25", "2026-12-18", "", "2027"]],
    )
    _write(
        root / "courses.csv",
        [*base, "schoolYearSourcedId", "title", "courseCode", "grades", "orgSourcedId", "subjects"],
        [["course-1", "", "", "term-1", "Algebra I", "ALG1", "09", "org-1", "Mathematics"]],
    )
    _write(
        root / "classes.csv",
        [
            *base,
            "title",
            "grades",
            "courseSourcedId",
            "classCode",
            "classType",
            "location",
            "schoolSourcedId",
            "termSourcedIds",
            "subjects",
        ],
        (
            [
                f"class-{i}",
                "",
                "",
                f"Algebra I ({i})",
                "09",
                "course-1",
                f"A{i}",
                "scheduled",
                "",
                "org-1",
                "term-1",
                "Mathematics",
            ]
            for i in range(1, classes + 1)
        ),
    )
    _write(
        root / "users.csv",
        [
            *base,
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
        ],
        (
            [
                f"user-{i}",
                "",
                "",
                "true",
                "org-1",
                "student",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "",
                "09",
                "",
            ]
            for i in range(1, users + 1)
        ),
    )
    _write(
        root / "enrollments.csv",
        [
            *base,
            "classSourcedId",
            "schoolSourcedId",
            "userSourcedId",
            "role",
            "primary",
            "beginDate",
            "endDate",
        ],
        (
            [
                f"enr-{i}",
                "",
                "",
                f"class-{1 + i % classes}",
                "org-1",
                f"user-{1 + i % users}",
                "student",
                "false",
                "2026-08-25",
                "2026-12-18",
            ]
            for i in range(1, enrollments + 1)
        ),
    )
    return root
