"""bronze assets materialized by Dagster on an ephemeral instance, the sensor, the metadata."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from spanda_assets.defs.extract.assets import build_extract_asset
from spanda_assets.defs.extract.sensors import bronze_new_source_rows
from spanda_assets.lib.sources import load_sources
from spanda_assets.resources import LakehouseResource, SourceDatabaseResource
from spanda_assets_tests.conftest import append_batch

SOURCES = load_sources()


def _resources() -> dict[str, Any]:
    return {"source_db": SourceDatabaseResource(), "lakehouse": LakehouseResource()}


def _source(url: str, query: str) -> tuple[Any, ...]:
    """One row of the operational database, read directly (not through the extract)."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    row = con.execute(query).fetchone()
    con.close()
    return tuple(row)


def _metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    (mat,) = result.asset_materializations_for_node(f"bronze__{name}")
    return {k: v.value for k, v in mat.metadata.items()}


def test_materialize_all_bronze_assets_with_metadata(tiny_source: str) -> None:
    assets = [build_extract_asset(s) for s in SOURCES]
    with dg.instance_for_test() as instance:
        result = dg.materialize(assets, resources=_resources(), instance=instance)
        assert result.success
        md = _metadata(result, "forum_posts")
        posts, top = _source(tiny_source, 'SELECT COUNT(*), MAX(PostID) FROM "ForumPosts"')
        assert md["dagster/row_count"] == posts
        assert md["rows_read"] == posts and md["rows_added"] == posts and md["rows_updated"] == 0
        assert md["watermark_before"] == "none" and md["watermark_after"] == str(top)
        assert md["iceberg_snapshot_id"].isdigit()
        cols = {c.name: c.type for c in md["dagster/column_schema"].columns}
        assert cols == {
            "post_id": "long",
            "student_id": "long",
            "course_id": "long",
            "body": "string",
            "created_at": "timestamp",
        }
        assert md["source"].startswith("sqlite:///")
        # The asset's history is in the instance, as the UI shows it.
        event = instance.get_latest_materialization_event(dg.AssetKey(["bronze", "forum_posts"]))
        assert event is not None


def test_second_materialization_reports_the_increment(tiny_source: str, spanda_home: Path) -> None:
    asset = build_extract_asset(next(s for s in SOURCES if s.name == "students"))
    with dg.instance_for_test() as instance:
        dg.materialize([asset], resources=_resources(), instance=instance)
        (before,) = _source(tiny_source, 'SELECT MAX(ModifiedAt) FROM "Students"')
        (known,) = _source(tiny_source, 'SELECT MAX(StudentID) FROM "Students"')
        append_batch(tiny_source, spanda_home)
        query = f"SELECT COUNT(*) FROM \"Students\" WHERE ModifiedAt > '{before}'"
        new = _source(tiny_source, query + f" AND StudentID > {known}")[0]
        changed = _source(tiny_source, query + f" AND StudentID <= {known}")[0]
        assert new and changed, "the batch adds and changes students"
        result = dg.materialize([asset], resources=_resources(), instance=instance)
        md = _metadata(result, "students")
        assert md["rows_added"] == new and md["rows_updated"] == changed
        assert md["watermark_before"] != md["watermark_after"]
        assert md["full_load"] is False


def test_failed_extract_fails_the_run_with_the_clear_message(spanda_home: Path) -> None:
    asset = build_extract_asset(SOURCES[0])
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset], resources=_resources(), instance=instance, raise_on_error=False
        )
        assert not result.success
        (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        text = str(failure.step_failure_data.error)
        assert "no operational database" in text and "spanda seed" in text


def test_full_refresh_config(tiny_source: str) -> None:
    asset = build_extract_asset(next(s for s in SOURCES if s.name == "courses"))
    with dg.instance_for_test() as instance:
        dg.materialize([asset], resources=_resources(), instance=instance)
        result = dg.materialize(
            [asset],
            resources=_resources(),
            instance=instance,
            run_config={"ops": {"bronze__courses": {"config": {"full_refresh": True}}}},
        )
        assert _metadata(result, "courses")["full_load"] is True


def test_secrets_never_reach_metadata(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # A password in the source URL is masked in what the UI shows.
    monkeypatch.setenv(
        "SPANDA_SOURCE_URL", "postgresql+psycopg://etl:hunter2-secret@127.0.0.1:1/ops"
    )
    res = SourceDatabaseResource()
    assert "hunter2-secret" not in res.describe() and "***" in res.describe()
    monkeypatch.setenv("SPANDA_S3_SECRET_ACCESS_KEY", "s3-very-secret")
    monkeypatch.setenv("SPANDA_CATALOG_URI", "postgresql+psycopg://cat:cat-pass@127.0.0.1/cat")
    described = str(LakehouseResource().describe())
    assert "s3-very-secret" not in described and "cat-pass" not in described


def test_sensor_requests_only_tables_with_new_rows(tiny_source: str, spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=_resources())
        first = bronze_new_source_rows(ctx)
        assert isinstance(first, dg.SensorResult)
        (request,) = first.run_requests
        assert {k.path[1] for k in request.asset_selection} == {s.name for s in SOURCES}

        dg.materialize(
            [build_extract_asset(s) for s in SOURCES], resources=_resources(), instance=instance
        )
        idle = bronze_new_source_rows(
            dg.build_sensor_context(instance=instance, resources=_resources())
        )
        assert isinstance(idle, dg.SkipReason)

        # New posts only (no new students): only forum_posts is requested.

        con = sqlite3.connect(tiny_source.removeprefix("sqlite:///"))
        con.execute(
            'INSERT INTO "ForumPosts" VALUES '
            "(5000, 1, 1, 'Help, the exam crashed', '2026-12-01 00:00:00')"
        )
        con.commit()
        con.close()
        busy = bronze_new_source_rows(
            dg.build_sensor_context(instance=instance, resources=_resources())
        )
        assert isinstance(busy, dg.SensorResult)
        (request,) = busy.run_requests
        assert [k.path for k in request.asset_selection] == [["bronze", "forum_posts"]]
        assert request.run_key == "forum_posts:1@5000"


def test_sensor_reports_an_unreachable_source(spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        ctx = dg.build_sensor_context(instance=instance, resources=_resources())
        with pytest.raises(Exception, match="no operational database"):
            bronze_new_source_rows(ctx)
