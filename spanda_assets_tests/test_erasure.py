"""Erasure with a deadline: `spanda erase` now, the expiry job on a schedule, the register
that keeps an erased student out; and the 90+ rule for students who cross it later."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib import writes
from spanda_assets.lib.lakehouse import ensure_namespace
from spanda_assets.lib.privacy.policy import policy_for
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.privacy.silver import SilverInputs, stage_silver
from spanda_assets_tests.conftest import append_batch
from spanda_assets_tests.test_privacy_e2e import run_all, subject_of
from spanda_assets_tests.test_validation_gold import catalog


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def _files_holding(root: Path, subject: str) -> list[Path]:
    """Every Parquet file under `root` with a row of `subject` (read from the bytes on disk,
    not through any catalog)."""
    out = []
    for path in root.rglob("*.parquet"):
        table = pq.read_table(path)
        if "subject_id" in table.column_names and subject in table["subject_id"].to_pylist():
            out.append(path)
    return out


def _student_in_gold(url: str) -> int:
    posts = catalog().load_table(("gold", "validated_posts")).scan().to_arrow()
    gold = set(posts["subject_id"].to_pylist())
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    query = 'SELECT DISTINCT StudentID FROM "ForumPosts" ORDER BY 1'
    students = [s for (s,) in con.execute(query)]
    con.close()
    return next(s for s in students if subject_of(s) in gold)


def test_erase_removes_every_file_that_held_the_student_outside_bronze(
    demo_env: str, spanda_home: Path
) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
        append_batch(demo_env, spanda_home)
        run_all(instance)  # history now holds the student in several snapshots and files
    student = _student_in_gold(demo_env)
    subject = subject_of(student)
    warehouse = spanda_home / "warehouse"
    before = _files_holding(warehouse / "silver", subject) + _files_holding(
        warehouse / "gold", subject
    )
    assert len(before) >= 2

    out = CliRunner().invoke(main, ["erase", "--student-id", str(student), "--json"])
    assert out.exit_code == 0, out.output
    receipt = json.loads(out.output)
    assert receipt["subject_id"] == subject
    assert receipt["rows_erased"]["silver.forum_posts"] > 0
    assert receipt["rows_erased"]["gold.validated_posts"] > 0
    assert receipt["snapshots_expired"] > 0 and receipt["files_removed"] > 0
    assert receipt["rows_remaining"] == 0
    for namespace in ("silver", "gold", "submissions"):
        assert _files_holding(warehouse / namespace, subject) == [], namespace
    # bronze keeps the legal record
    bronze_posts = catalog().load_table(("bronze", "forum_posts")).scan().to_arrow()
    assert student in bronze_posts["student_id"].to_pylist()

    # The register keeps the student out of every later run, even a full rebuild.
    append_batch(demo_env, spanda_home, seed_value=8)
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
    for namespace, table in (
        ("silver", "forum_posts"),
        ("gold", "validated_posts"),
        ("silver", "consent_records"),
    ):
        subjects = (
            catalog().load_table((namespace, table)).scan().to_arrow()["subject_id"].to_pylist()
        )
        assert subject not in subjects, f"{namespace}.{table} brought the student back"

    text = CliRunner().invoke(main, ["erase", "--student-id", "999999"])
    assert text.exit_code == 2 and "999999" in text.output and "data_subjects" in text.output


def test_expiry_job_deletes_history_past_retention(
    demo_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
        run_all(instance)
        silver = catalog().load_table(("silver", "forum_posts"))
        history = len(silver.snapshots())
        files = {
            t.file.file_path
            for s in silver.snapshots()
            for t in silver.scan(snapshot_id=s.snapshot_id).plan_files()
        }
        assert history > 1
        job = defs().resolve_job_def("expire_history")
        monkeypatch.setenv("SPANDA_RETENTION_DAYS", "7")
        kept = job.execute_in_process(instance=instance)
        assert kept.success
        assert len(catalog().load_table(("silver", "forum_posts")).snapshots()) == history
        # a retention in the past: everything but the branch heads goes, files too
        monkeypatch.setattr("spanda_assets.settings.retention", lambda: dt.timedelta(seconds=-1))
        done = job.execute_in_process(instance=instance)
        assert done.success
    silver = catalog().load_table(("silver", "forum_posts"))
    protected = {r.snapshot_id for r in silver.metadata.refs.values()}
    assert {s.snapshot_id for s in silver.snapshots()} == protected
    live = {t.file.file_path for t in silver.scan().plan_files()}
    for path in files - live:
        assert not Path(path.removeprefix("file://")).exists(), path
    report = done.output_for_node("expire_silver_forum_posts")
    assert report["silver.forum_posts"]["snapshots_expired"] > 0
    assert silver.scan().to_arrow().num_rows == writes.row_count(silver)


def test_a_student_who_turns_90_loses_their_birth_year(catalog: Any) -> None:
    """Safe Harbor: ages over 89 are aggregated into 90+, also for a student who crosses
    the line after silver first wrote them."""
    policy = policy_for("students")
    ensure_namespace(catalog, "bronze")
    born = dt.date(1937, 3, 10)
    columns = {c: pa.array([None, None], pa.string()) for c in policy.columns}
    columns.update(
        student_id=pa.array([1, 2], pa.int64()),
        birth_date=pa.array([born, dt.date(2005, 1, 1)], pa.date32()),
        modified_at=pa.array([dt.datetime(2026, 1, 1)] * 2, pa.timestamp("us")),
    )
    rows = pa.table(columns)
    bronze = catalog.create_table(("bronze", "students"), schema=rows.schema)
    bronze.append(rows)
    key = bytes(32)

    def run(on: dt.date) -> dict[str, Any]:
        pseudo = Pseudonymizer(key)
        inputs = SilverInputs(
            policy=policy,
            pseudonymizer=pseudo,
            subjects={1: "ps_a", 2: "ps_b"},
            active={1, 2},
            consent_events=pa.table(
                {
                    "consent_event_id": pa.array([], pa.int64()),
                    "student_id": pa.array([], pa.int64()),
                }
            ),
            roster=None,
            on=on,
            upsert=True,
        )
        result = stage_silver(catalog=catalog, bronze=bronze, inputs=inputs)
        silver = catalog.load_table(("silver", "students"))
        writes.publish(silver)
        years = silver.scan().to_arrow().to_pylist()
        return {"years": {r["subject_id"]: r["birth_year"] for r in years}, "result": result}

    first = run(dt.date(2027, 3, 9))  # 89 years old, one day short
    assert first["years"] == {"ps_a": "1937", "ps_b": "2005"}
    second = run(dt.date(2027, 3, 10))  # 90 today
    assert second["years"] == {"ps_a": "90+", "ps_b": "2005"}
    assert second["result"].rows_turned_90 == 1
    assert catalog.load_table(("silver", "students")).scan().to_arrow().num_rows == 2
