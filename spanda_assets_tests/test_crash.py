"""A process killed (SIGKILL) at any point of an extract leaves a state the next run recovers.

The extract runs in a child process; SPANDA_FAULT kills it at a named point:
between commits, after data files are written but before the commit, and right
after a commit. The next run must end with exactly the source's rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from spanda_assets.lib.watermark import read_watermark
from spanda_assets_tests.conftest import append_batch, assert_bronze_equals_source


def _run(
    name: str, home: Path, fault: str | None = None, commit_rows: int = 200
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env.update(
        SPANDA_HOME=str(home),
        SPANDA_BATCH_ROWS="100",
        SPANDA_COMMIT_ROWS=str(commit_rows),
    )
    if fault:
        env["SPANDA_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "spanda_assets_tests.extract_once", name],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _killed(proc: subprocess.CompletedProcess[str]) -> bool:
    return proc.returncode == -signal.SIGKILL


@pytest.fixture
def seeded(tiny_source: str, spanda_home: Path) -> str:
    return tiny_source


def test_killed_between_batches_resumes_from_committed_watermark(
    seeded: str, spanda_home: Path, catalog: Any
) -> None:
    proc = _run("forum_posts", spanda_home, fault="after_batch_commit:2")
    assert _killed(proc), proc.stderr
    table = catalog.load_table(("bronze", "forum_posts"))
    assert read_watermark(table).value == 400  # two commits of 200 rows survived
    assert len(table.scan().to_arrow()) == 400
    done = _run("forum_posts", spanda_home)
    assert done.returncode == 0, done.stderr
    assert_bronze_equals_source(seeded, catalog, "ForumPosts", "forum_posts", "PostID")


def test_killed_after_write_before_commit_leaves_nothing_half_written(
    seeded: str, spanda_home: Path, catalog: Any
) -> None:
    proc = _run("forum_posts", spanda_home, fault="before_commit:1")
    assert _killed(proc), proc.stderr
    table = catalog.load_table(("bronze", "forum_posts"))
    assert table.current_snapshot() is None  # data files were written, never committed
    written = list((spanda_home / "warehouse").rglob("*.parquet"))
    assert written, "the crash happened after the data files were written"
    done = _run("forum_posts", spanda_home)
    assert done.returncode == 0, done.stderr
    assert_bronze_equals_source(seeded, catalog, "ForumPosts", "forum_posts", "PostID")


@pytest.mark.parametrize("fault", ["before_commit:1", "after_commit:1"])
def test_killed_during_an_upsert_of_changed_students(
    seeded: str, spanda_home: Path, catalog: Any, fault: str
) -> None:
    assert _run("students", spanda_home).returncode == 0
    append_batch(seeded, spanda_home)
    proc = _run("students", spanda_home, fault=fault, commit_rows=10_000)
    assert _killed(proc), proc.stderr
    done = _run("students", spanda_home, commit_rows=10_000)
    assert done.returncode == 0, done.stderr
    assert_bronze_equals_source(seeded, catalog, "Students", "students", "StudentID")


def test_killed_mid_first_load_of_an_upsert_table(
    seeded: str, spanda_home: Path, catalog: Any
) -> None:
    proc = _run("enrollments", spanda_home, fault="after_batch_commit:1", commit_rows=100)
    assert _killed(proc), proc.stderr
    done = _run("enrollments", spanda_home, commit_rows=100)
    assert done.returncode == 0, done.stderr
    assert_bronze_equals_source(seeded, catalog, "Enrollments", "enrollments", "EnrollmentID")
