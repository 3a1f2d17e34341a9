"""Writing the demo data: the operational database, the ground truth, later batches.

`seed()` creates the schema, generates rows with the pure generator modules and
inserts them; with `append=True` it reads the database's current state (top
keys, latest timestamps, existing students) to generate the next batch, and with
`drift=True` as well that batch's forum posts are clearly shifted, for the drift
checks to find. Ground truth goes to Parquet files beside the database, never into it.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from spanda_assets.lib.domain import TABLE_NAMES, domain_metadata
from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import (
    BASE_TIME,
    Roster,
    Row,
    SeedSizes,
    consent_rows,
    course_rows,
    enrollment_rows,
    result_chunks,
    roster,
    student_rows,
)
from spanda_assets.lib.seed.later import later_batch
from spanda_assets.lib.seed.posts import GROUND_TRUTH_SCHEMA, post_chunks

Say = Callable[[str], None]


@dataclass
class SeedReport:
    url: str
    appended: bool
    rows: dict[str, int]
    ground_truth: Path
    drift: bool = False


def seed(
    url: str,
    sizes: SeedSizes,
    *,
    seed: int = 42,
    append: bool = False,
    drift: bool = False,
    ground_truth: Path,
    progress: Say | None = None,
) -> SeedReport:
    """Create (or, with `append`, extend) the demo operational database at `url`.

    `drift` (with `append` only) shifts the appended forum posts (`posts.DRIFT_*`):
    a batch the drift checks must flag, with ground truth kept as for any other.
    """
    if drift and not append:
        raise ValueError("drift shifts an appended batch: it needs append=True")
    say = progress or (lambda _msg: None)
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database:
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    schema = None if engine.dialect.name == "sqlite" else "dbo"
    md = domain_metadata(schema)
    try:
        if schema:
            with engine.begin() as conn:
                if engine.dialect.name == "mssql":
                    conn.execute(sa.text("IF SCHEMA_ID('dbo') IS NULL EXEC('CREATE SCHEMA dbo')"))
                else:
                    conn.execute(sa.text('CREATE SCHEMA IF NOT EXISTS "dbo"'))
        existing = set(sa.inspect(engine).get_table_names(schema=schema))
        if append and not set(TABLE_NAMES) <= existing:
            raise ValueError(
                f"--append needs an existing demo database at {u.render_as_string()}; "
                "run `spanda seed` without --append first"
            )
        if not append:
            if existing & set(TABLE_NAMES):
                md.drop_all(engine)
            md.create_all(engine)
        writer = Writer(engine, md)
        ground_truth.mkdir(parents=True, exist_ok=True)
        try:
            if append:
                rows = _append(engine, md, writer, sizes, seed, ground_truth, say, drift)
            else:
                for old in ground_truth.glob("posts-*.parquet"):
                    old.unlink()
                rows = _initial(writer, sizes, seed, ground_truth, say)
        finally:
            writer.close()
    finally:
        engine.dispose()
    return SeedReport(
        url=u.render_as_string(),
        appended=append,
        rows=rows,
        ground_truth=ground_truth,
        drift=drift,
    )


def read_ground_truth(gt: Path) -> pa.Table:
    """All ground-truth parts (initial load and every appended batch)."""
    parts = sorted(gt.glob("posts-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no ground truth under {gt}; run `spanda seed` first")
    return pa.concat_tables(pq.read_table(p) for p in parts)


class Writer:
    """Inserts rows in chunks: raw sqlite3 for SQLite (fast), SQLAlchemy elsewhere."""

    def __init__(self, engine: Engine, md: sa.MetaData) -> None:
        self.engine = engine
        self.md = md
        self.sqlite_path = (
            make_url(str(engine.url)).database if engine.dialect.name == "sqlite" else None
        )
        self._con: sqlite3.Connection | None = None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def insert(self, table: str, rows: list[Row]) -> None:
        if not rows:
            return
        if self.sqlite_path:
            cols = list(rows[0])
            sql = (
                f'INSERT INTO "{table}" ({", ".join(cols)}) VALUES ({", ".join("?" for _ in cols)})'
            )
            if self._con is None:
                self._con = sqlite3.connect(self.sqlite_path)
                # One chunk per transaction: a crash loses at most the chunk in flight.
                self._con.execute("PRAGMA synchronous=OFF")
            with self._con:
                self._con.executemany(sql, ([_sqlite_value(r[c]) for c in cols] for r in rows))
            return
        t = self.md.tables[f"{self.md.schema}.{table}" if self.md.schema else table]
        with self.engine.begin() as conn:
            conn.execute(t.insert(), rows)

    def upsert(self, table: str, key: str, rows: list[Row]) -> None:
        t = self.md.tables[f"{self.md.schema}.{table}" if self.md.schema else table]
        with self.engine.begin() as conn:
            for r in rows:
                values = {k: v for k, v in r.items() if k != key}
                conn.execute(t.update().where(t.c[key] == r[key]).values(**values))


def _sqlite_value(v: Any) -> Any:
    # The same text format SQLAlchemy uses for SQLite, so both read it back alike.
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


def _initial(writer: Writer, sizes: SeedSizes, seed: int, gt: Path, say: Say) -> dict[str, int]:
    g = Draws(seed)
    when = BASE_TIME
    students = student_rows(g, 1, sizes.students, when)
    writer.insert("Students", students)
    courses = course_rows(g, sizes.courses, when)
    writer.insert("Courses", courses)
    enrollments = enrollment_rows(g, students, sizes.courses, 1, when)
    writer.insert("Enrollments", enrollments)
    consent = consent_rows(g, students, when)
    writer.insert("ConsentEvents", consent)
    who = roster(students, courses)
    say(f"students={len(students)} courses={len(courses)} enrollments={len(enrollments)}")
    n_posts = _write_posts(g, writer, who, 1, sizes.posts, when, gt, say)
    n_results = _write_results(g, writer, who, 1, sizes.results, when)
    return {
        "Students": len(students),
        "Courses": len(courses),
        "Enrollments": len(enrollments),
        "ForumPosts": n_posts,
        "AssessmentResults": n_results,
        "ConsentEvents": len(consent),
    }


def _append(
    engine: Engine,
    md: sa.MetaData,
    writer: Writer,
    sizes: SeedSizes,
    seed: int,
    gt: Path,
    say: Say,
    drift: bool = False,
) -> dict[str, int]:
    tables = {t.name: t for t in md.tables.values()}
    with engine.connect() as conn:
        max_post = int(
            conn.execute(sa.select(sa.func.max(tables["ForumPosts"].c.PostID))).scalar() or 0
        )
        latest = [
            conn.execute(sa.select(sa.func.max(tables[t].c[c]))).scalar()
            for t, c in (
                ("Students", "ModifiedAt"),
                ("Enrollments", "ModifiedAt"),
                ("ForumPosts", "CreatedAt"),
                ("ConsentEvents", "RecordedAt"),
            )
        ]
        # Explicit order: the same seed must give the same batch on every database.
        st, co = tables["Students"], tables["Courses"]
        students = [dict(r._mapping) for r in conn.execute(sa.select(st).order_by(st.c.StudentID))]
        courses = [dict(r._mapping) for r in conn.execute(sa.select(co).order_by(co.c.CourseID))]
        max_ids = {
            name: int(conn.execute(sa.select(sa.func.max(tables[name].c[key]))).scalar() or 0)
            for name, key in (
                ("Students", "StudentID"),
                ("Enrollments", "EnrollmentID"),
                ("AssessmentResults", "ResultID"),
                ("ConsentEvents", "ConsentEventID"),
            )
        }
        eid = tables["Enrollments"].c.EnrollmentID
        enrollment_ids = [int(r[0]) for r in conn.execute(sa.select(eid).order_by(eid))]
    # Salted by the top PostID: each batch draws differently from the ones before it.
    g = Draws(seed, salt=max_post + 1)
    stamps = [_as_datetime(v) for v in latest if v is not None]
    when = (max(stamps) if stamps else BASE_TIME) + dt.timedelta(hours=1)
    when = when.replace(second=0, microsecond=0)

    batch = later_batch(g, students, enrollment_ids, len(courses), max_ids, when)
    writer.insert("Students", batch.new_students)
    writer.upsert("Students", "StudentID", batch.changed_students)
    writer.upsert("Enrollments", "EnrollmentID", batch.graded_enrollments)
    writer.insert("Enrollments", batch.new_enrollments)
    writer.insert("ConsentEvents", batch.consent)

    who = roster(students + batch.new_students, courses)
    new_posts = max(1, sizes.posts // 10)
    new_results = max(1, sizes.results // 10)
    n_posts = _write_posts(g, writer, who, max_post + 1, new_posts, when, gt, say, drift)
    n_results = _write_results(g, writer, who, max_ids["AssessmentResults"] + 1, new_results, when)
    return {
        "Students": len(batch.new_students) + len(batch.changed_students),
        "Courses": 0,
        "Enrollments": len(batch.new_enrollments) + len(batch.graded_enrollments),
        "ForumPosts": n_posts,
        "AssessmentResults": n_results,
        "ConsentEvents": len(batch.consent),
    }


def _write_posts(
    g: Draws,
    writer: Writer,
    who: Roster,
    start_id: int,
    count: int,
    when: dt.datetime,
    gt: Path,
    say: Say,
    drift: bool = False,
) -> int:
    """ForumPosts into the database, their ground truth into one Parquet part per batch."""
    if count <= 0:
        return 0
    written = 0
    path = gt / f"posts-{start_id:012d}.parquet"
    with pq.ParquetWriter(path, GROUND_TRUTH_SCHEMA) as out:
        for rows, truth in post_chunks(g, who, start_id, count, when, drift=drift):
            writer.insert("ForumPosts", rows)
            out.write_table(truth)
            written += len(rows)
            if written % 500_000 == 0:
                say(f"posts: {written:,}/{count:,}")
    return written


def _write_results(
    g: Draws, writer: Writer, who: Roster, start_id: int, count: int, when: dt.datetime
) -> int:
    for rows in result_chunks(g, who, start_id, count, when):
        writer.insert("AssessmentResults", rows)
    return count


def _as_datetime(v: Any) -> dt.datetime:
    # SQLite hands timestamps back as text; the other databases as datetimes.
    if isinstance(v, dt.datetime):
        return v
    return dt.datetime.fromisoformat(str(v))
