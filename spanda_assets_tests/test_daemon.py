"""The chain under the real Dagster daemon, with nobody clicking.

`dagster-daemon run -w workspace.yaml` runs as a subprocess on a temporary
DAGSTER_HOME, exactly as an operator starts it. Alerts go to a local HTTP
receiver and a local SMTP server. The test only changes the operational
database (and, once, the institution's identifier file) and watches:

1. the seeded source reaches silver and gold main by itself;
2. a consent withdrawal in ConsentEvents erases the student from silver and
   gold main within the five-minute contract;
3. a post that leaks an identifier the scrubber does not know fails silver's
   audit: main does not move, gold is untouched, exactly one alert goes out
   (webhook and e-mail), and later ticks send nothing more;
4. declaring the identifier for the scrubber fixes it: the next run re-derives
   the unpublished rows, the audit passes, main moves, gold follows, and one
   "resolved" alert goes out.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from spanda_assets.lib.labeling.store import AnnotationStore
from spanda_assets.lib.lakehouse import CatalogConfig, load_table_or_none, open_catalog
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.privacy.subjects import did_of
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets_tests.receivers import http_receiver, smtp_receiver
from spanda_assets_tests.servers import PROJECT_ROOT, dagster_daemon
from spanda_assets_tests.waiting import settled, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEADLINE_S = 300  # the erasure contract: five minutes from the source to silver and gold main
LEAK = "S4821"  # a district student number: no general pattern knows this shape


def _catalog() -> Any:
    return open_catalog(CatalogConfig.from_env())


def _column(namespace: str, table: str, column: str) -> list[Any]:
    t = load_table_or_none(_catalog(), namespace, table)
    if t is None or t.current_snapshot() is None:
        return []
    return t.scan(selected_fields=(column,)).to_arrow().column(0).to_pylist()


def _main(namespace: str, table: str) -> int | None:
    snap = _catalog().load_table((namespace, table)).current_snapshot()
    return snap.snapshot_id if snap else None


def _identifiers(path: Path, scrub: bool) -> None:
    path.write_text(
        "identifiers:\n"
        "  - name: district_student_number\n"
        "    pattern: '\\bS\\d{4}\\b'\n"
        "    category: ID\n"
        f"    scrub: {'true' if scrub else 'false'}\n"
    )


def _sql(db: Path, statement: str, *args: Any) -> Any:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(statement, args).fetchall()
        con.commit()
        return rows
    finally:
        con.close()


def _subject(student_id: int) -> str:
    return Pseudonymizer(load_key()).subject_id(did_of(_catalog(), student_id))


def _post_keys(db: Path, student: int) -> set[str]:
    """The pseudonymous keys gold gives this student's posts."""
    rows = _sql(db, 'SELECT PostID FROM "ForumPosts" WHERE StudentID = ?', student)
    pseudonymizer = Pseudonymizer(load_key())
    return {pseudonymizer.one("forum_posts.post_id", pid) for (pid,) in rows}


def _alerts(receiver: Any, status: str) -> list[dict[str, Any]]:
    return [a for a in receiver.bodies() if a["status"] == status]


def test_the_chain_runs_itself_erases_on_withdrawal_and_gates_a_leak(
    tmp_path: Path, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = spanda_home / "operational.db"
    seed(f"sqlite:///{db}", SeedSizes.preset("tiny"), seed=11, ground_truth=tmp_path / "gt")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(
        PROJECT_ROOT / "spanda_assets/config/dagster.yaml", dagster_home / "dagster.yaml"
    )
    identifiers = tmp_path / "identifiers.yaml"
    _identifiers(identifiers, scrub=False)
    log = tmp_path / "daemon.log"
    settings = {
        "SPANDA_SOURCE_URL": f"sqlite:///{db}",
        "SPANDA_DEMO": "1",
        "SPANDA_IDENTIFIER_PATTERNS": str(identifiers),
        "SPANDA_SENSOR_INTERVAL_SECONDS": "15",
        "DAGSTER_HOME": str(dagster_home),
        # Nobody annotates here: the labeled set's readiness warning (tested with the
        # labeling assets) would be this test's only alert, so none is required.
        "SPANDA_MIN_LABELS_PER_CLASS": "0",
    }
    for k, v in settings.items():
        monkeypatch.setenv(k, v)

    with http_receiver() as hook, smtp_receiver() as mail:
        env = {
            **os.environ,
            "SPANDA_ALERT_WEBHOOK_URL": hook.url,
            "SPANDA_ALERT_SMTP_HOST": mail.host,
            "SPANDA_ALERT_SMTP_PORT": str(mail.port),
            "SPANDA_ALERT_SMTP_FROM": "spanda@localhost",
            "SPANDA_ALERT_SMTP_TO": "data-team@localhost",
        }
        with dagster_daemon(env, log):
            # 1. nobody materializes anything: the sensor extracts, automation does the rest
            wait_until(
                "gold.validated_posts on main",
                lambda: _column("gold", "validated_posts", "post_id"),
                DEADLINE_S,
                log,
            )
            assert _column("silver", "forum_posts", "post_id")
            # gold published, so the annotation tool gets its first tasks by itself
            store = AnnotationStore()
            wait_until("tasks in the annotation store", store.tasks, DEADLINE_S, log)
            settled(log, DEADLINE_S)
            assert hook.bodies() == [], "a healthy platform sends no alert"

            # 2. a withdrawal at the source is erased from silver and gold main in time
            in_gold = set(_column("gold", "validated_posts", "subject_id"))
            tasks = {t.data.post_key for t in store.tasks()}
            student = next(
                s
                for (s,) in _sql(db, 'SELECT DISTINCT StudentID FROM "ForumPosts" ORDER BY 1')
                if _subject(s) in in_gold and _post_keys(db, s) & tasks
            )
            subject = _subject(student)
            (top,) = _sql(db, 'SELECT MAX(ConsentEventID) FROM "ConsentEvents"')[0]
            _sql(
                db,
                'INSERT INTO "ConsentEvents" VALUES (?, ?, ?, ?, ?, ?, ?)',
                top + 1,
                student,
                "research",
                "withdrawn",
                "2027-01-01 00:00:00.000000",
                "web_form",
                "v2.0",
            )
            started = time.monotonic()
            wait_until(
                f"subject {subject} to leave silver and gold main",
                lambda: (
                    subject not in _column("silver", "forum_posts", "subject_id")
                    and subject not in _column("gold", "validated_posts", "subject_id")
                ),
                DEADLINE_S,
                log,
            )
            erased_after = time.monotonic() - started
            print(f"withdrawal erased from silver and gold main in {erased_after:.0f} s")
            assert erased_after < DEADLINE_S
            wait_until(
                f"subject {subject}'s tasks to leave the annotation store",
                lambda: not _post_keys(db, student) & {t.data.post_key for t in store.tasks()},
                DEADLINE_S - (time.monotonic() - started),
                log,
            )

            # 3. a leak the scrubber does not know: the audit holds it back
            settled(
                log, DEADLINE_S
            )  # the runs the withdrawal started have published what they will
            author = next(
                s
                for (s,) in _sql(db, 'SELECT DISTINCT StudentID FROM "ForumPosts" ORDER BY 1')
                if _subject(s) in set(_column("gold", "validated_posts", "subject_id"))
            )
            silver_main = _main("silver", "forum_posts")
            gold_main = _main("gold", "validated_posts")
            (post_id,) = _sql(db, 'SELECT MAX(PostID) + 1 FROM "ForumPosts"')[0]
            _sql(
                db,
                'INSERT INTO "ForumPosts" VALUES (?, ?, ?, ?, ?)',
                post_id,
                author,
                1,
                f"my student number is {LEAK}, can someone check my quiz grade?",
                "2027-01-02 10:00:00.000000",
            )
            failed = wait_until(
                "the residual_pii alert",
                lambda: [a for a in _alerts(hook, "failed") if a["check"] == "residual_pii"],
                DEADLINE_S,
                log,
            )
            # any other alert so far is a failure of its own: say which
            assert len(hook.bodies()) == 1, hook.bodies()
            assert _main("silver", "forum_posts") == silver_main, "main moved past a failed audit"
            assert _main("gold", "validated_posts") == gold_main, "gold read unaudited rows"
            bodies = _column("silver", "forum_posts", "body")
            assert not any(LEAK in (b or "") for b in bodies)
            staged = _catalog().load_table(("silver", "forum_posts"))
            on_branch = staged.scan().use_ref("audit").to_arrow().column("body").to_pylist()
            assert any(LEAK in (b or "") for b in on_branch), "the audit branch keeps it"
            (alert,) = failed
            assert alert["asset"] == "silver/forum_posts" and alert["check"] == "residual_pii"
            assert alert["severity"] == "ERROR" and alert["run_id"]
            assert alert["failing"]["found_district_student_number"] == 1
            assert alert["ui_url"].startswith("http://")
            assert LEAK not in str(alert), "an alert shows keys and counts, never the values"
            time.sleep(45)  # at least two more alert-sensor ticks: the same failure is not news
            assert len(hook.bodies()) == 1, hook.bodies()
            assert len(mail.messages) == 1
            assert "residual_pii" in mail.messages[0]["Subject"]

            # 4. the fix: the scrubber learns the format; new data triggers the next run
            _identifiers(identifiers, scrub=True)
            _sql(
                db,
                'INSERT INTO "ForumPosts" VALUES (?, ?, ?, ?, ?)',
                post_id + 1,
                author,
                1,
                "thanks, found it in the syllabus",
                "2027-01-02 11:00:00.000000",
            )
            wait_until("the resolved alert", lambda: _alerts(hook, "resolved"), DEADLINE_S, log)
            wait_until(
                "gold to publish the fixed post",
                lambda: _main("gold", "validated_posts") != gold_main,
                DEADLINE_S,
                log,
            )
            bodies = _column("silver", "forum_posts", "body")
            assert any("my student number is [ID]" in (b or "") for b in bodies)
            assert not any(LEAK in (b or "") for b in bodies)
            assert [a["status"] for a in hook.bodies()] == ["failed", "resolved"]
            assert len(mail.messages) == 2
