"""Incremental gold against the orderings that break naive incremental readers.

No Dagster here: silver is written directly (appends, key upserts, erasures) in
the orders a real deployment produces when silver runs more often than gold,
or a gold run dies between its two commits, and each test compares gold with
what silver says it must hold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from spanda_assets.lib.incremental import new_files
from spanda_assets.lib.lakehouse import ensure_namespace
from spanda_assets.lib.validation.gold import SPECS
from spanda_assets.lib.validation.publish import GoldConsent, stage_gold
from spanda_assets.lib.writes import in_filter, merge_rows, publish
from spanda_assets_tests.conftest import child, killed

SPEC = SPECS["validated_posts"]
POSTS = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("subject_id", pa.string()),
        pa.field("course_id", pa.int64()),
        pa.field("body", pa.string()),
        pa.field("created_at_year", pa.int32()),
    ]
)
SUBJECTS = ("s_a", "s_b", "s_c")


def _posts(*rows: tuple[str, str, int, str]) -> pa.Table:
    return pa.table(
        {
            "post_id": [r[0] for r in rows],
            "subject_id": [r[1] for r in rows],
            "course_id": [r[2] for r in rows],
            "body": [r[3] for r in rows],
            "created_at_year": [2026] * len(rows),
        },
        schema=POSTS,
    )


@pytest.fixture
def lake(catalog: Any) -> Any:
    ensure_namespace(catalog, "silver")
    courses = pa.schema([pa.field("course_id", pa.int64(), nullable=False)])
    catalog.create_table(("silver", "courses"), schema=courses).append(
        pa.table({"course_id": [1]}, schema=courses)
    )
    students = pa.schema([pa.field("subject_id", pa.string(), nullable=False)])
    catalog.create_table(("silver", "students"), schema=students).append(
        pa.table({"subject_id": list(SUBJECTS)}, schema=students)
    )
    catalog.create_table(("silver", "forum_posts"), schema=POSTS)
    return catalog


def _consent(active: set[str], events: list[tuple[int, str]] | None = None) -> GoldConsent:
    events = events or []
    return GoldConsent(
        active=active,
        watermark=max((e for e, _ in events), default=0),
        changed_since=lambda after: {s for e, s in events if e > after},
    )


def _silver(catalog: Any) -> Any:
    return catalog.load_table(("silver", "forum_posts"))


def _silver_append(catalog: Any, rows: pa.Table) -> None:
    """New silver rows, committed with a run position as silver's writer commits them."""
    _silver(catalog).append(rows, snapshot_properties={"spanda.bronze-sequence": "1"})


def _silver_run(catalog: Any, change: Callable[[Any, Any], None]) -> None:
    """One silver commit (its writes plus the run marker), as silver's publisher makes."""
    table = _silver(catalog)
    tx = table.transaction()
    change(tx, table)
    tx.append(POSTS.empty_table(), snapshot_properties={"spanda.bronze-sequence": "1"})
    tx.commit_transaction()


def _upsert(rows: pa.Table) -> Callable[[Any, Any], None]:
    return lambda tx, table: merge_rows(tx, table, rows, ["post_id"], {})


def _erase(subjects: list[str]) -> Callable[[Any, Any], None]:
    return lambda tx, table: tx.delete(delete_filter=in_filter("subject_id", subjects))


def _gold(catalog: Any) -> list[str]:
    table = catalog.load_table(("gold", "validated_posts"))
    return sorted(table.scan(selected_fields=("post_id",)).to_arrow().column(0).to_pylist())


def _held(catalog: Any) -> list[tuple[str, str]]:
    rows = catalog.load_table(("gold", "quarantine")).scan().to_arrow().to_pylist()
    return sorted((r["row_key"], r["rule"]) for r in rows if r["table_name"] == SPEC.name)


def _publish(catalog: Any, consent: GoldConsent | None = None, upsert: bool = False) -> Any:
    """One gold run whose audit passes: staged on the audit branch, then published."""
    result = stage_gold(catalog, SPEC, consent or _consent(set(SUBJECTS)), upsert=upsert)
    publish(catalog.load_table(("gold", SPEC.name)))
    return result


@pytest.mark.parametrize("upsert", [False, True])
def test_a_rewrite_of_a_file_gold_has_not_read_is_not_lost(lake: Any, upsert: bool) -> None:
    _silver_append(lake, _posts(("p1", "s_a", 1, "first")))
    assert _publish(lake, upsert=upsert).full_rebuild
    # Silver runs twice before gold runs again: new posts, then an edit of one of them,
    # whose delete half rewrites the file gold has not read yet.
    _silver_run(lake, _upsert(_posts(("p2", "s_a", 1, "hi"), ("p3", "s_b", 1, "yo"))))
    _silver_run(lake, _upsert(_posts(("p2", "s_a", 1, "hi, edited"))))
    result = _publish(lake, upsert=upsert)
    assert not result.full_rebuild
    assert _gold(lake) == ["p1", "p2", "p3"]
    bodies = lake.load_table(("gold", "validated_posts")).scan().to_arrow().to_pylist()
    assert {r["post_id"]: r["body"] for r in bodies}["p2"] == "hi, edited"
    _publish(lake, upsert=upsert)  # and a run with nothing new changes nothing
    assert _gold(lake) == ["p1", "p2", "p3"]


def test_an_erasure_rewriting_an_unread_file_keeps_the_other_rows(lake: Any) -> None:
    _silver_append(lake, _posts(("p1", "s_a", 1, "first")))
    _publish(lake)
    _silver_append(lake, _posts(("p2", "s_a", 1, "gone"), ("p3", "s_b", 1, "stays")))
    _silver_run(lake, _erase(["s_a"]))  # s_a withdrew research consent
    _publish(lake, _consent({"s_b", "s_c"}, [(1, "s_a")]))
    assert _gold(lake) == ["p3"]


def test_new_files_skips_only_rewrites_of_processed_files(lake: Any) -> None:
    silver = _silver(lake)
    silver.append(_posts(("p1", "s_a", 1, "a"), ("p2", "s_b", 1, "b")))
    processed = silver.current_snapshot().sequence_number
    _silver_run(lake, _erase(["s_a"]))  # rewrites a processed file: nothing new
    silver = _silver(lake)
    assert new_files(silver, processed).all == []
    silver.append(_posts(("p3", "s_c", 1, "c"), ("p4", "s_b", 1, "d")))
    _silver_run(lake, _erase(["s_c"]))  # rewrites an unprocessed file: p4 is new
    files = new_files(_silver(lake), processed)
    assert files.appended == [] and len(files.rewritten) == 1


PUBLISH_IN_A_CHILD = (
    "from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog;"
    "from spanda_assets_tests.test_gold_incremental import _publish;"
    "_publish(open_catalog(CatalogConfig.from_env()))"
)


def test_killed_between_commits_leaves_no_stale_entry_nor_duplicate(
    lake: Any, spanda_home: Path
) -> None:
    _silver_append(lake, _posts(("p0", "s_a", 1, "   "), ("p1", "s_a", 1, "fine")))
    _publish(lake)
    assert _held(lake) == [("p0", "body_present")]
    # p2 names a course that does not exist yet; the run dies after its quarantine commit.
    _silver_append(lake, _posts(("p2", "s_b", 7, "which room?")))
    crashed = child(spanda_home, ["-c", PUBLISH_IN_A_CHILD], fault="gold_between_commits:1")
    assert killed(crashed), crashed.stderr[-2000:]
    assert ("p2", "course_exists") in _held(lake) and "p2" not in _gold(lake)

    # The course arrives before the retry: p2 is valid now, and its entry must go.
    lake.load_table(("silver", "courses")).append(
        pa.table(
            {"course_id": [7]}, schema=lake.load_table(("silver", "courses")).schema().as_arrow()
        )
    )
    _publish(lake)
    assert _gold(lake) == ["p1", "p2"]
    assert _held(lake) == [("p0", "body_present")]
    # Another reference change re-checks what is held, and duplicates nothing.
    lake.load_table(("silver", "courses")).append(
        pa.table(
            {"course_id": [8]}, schema=lake.load_table(("silver", "courses")).schema().as_arrow()
        )
    )
    result = _publish(lake)
    assert _gold(lake) == ["p1", "p2"] and result.total_rows == 2
    assert _held(lake) == [("p0", "body_present")]


def test_references_unchanged_means_held_rows_are_not_reread(lake: Any) -> None:
    _silver_append(lake, _posts(("p1", "s_a", 9, "unknown course")))
    _publish(lake)
    assert _held(lake) == [("p1", "course_exists")]
    # silver.students gets a new snapshot with the same keys: posts do not look students up
    students = lake.load_table(("silver", "students"))
    students.append(students.schema().as_arrow().empty_table())
    assert _publish(lake).rows_reread == 0
    lake.load_table(("silver", "courses")).append(
        pa.table(
            {"course_id": [9]}, schema=lake.load_table(("silver", "courses")).schema().as_arrow()
        )
    )
    result = _publish(lake)
    assert result.rows_reread == 1 and result.released == 1 and _held(lake) == []
