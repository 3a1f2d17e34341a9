"""What write-audit-publish costs, and how fast an erasure reaches gold under the daemon.

    python benchmarks/wap.py [--rows 1000000] [--new-rows 1000] [--increments 3] [--daemon]

Part 1: one stage at a time (silver.forum_posts, gold.validated_posts) on a table
of `--rows` rows, then `--increments` increments of `--new-rows`. Each increment
is timed as its step runs now and as it ran before write-audit-publish:

* with WAP: write to the audit branch, audit what main lacks (residual-PII scan;
  Pandera + GX), publish (move main);
* without: the same write committed straight to main, then the same checks on
  the rows that write added (the old order: data readable before it is checked).

Both include the write and the checks; the difference is the branch bookkeeping,
the audit's read of the staged snapshot and the publish commit. Target: WAP adds
at most 20% to the step.

Part 2 (`--daemon`): the tiny demo under the real `dagster-daemon`; a consent
withdrawal is inserted in the source and the wall time until the student is gone
from silver and gold main is printed (the contract: under 5 minutes).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ingest
import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.defs.privacy.assets import residual_audit
from spanda_assets.defs.publishing import write_audit_publish
from spanda_assets.defs.validation.checks import contract_audits
from spanda_assets.lib import writes
from spanda_assets.lib.extract import extract_table
from spanda_assets.lib.incremental import rows_added_after
from spanda_assets.lib.lakehouse import CatalogConfig, load_table_or_none, open_catalog
from spanda_assets.lib.privacy.policy import policy_for
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.privacy.residual import ResidualScanner, ScanReport
from spanda_assets.lib.privacy.silver import SilverInputs, stage_silver
from spanda_assets.lib.privacy.subjects import did_of
from spanda_assets.lib.readers import make_reader
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets.lib.source_db import make_engine
from spanda_assets.lib.sources import load_sources
from spanda_assets.lib.validation.contracts import gx_frame, load_suite, run_gx, run_pandera
from spanda_assets.lib.validation.gold import SPECS
from spanda_assets.lib.validation.publish import GoldConsent, stage_gold
from spanda_assets_tests.servers import PROJECT_ROOT, dagster_daemon

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def _catalog(work: Path) -> Any:
    return open_catalog(
        CatalogConfig(uri=f"sqlite:///{work / 'catalog.db'}", warehouse=(work / "wh").as_uri())
    )


def _add_posts(db: Path, n: int, offset: int) -> None:
    con = sqlite3.connect(db)
    top = int(con.execute('SELECT MAX(PostID) FROM "ForumPosts"').fetchone()[0])
    con.executemany(
        'INSERT INTO "ForumPosts" VALUES (?, ?, ?, ?, ?)',
        [
            (
                top + i,
                1 + (i + offset) % 100,
                1 + i % 10,
                f"new post {i} about recursion, due friday",
                "2027-01-01 00:00:00.000000",
            )
            for i in range(1, n + 1)
        ],
    )
    con.commit()
    con.close()


def _restore(db: Path, top: int) -> None:
    con = sqlite3.connect(db)
    con.execute('DELETE FROM "ForumPosts" WHERE PostID > ?', (top,))
    con.commit()
    con.close()


def _extract(db: Path, catalog: Any) -> None:
    url = f"sqlite:///{db}"
    engine = make_engine(url)
    try:
        extract_table(
            engine=engine,
            reader=make_reader("auto", url, engine),
            catalog=catalog,
            source=next(s for s in load_sources() if s.name == "forum_posts"),
            batch_rows=100_000,
            commit_rows=500_000,
        )
    finally:
        engine.dispose()


def _silver_inputs(db: Path) -> Any:
    con = sqlite3.connect(db)
    students = [s for (s,) in con.execute('SELECT StudentID FROM "Students"')]
    con.close()
    policy = policy_for("forum_posts")
    return SilverInputs(
        policy=policy,
        pseudonymizer=Pseudonymizer(bytes(32)),
        subjects={s: f"ps_{s:032x}" for s in students},
        active=set(students),
        consent_events=pa.table(
            {"consent_event_id": pa.array([], pa.int64()), "student_id": pa.array([], pa.int64())}
        ),
        roster=None,
        on=dt.date.today(),
        upsert=False,
        rules=policy.fingerprint(),
    )


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def _top_post_id(db: Path) -> int:
    con = sqlite3.connect(db)
    top = int(con.execute('SELECT MAX(PostID) FROM "ForumPosts"').fetchone()[0])
    con.close()
    return top


@dataclass
class _Timings:
    """Per increment: the write (t0-t1), the audits and publish (t1-t2), and the same checks
    run after the fact as before write-audit-publish (t2-t3). With WAP a run costs write +
    audit_publish; without it, write + check_after."""

    write: list[float] = field(default_factory=list)
    audit_publish: list[float] = field(default_factory=list)
    check_after: list[float] = field(default_factory=list)

    def add(self, t0: float, t1: float, t2: float, t3: float) -> None:
        self.write.append(t1 - t0)
        self.audit_publish.append(t2 - t1)
        self.check_after.append(t3 - t2)

    def summary(self, full: float, rows: int) -> dict[str, Any]:
        on = [w + a for w, a in zip(self.write, self.audit_publish, strict=True)]
        off = [w + c for w, c in zip(self.write, self.check_after, strict=True)]
        return {
            "full_seconds": full,
            "rows": rows,
            "on": _median(on),
            "off": _median(off),
            "write": _median(self.write),
            "audit_publish": _median(self.audit_publish),
            "check_after": _median(self.check_after),
        }


def silver_part(db: Path, work: Path, increments: int, new_rows: int) -> dict[str, Any]:
    """silver.forum_posts: scrub + consent + write, then the residual-PII audit."""
    catalog = _catalog(work)
    _extract(db, catalog)
    inputs = _silver_inputs(db)
    start = time.perf_counter()
    stage_silver(
        catalog=catalog, bronze=catalog.load_table(("bronze", "forum_posts")), inputs=inputs
    )
    silver = catalog.load_table(("silver", "forum_posts"))
    write_audit_publish(silver, [residual_audit(catalog, "post_id")])
    full = time.perf_counter() - start
    top = _top_post_id(db)
    timings = _Timings()
    try:
        for i in range(increments):
            _add_posts(db, new_rows, offset=i * new_rows)
            _extract(db, catalog)
            bronze = catalog.load_table(("bronze", "forum_posts"))
            t0 = time.perf_counter()
            stage_silver(catalog=catalog, bronze=bronze, inputs=inputs)
            t1 = time.perf_counter()
            silver = catalog.load_table(("silver", "forum_posts"))
            before = writes.sequence(silver.current_snapshot())
            outcome = write_audit_publish(silver, [residual_audit(catalog, "post_id")])
            assert outcome.passed, outcome.audits
            t2 = time.perf_counter()
            # Without WAP the same rows were on main already and the check read them there.
            silver.refresh()
            report = ScanReport()
            scanner = ResidualScanner()
            for batch in rows_added_after(silver, before, 100_000):
                scanner.scan(pa.Table.from_batches([batch]), "post_id", report)
            timings.add(t0, t1, t2, time.perf_counter())
    finally:
        _restore(db, top)
    return timings.summary(full, writes.row_count(catalog.load_table(("silver", "forum_posts"))))


def gold_part(db: Path, work: Path, increments: int, new_rows: int) -> dict[str, Any]:
    """gold.validated_posts: rules + quarantine + write, then Pandera and GX audits."""
    catalog = _catalog(work)
    silver = catalog.load_table(("silver", "forum_posts"))
    keys = silver.scan(selected_fields=("subject_id", "course_id")).to_arrow()
    subjects = set(pc.unique(keys["subject_id"]).to_pylist()) | {
        f"ps_{s:032x}" for s in range(1, 101)
    }
    courses = sorted(set(pc.unique(keys["course_id"]).to_pylist()) | set(range(1, 11)))
    catalog.create_table(
        ("silver", "courses"), schema=pa.schema([pa.field("course_id", pa.int64())])
    ).append(pa.table({"course_id": pa.array(courses, pa.int64())}))
    catalog.create_table(
        ("silver", "students"), schema=pa.schema([pa.field("subject_id", pa.string())])
    ).append(pa.table({"subject_id": pa.array(sorted(subjects), pa.string())}))
    consent = GoldConsent(active=subjects, watermark=0, changed_since=lambda _: set())
    spec = SPECS["validated_posts"]
    start = time.perf_counter()
    stage_gold(catalog, spec, consent, upsert=False)
    gold = catalog.load_table(("gold", "validated_posts"))
    first = write_audit_publish(gold, contract_audits(catalog, "validated_posts"))
    assert first.passed, [a.failing for a in first.audits if not a.passed]
    full = time.perf_counter() - start
    inputs = _silver_inputs(db)
    top = _top_post_id(db)
    timings = _Timings()
    try:
        for i in range(increments):
            _add_posts(db, new_rows, offset=10_000 + i * new_rows)
            _extract(db, catalog)
            stage_silver(
                catalog=catalog, bronze=catalog.load_table(("bronze", "forum_posts")), inputs=inputs
            )
            writes.publish(catalog.load_table(("silver", "forum_posts")))
            t0 = time.perf_counter()
            stage_gold(catalog, spec, consent, upsert=False)
            t1 = time.perf_counter()
            gold = catalog.load_table(("gold", "validated_posts"))
            before = writes.sequence(gold.current_snapshot())
            outcome = write_audit_publish(gold, contract_audits(catalog, "validated_posts"))
            assert outcome.passed, [a.failing for a in outcome.audits if not a.passed]
            t2 = time.perf_counter()
            gold.refresh()
            run_pandera("validated_posts", gold, {"course_id": courses}, "post_id", before)
            frame = gx_frame(gold, load_suite("validated_posts")["columns"], before)
            run_gx("validated_posts", frame, work / "gx", "post_id")
            timings.add(t0, t1, t2, time.perf_counter())
    finally:
        _restore(db, top)
    return timings.summary(full, writes.row_count(catalog.load_table(("gold", "validated_posts"))))


def daemon_part() -> float:
    """Seconds from a withdrawal in the source to its erasure from silver and gold main."""
    home = Path(tempfile.mkdtemp(prefix="spanda-wap-daemon-"))
    db = home / "operational.db"
    os.environ.update(
        SPANDA_HOME=str(home),
        SPANDA_DEMO="1",
        SPANDA_SOURCE_URL=f"sqlite:///{db}",
        SPANDA_SENSOR_INTERVAL_SECONDS="15",
        DAGSTER_HOME=str(home / "dagster"),
    )
    (home / "dagster").mkdir()
    shutil.copyfile(
        PROJECT_ROOT / "spanda_assets/config/dagster.yaml", home / "dagster/dagster.yaml"
    )
    seed(f"sqlite:///{db}", SeedSizes.preset("tiny"), seed=11, ground_truth=home / "gt")

    def column(ns: str, name: str, col: str) -> list[Any]:
        t = load_table_or_none(open_catalog(CatalogConfig.from_env()), ns, name)
        if t is None or t.current_snapshot() is None:
            return []
        return t.scan(selected_fields=(col,)).to_arrow().column(0).to_pylist()

    def wait(pred: Any, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(2)
        raise TimeoutError("the daemon did not get there in time")

    try:
        with dagster_daemon(dict(os.environ), home / "daemon.log"):
            wait(lambda: column("gold", "validated_posts", "post_id"), 600)
            catalog = open_catalog(CatalogConfig.from_env())
            gold = set(column("gold", "validated_posts", "subject_id"))
            ps = Pseudonymizer(load_key())
            con = sqlite3.connect(db)
            students = [s for (s,) in con.execute('SELECT DISTINCT StudentID FROM "ForumPosts"')]
            student = next(s for s in students if ps.subject_id(did_of(catalog, s)) in gold)
            subject = ps.subject_id(did_of(catalog, student))
            (top,) = con.execute('SELECT MAX(ConsentEventID) FROM "ConsentEvents"').fetchone()
            con.execute(
                'INSERT INTO "ConsentEvents" VALUES (?, ?, ?, ?, ?, ?, ?)',
                (top + 1, student, "research", "withdrawn", "2027-01-01 00:00:00", "web", "v2"),
            )
            con.commit()
            con.close()
            start = time.monotonic()
            wait(
                lambda: (
                    subject not in column("silver", "forum_posts", "subject_id")
                    and subject not in column("gold", "validated_posts", "subject_id")
                ),
                600,
            )
            return time.monotonic() - start
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new-rows", type=int, default=1000)
    parser.add_argument("--increments", type=int, default=3)
    parser.add_argument("--daemon", action="store_true", help="also time a withdrawal")
    args = parser.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("SPANDA_DEMO", "1")

    db = ingest.ensure_source(args.rows)
    work = Path(tempfile.mkdtemp(prefix="spanda-wap-"))
    os.environ["SPANDA_HOME"] = str(work)
    print(
        f"\n{args.rows:,} forum posts; increments of {args.new_rows:,} rows, "
        f"median of {args.increments}\n"
    )
    print("building silver.forum_posts (full load) ...", flush=True)
    silver = silver_part(db, work, args.increments, args.new_rows)
    print("building gold.validated_posts (full load) ...", flush=True)
    gold = gold_part(db, work, args.increments, args.new_rows)
    head = f"{'stage (increment)':<26}{'write':>8}{'audit+publish':>15}{'check after':>13}"
    head += f"{'step, WAP':>11}{'step, no WAP':>14}{'WAP adds':>10}"
    print("\n" + head)
    for name, r in (("silver.forum_posts", silver), ("gold.validated_posts", gold)):
        print(
            f"{name:<26}{r['write']:>8.2f}{r['audit_publish']:>15.2f}{r['check_after']:>13.2f}"
            f"{r['on']:>11.2f}{r['off']:>14.2f}{r['on'] / r['off'] - 1:>10.0%}"
        )
    print("(seconds; target: WAP adds at most 20% to the step)")
    print(
        f"full loads: silver {silver['rows']:,} rows in {silver['full_seconds']:.1f}s, "
        f"gold {gold['rows']:,} rows in {gold['full_seconds']:.1f}s (write, audit, publish)"
    )
    if args.daemon:
        print("\ntiming a consent withdrawal under dagster-daemon (tiny demo) ...", flush=True)
        seconds = daemon_part()
        print(
            "withdrawal in the source -> gone from silver and gold main: "
            f"{seconds:.0f}s (limit 300s)"
        )


if __name__ == "__main__":
    main()
