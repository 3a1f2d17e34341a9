"""The local annotation store in Label Studio's JSON export format, and the format's reader."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.labeling.lsformat import ImportFormatError, parse_tasks
from spanda_assets.lib.labeling.quality import LABEL_ISSUES_SCHEMA
from spanda_assets.lib.labeling.store import AnnotationStore

T0 = dt.datetime(2026, 10, 1, 9, 0, tzinfo=dt.UTC)


def _posts(keys: list[str], prelabel: str | None = "urgent", version: str = "lf-1") -> pa.Table:
    return pa.table(
        {
            "post_key": keys,
            "body": [f"text of {k}" for k in keys],
            "prelabel": [prelabel] * len(keys),
            "confidence": [0.8] * len(keys),
            "model_version": [version] * len(keys),
        }
    )


def _task(**override: object) -> dict[str, object]:
    task: dict[str, object] = {
        "id": 7,
        "data": {"post_key": "ps_1", "body": "help"},
        "annotations": [
            {
                "id": 1,
                "completed_by": 3,
                "result": [
                    {
                        "from_name": "urgency",
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": ["urgent"]},
                    }
                ],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": "2026-10-01T09:00:00.000000Z",
                "updated_at": "2026-10-01T09:00:00.000000Z",
                "lead_time": 4.2,
                "project": 1,  # fields the platform does not read are kept
            }
        ],
        "predictions": [],
    }
    task.update(override)
    return task


def test_the_store_lives_under_spanda_home(spanda_home: Path) -> None:
    store = AnnotationStore()
    assert store.tasks() == []
    store.add_tasks(_posts(["a"]))
    assert (spanda_home / "labels" / "annotations.json").is_file()


def test_tasks_are_added_once_per_post_and_new_model_versions_replace_predictions() -> None:
    store = AnnotationStore()
    assert store.add_tasks(_posts(["a", "b"])).added == 2
    again = store.add_tasks(_posts(["a", "b", "c"]))
    assert (again.added, again.unchanged, again.predictions_replaced) == (1, 2, 0)
    champion = store.add_tasks(_posts(["a"], prelabel="not_urgent", version="model-3"))
    assert champion.predictions_replaced == 1
    tasks = {t.data.post_key: t for t in store.tasks()}
    assert len(tasks) == 3 and len({t.id for t in tasks.values()}) == 3
    assert [p.model_version for p in tasks["a"].predictions] == ["model-3"]
    assert tasks["a"].predictions[0].result[0].value.choices == ["not_urgent"]
    assert tasks["b"].predictions[0].score == 0.8


def test_annotations_since_a_watermark_carry_the_prelabel() -> None:
    store = AnnotationStore()
    store.add_tasks(_posts(["a", "b"]))
    store.add_annotation("a", "urgent", completed_by=1, at=T0, lead_time=3.0)
    store.add_annotation("a", "not_urgent", completed_by=2, at=T0 + dt.timedelta(hours=1))
    store.add_annotation("b", "", completed_by=2, was_cancelled=True, at=T0 + dt.timedelta(hours=2))
    every = store.annotations_since()
    assert every.num_rows == 3
    later = store.annotations_since(T0)
    assert later["completed_by"].to_pylist() == ["2", "2"]
    assert later["label"].to_pylist() == ["not_urgent", None]
    assert later["was_cancelled"].to_pylist() == [False, True]
    assert every["prelabel"].to_pylist() == ["urgent"] * 3
    assert every["lead_time"].to_pylist()[0] == 3.0
    assert store.annotations_since(T0 + dt.timedelta(hours=2)).num_rows == 0
    with pytest.raises(SpandaError, match="no task for post 'zzz'"):
        store.add_annotation("zzz", "urgent", completed_by=1)


def test_delete_removes_tasks_and_their_annotations() -> None:
    store = AnnotationStore()
    store.add_tasks(_posts(["a", "b", "c"]))
    store.add_annotation("b", "urgent", completed_by=1)
    assert store.delete({"b", "c", "not-there"}) == 2
    assert [t.data.post_key for t in store.tasks()] == ["a"]
    assert store.annotations_since().num_rows == 0


def test_writes_are_atomic_and_leave_no_temporary_files(tmp_path: Path) -> None:
    path = tmp_path / "store" / "annotations.json"
    store = AnnotationStore(path)
    store.add_tasks(_posts(["a"]))
    before = path.read_bytes()
    with pytest.raises(SpandaError):
        store.add_annotation("missing", "urgent", completed_by=1)
    # a failed edit writes nothing
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == ["annotations.json", "annotations.json.lock"]


def test_export_then_import_moves_annotations_and_is_idempotent(tmp_path: Path) -> None:
    here = AnnotationStore(tmp_path / "here.json")
    here.add_tasks(_posts(["a", "b"]))
    here.add_annotation("a", "urgent", completed_by=1, at=T0)
    exported = tmp_path / "export.json"
    assert here.export(exported) == 2
    raw = json.loads(exported.read_text())
    assert [t["data"]["post_key"] for t in raw] == ["a", "b"]  # unannotated tasks too
    assert raw[0]["annotations"][0]["result"][0]["value"] == {"choices": ["urgent"]}
    there = AnnotationStore(tmp_path / "there.json")
    there.add_tasks(_posts(["b"]))
    there.add_annotation("b", "not_urgent", completed_by=5, at=T0)
    first = there.import_file(exported)
    assert (first.tasks_added, first.annotations_added) == (1, 1)
    second = there.import_file(exported)
    assert (second.tasks_added, second.annotations_added) == (0, 0)
    assert second.annotations_already_present == 1
    rows = there.annotations_since().sort_by("post_key").to_pylist()
    assert [(r["post_key"], r["label"]) for r in rows] == [("a", "urgent"), ("b", "not_urgent")]
    assert len({r["annotation_id"] for r in rows}) == 2


def test_a_label_studio_export_round_trips_with_unknown_fields(tmp_path: Path) -> None:
    source = tmp_path / "ls.json"
    source.write_text(json.dumps([_task()]))
    store = AnnotationStore(tmp_path / "s.json")
    store.import_file(source)
    out = tmp_path / "out.json"
    store.export(out)
    (task,) = json.loads(out.read_text())
    annotation = task["annotations"][0]
    assert annotation["project"] == 1 and annotation["lead_time"] == 4.2
    assert annotation["created_at"].startswith("2026-10-01T09:00:00")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            _task(
                annotations=[
                    {
                        **_task()["annotations"][0],
                        "result": [  # type: ignore[index]
                            {
                                "from_name": "urgency",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": "urgent"},
                            }
                        ],
                    }
                ]
            ),
            "annotations[0].result[0].value.choices: expected a list of strings",
        ),
        (_task(data={"body": "x"}), "data.post_key: is required"),
        (_task(id="seven"), "id: expected a whole number"),
        (
            _task(annotations=[{**_task()["annotations"][0], "created_at": "2026-10-01T09:00"}]),  # type: ignore[index]
            "annotations[0].created_at: expected a date-time with a time zone",
        ),
        (
            _task(annotations=[{**_task()["annotations"][0], "completed_by": True}]),  # type: ignore[index]
            "annotations[0].completed_by: expected a user id",
        ),
    ],
)
def test_wrong_format_names_the_task_its_line_and_the_field(
    task: dict[str, object], expected: str
) -> None:
    good = _task(data={"post_key": "ps_0", "body": "fine"})
    text = json.dumps([good, task], indent=1)
    line = text.splitlines().index(" {", 2) + 1  # where the second task starts
    with pytest.raises(ImportFormatError) as info:
        parse_tasks(text, origin="in.json")
    assert str(info.value).startswith(f"in.json, task 1 (line {line}): {expected}")


def test_syntax_errors_duplicates_and_non_lists_are_reported() -> None:
    with pytest.raises(ImportFormatError, match=r"in.json, line 2, column \d+: not valid JSON"):
        parse_tasks('[{"id": 1,\n "data": }]', origin="in.json")
    with pytest.raises(ImportFormatError, match="expected a JSON list of tasks"):
        parse_tasks('{"id": 1}', origin="in.json")
    twice = json.dumps([_task(), _task(id=8)])
    with pytest.raises(ImportFormatError, match="'ps_1' is also the key of task 0"):
        parse_tasks(twice, origin="in.json")
    assert parse_tasks("[]") == []


def test_rows_without_a_key_or_text_are_skipped_not_merged() -> None:
    store = AnnotationStore()
    posts = pa.table({"post_key": ["a", None, None], "body": ["text", "x", "y"]})
    result = store.add_tasks(posts)
    assert (result.added, result.skipped) == (1, 2)
    assert [t.data.post_key for t in store.tasks()] == ["a"]


def test_an_imported_old_annotation_reaches_the_next_incremental_pull(tmp_path: Path) -> None:
    store = AnnotationStore()
    store.add_tasks(_posts(["a", "b"]))
    store.add_annotation("a", "urgent", completed_by=1)
    watermark = store.changed_since(None).high_water
    assert watermark is not None
    other = AnnotationStore(tmp_path / "other.json")
    other.add_tasks(_posts(["b"]))
    other.add_annotation("b", "not_urgent", completed_by=2, at=T0)  # made long ago
    other.export(tmp_path / "export.json")
    store.import_file(tmp_path / "export.json")
    later = store.changed_since(watermark)  # T0 is months before it: read all the same
    assert "b" in later.post_keys
    (row,) = [r for r in later.annotations.to_pylist() if r["post_key"] == "b"]
    assert row["created_at"] == T0  # when it was made is kept; when it arrived is new
    assert row["updated_at"] > watermark


def _flags(*rows: tuple[str, str, str]) -> pa.Table:
    return pa.Table.from_pylist(
        [{"post_key": k, "label": a, "suggested": b, "label_quality": 0.1} for k, a, b in rows],
        schema=LABEL_ISSUES_SCHEMA,
    )


def test_likely_mislabeled_posts_are_marked_for_review_and_unmarked_later() -> None:
    store = AnnotationStore()
    store.add_tasks(_posts(["a", "b", "c"]))
    assert store.review(_flags(("a", "urgent", "not_urgent"))) == 1
    marks = {t.data.post_key: t.meta.get("spanda_review") for t in store.tasks()}
    assert marks["a"] == {
        "reason": "likely_mislabeled",
        "label": "urgent",
        "suggested": "not_urgent",
        "label_quality": 0.1,
    }
    assert marks["b"] is None and marks["c"] is None
    assert store.review(_flags(("a", "urgent", "not_urgent"))) == 0  # nothing new
    assert store.review(_flags(("c", "not_urgent", "urgent"))) == 2  # a cleared, c marked
    marks = {t.data.post_key: t.meta.get("spanda_review") for t in store.tasks()}
    assert marks["a"] is None and marks["c"]["suggested"] == "urgent"
