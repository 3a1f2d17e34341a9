"""Learning events of the gold tables as xAPI 1.0.3 statements, one JSON object per line.

Read: gold.validated_posts and gold.validated_assessments (main snapshots, one data
file at a time). Written: `posts.jsonl` and `assessments.jsonl` (JSON Lines, the form
`spanda validate` checks and LRS bulk imports take), one statement per gold row, in
the snapshot's scan order (fixed for a snapshot: the same snapshots give the same
bytes; nothing is sorted, so memory is one batch).

* actor: `{"objectType": "Agent", "account": {"homePage": <public URL>, "name":
  <subject_id>}}`: the publisher's own account space (SPANDA_PUBLIC_URL) and gold's
  keyed pseudonym; never mbox, mbox_sha1sum or a name.
* a post: verb http://adlnet.gov/expapi/verbs/commented, object the course
  (`<public URL>/xapi/activities/courses/<course_id>`, type
  http://adlnet.gov/expapi/activities/course), the post's de-identified text as
  `result.response`.
* an assessment result: verb http://adlnet.gov/expapi/verbs/scored, object the
  assessment (`.../courses/<course_id>/assessments/<name, percent-encoded>`, type
  http://adlnet.gov/expapi/activities/assessment) with the course as its parent
  context activity, `result.score` {raw, min 0, max max_score, scaled raw/max}.
* `id`: uuid5 over the row's table, key and verb, so a re-export gives every
  statement the id it had, and an LRS that receives it twice keeps one (xAPI
  statement ids are idempotency keys).
* `timestamp`: gold keeps the year only; it becomes 00:00:00 UTC on 1 January of that
  year (lib/exports/common.py), and is left out when the year is unknown.
* `context.extensions`: the gold row the statement comes from (table/key), and the
  attempt number of a result, under `<public URL>/xapi/extensions/...`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa

from spanda_assets.lib.exports.common import (
    ASSESSMENT_COLUMNS,
    DurableFile,
    number_json,
    require_columns,
    rows_of,
)

POSTS = "gold.validated_posts"
ASSESSMENTS = "gold.validated_assessments"
POST_COLUMNS = ("post_id", "subject_id", "course_id", "body", "created_at_year")
SOURCES: dict[str, tuple[str, ...]] = {POSTS: POST_COLUMNS, ASSESSMENTS: ASSESSMENT_COLUMNS}

# Statement ids are uuid5 in this namespace: fixed forever, or every id would change.
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:spanda:exports:xapi")
LANG = "en-US"
COMMENTED_ID = "http://adlnet.gov/expapi/verbs/commented"
SCORED_ID = "http://adlnet.gov/expapi/verbs/scored"
COMMENTED: dict[str, Any] = {"id": COMMENTED_ID, "display": {LANG: "commented"}}
SCORED: dict[str, Any] = {"id": SCORED_ID, "display": {LANG: "scored"}}
COURSE_TYPE = "http://adlnet.gov/expapi/activities/course"
ASSESSMENT_TYPE = "http://adlnet.gov/expapi/activities/assessment"
PLATFORM = "Spanda"


def statement_id(table: str, key: str, verb: str) -> str:
    """The statement's id: the same gold row and verb always give the same UUID."""
    return str(uuid.uuid5(NAMESPACE, f"{table}/{key}/{verb}"))


def _timestamp(year: int | None) -> dict[str, str]:
    return {} if year is None else {"timestamp": f"{int(year):04d}-01-01T00:00:00Z"}


class _Statements:
    """Builds statements for one publisher's account space and activity ids."""

    def __init__(self, home_page: str) -> None:
        self.home = home_page.rstrip("/")

    def actor(self, subject: str) -> dict[str, Any]:
        return {"objectType": "Agent", "account": {"homePage": self.home, "name": subject}}

    def course(self, course: int) -> dict[str, Any]:
        return {
            "objectType": "Activity",
            "id": f"{self.home}/xapi/activities/courses/{int(course)}",
            "definition": {"type": COURSE_TYPE, "name": {LANG: f"Course {int(course)}"}},
        }

    def assessment(self, course: int, name: str) -> dict[str, Any]:
        return {
            "objectType": "Activity",
            "id": f"{self.home}/xapi/activities/courses/{int(course)}/assessments/"
            + quote(name, safe=""),
            "definition": {"type": ASSESSMENT_TYPE, "name": {LANG: name}},
        }

    def extension(self, name: str) -> str:
        return f"{self.home}/xapi/extensions/{name}"


def _line(statement: dict[str, Any]) -> str:
    # compact, insertion-ordered, no NaN: one statement per line, byte-stable
    return json.dumps(statement, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"


def write_xapi(
    posts: Iterable[pa.RecordBatch],
    assessments: Iterable[pa.RecordBatch],
    out: Path,
    home_page: str,
) -> tuple[dict[str, int], dict[str, int]]:
    """Write posts.jsonl and assessments.jsonl into `out`.

    Returns (statements per file, rows skipped per reason): a row without a pseudonym
    has no actor, and a score outside 0..max_score (max_score > 0) is not a valid xAPI
    score; gold's
    rules make both impossible today, the count says if it ever happens."""
    s = _Statements(home_page)
    rows: dict[str, int] = {}
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    with DurableFile(out / "posts.jsonl", newline="\n") as f:
        for batch in posts:
            require_columns(batch.schema, POST_COLUMNS, POSTS)
            for post_id, subject, course, body, year in rows_of(batch, POST_COLUMNS):
                if post_id is None or subject is None or course is None:
                    skip("post without id, subject or course")
                    continue
                statement: dict[str, Any] = {
                    "id": statement_id(POSTS, post_id, COMMENTED_ID),
                    "actor": s.actor(subject),
                    "verb": COMMENTED,
                    "object": s.course(course),
                }
                if body is not None:
                    statement["result"] = {"response": body}
                statement["context"] = {
                    "platform": PLATFORM,
                    "extensions": {s.extension("source-row"): f"{POSTS}/{post_id}"},
                }
                statement.update(_timestamp(year))
                f.write(_line(statement))
                f.rows += 1
        rows["posts.jsonl"] = f.rows

    with DurableFile(out / "assessments.jsonl", newline="\n") as f:
        for batch in assessments:
            require_columns(batch.schema, ASSESSMENT_COLUMNS, ASSESSMENTS)
            for result_id, subject, course, name, score, max_score, year, attempt in rows_of(
                batch, ASSESSMENT_COLUMNS
            ):
                if result_id is None or subject is None or course is None or not name:
                    skip("result without id, subject, course or assessment name")
                    continue
                if score is None or max_score is None or not 0 <= score <= max_score > 0:
                    skip("score missing, or outside 0..max_score, or max_score not positive")
                    continue
                raw, high = number_json(score), number_json(max_score)
                extensions: dict[str, Any] = {
                    s.extension("source-row"): f"{ASSESSMENTS}/{result_id}"
                }
                if attempt is not None:
                    extensions[s.extension("attempt")] = int(attempt)
                statement = {
                    "id": statement_id(ASSESSMENTS, result_id, SCORED_ID),
                    "actor": s.actor(subject),
                    "verb": SCORED,
                    "object": s.assessment(course, name),
                    "result": {
                        "score": {
                            "raw": raw,
                            "min": 0,
                            "max": high,
                            "scaled": round(raw / high, 6),
                        },
                        "completion": True,
                    },
                    "context": {
                        "contextActivities": {"parent": [s.course(course)]},
                        "platform": PLATFORM,
                        "extensions": extensions,
                    },
                    **_timestamp(year),
                }
                f.write(_line(statement))
                f.rows += 1
        rows["assessments.jsonl"] = f.rows
    return rows, dict(sorted(skipped.items()))
