"""Incremental extract on SQLite into a local Iceberg warehouse: correctness and bad input."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from spanda_assets.lib import faults
from spanda_assets.lib.errors import (
    ConcurrentExtractError,
    ConfigError,
    SchemaIncompatibleError,
    SourceTableError,
    SourceUnreachableError,
)
from spanda_assets.lib.extract import pending_rows
from spanda_assets.lib.lakehouse import ensure_namespace
from spanda_assets.lib.source_db import make_engine
from spanda_assets.lib.sources import load_sources, parse_sources
from spanda_assets.lib.watermark import WATERMARK_KEY, read_watermark
from spanda_assets_tests.conftest import (
    TABLES,
    append_batch,
    assert_bronze_equals_source,
    run_extract,
)


def _db_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def test_full_load_equals_source_with_declared_types(tiny_source: str, catalog: Any) -> None:
    for table, name, key in TABLES:
        result = run_extract(tiny_source, catalog, name)
        assert result.full_load and result.rows_read == result.rows_inserted == result.total_rows
        assert_bronze_equals_source(tiny_source, catalog, table, name, key)
    schema = catalog.load_table(("bronze", "students")).schema()
    types = {f.name: str(f.field_type) for f in schema.fields}
    assert types["modified_at"] == "timestamp"  # microseconds, no zone
    assert types["birth_date"] == "date"
    assert types["student_id"] == "long"
    assert schema.find_field("student_id").required
    assert [schema.find_column_name(i) for i in schema.identifier_field_ids] == ["student_id"]
    results = {
        f.name: str(f.field_type)
        for f in catalog.load_table(("bronze", "assessment_results")).schema().fields
    }
    assert results["score"] == "decimal(6, 2)"


def test_incremental_batches_converge_to_source(
    tiny_source: str, catalog: Any, spanda_home: Path
) -> None:
    """After N append/update batches, bronze equals the source (same keys, same values)."""
    for _, name, _ in TABLES:
        run_extract(tiny_source, catalog, name)
    for _ in range(3):
        append_batch(tiny_source, spanda_home)
        for table, name, key in TABLES:
            result = run_extract(tiny_source, catalog, name, batch_rows=37, commit_rows=50)
            assert not result.full_load
            assert_bronze_equals_source(tiny_source, catalog, table, name, key)
    students = run_extract(tiny_source, catalog, "students")
    assert students.rows_inserted == students.rows_updated == 0


def test_incremental_reads_only_new_rows(tiny_source: str, catalog: Any, spanda_home: Path) -> None:
    first = run_extract(tiny_source, catalog, "forum_posts")
    append_batch(tiny_source, spanda_home)
    second = run_extract(tiny_source, catalog, "forum_posts")
    # New posts, plus the one row at the inclusive watermark, recognised as already loaded.
    assert second.rows_read == 100 + 1
    assert second.rows_inserted == 100 and second.rows_skipped_duplicate == 1
    assert second.total_rows == first.total_rows + 100
    assert second.watermark_before == "1000" and second.watermark_after == "1100"


def test_upsert_replaces_changed_students(tiny_source: str, catalog: Any) -> None:
    run_extract(tiny_source, catalog, "students")
    engine = sa.create_engine(tiny_source)
    with engine.begin() as conn:
        conn.execute(
            sa.text('UPDATE "Students" SET "Phone" = :p, "ModifiedAt" = :m WHERE "StudentID" = 5'),
            {"p": "555-000-1111", "m": "2030-01-01 00:00:00.000000"},
        )
    engine.dispose()
    result = run_extract(tiny_source, catalog, "students")
    assert result.rows_updated == 1 and result.rows_inserted == 0
    rows = catalog.load_table(("bronze", "students")).scan(row_filter="student_id = 5").to_arrow()
    assert rows.num_rows == 1 and rows.column("phone")[0].as_py() == "555-000-1111"
    assert result.watermark_after == "2030-01-01 00:00:00"


def test_rerun_without_changes_commits_nothing(tiny_source: str, catalog: Any) -> None:
    for _, name, _ in TABLES:
        run_extract(tiny_source, catalog, name)
    snapshots = {
        n: catalog.load_table(("bronze", n)).current_snapshot().snapshot_id for _, n, _ in TABLES
    }
    for _, name, _ in TABLES:
        again = run_extract(tiny_source, catalog, name)
        assert again.rows_inserted == again.rows_updated == again.commits == 0
    after = {
        n: catalog.load_table(("bronze", n)).current_snapshot().snapshot_id for _, n, _ in TABLES
    }
    assert after == snapshots


def test_watermark_lives_in_the_snapshot_summary(tiny_source: str, catalog: Any) -> None:
    run_extract(tiny_source, catalog, "forum_posts", batch_rows=100, commit_rows=300)
    table = catalog.load_table(("bronze", "forum_posts"))
    marks = []
    for snap in table.snapshots():
        raw = snap.summary[WATERMARK_KEY]
        assert raw, "every extract snapshot carries its watermark"
        marks.append(json.loads(raw)["value"])
    # Committed every 300 rows, each commit with the highest key it contains.
    assert marks == [300, 600, 900, 1000]
    assert read_watermark(table).value == 1000


# ----------------------------------------------------------------------------- ties, NULLs


def _make_events_db(path: str) -> str:
    con = sqlite3.connect(path)
    con.execute(
        'CREATE TABLE "Events" (EventID INTEGER PRIMARY KEY, Label NVARCHAR(20), '
        "ModifiedAt DATETIME)"
    )
    same = "2026-09-01 10:00:00.000000"
    con.executemany(
        'INSERT INTO "Events" VALUES (?, ?, ?)',
        [(i, f"e{i}", same if i > 3 else f"2026-09-01 09:00:0{i}.000000") for i in range(1, 21)],
    )
    con.commit()
    con.close()
    return f"sqlite:///{path}"


EVENTS_APPEND = parse_sources(
    "sources: [{table: Events, primary_key: EventID, cursor: ModifiedAt, mode: append}]"
)
EVENTS_UPSERT = parse_sources(
    "sources: [{table: Events, primary_key: EventID, cursor: ModifiedAt, mode: upsert}]"
)


@pytest.mark.parametrize("sources", [EVENTS_APPEND, EVENTS_UPSERT], ids=["append", "upsert"])
def test_ties_on_non_unique_cursor_are_neither_lost_nor_duplicated(
    tmp_path: Path, catalog: Any, sources: Any
) -> None:
    url = _make_events_db(str(tmp_path / "ev.db"))
    # 17 rows share one ModifiedAt; commits of 5 rows split them across commits.
    run_extract(url, catalog, "events", batch_rows=5, commit_rows=5, sources=sources)
    con = sqlite3.connect(_db_path(url))
    # Late rows arrive with the very same timestamp as the watermark, and one later.
    con.executemany(
        'INSERT INTO "Events" VALUES (?, ?, ?)',
        [(21, "late", "2026-09-01 10:00:00.000000"), (22, "later", "2026-09-01 11:00:00.000000")],
    )
    con.commit()
    con.close()
    result = run_extract(url, catalog, "events", batch_rows=5, commit_rows=5, sources=sources)
    assert result.rows_inserted == 2
    assert_bronze_equals_source(url, catalog, "Events", "events", "EventID")


def test_null_cursor_rows_are_loaded_once(tiny_source: str, catalog: Any) -> None:
    first = run_extract(tiny_source, catalog, "courses")
    assert first.null_cursor_rows == 2  # the seed's two legacy courses
    again = run_extract(tiny_source, catalog, "courses")
    assert again.rows_inserted == again.rows_updated == 0
    assert_bronze_equals_source(tiny_source, catalog, "Courses", "courses", "CourseID")

    url = tiny_source
    con = sqlite3.connect(_db_path(url))
    con.execute('ALTER TABLE "ConsentEvents" ADD COLUMN Seq INTEGER')
    con.execute('UPDATE "ConsentEvents" SET Seq = ConsentEventID WHERE ConsentEventID % 3 <> 0')
    con.commit()
    con.close()
    sources = parse_sources(
        "sources: [{table: ConsentEvents, primary_key: ConsentEventID, cursor: Seq}]"
    )
    run_extract(url, catalog, "consent_events", sources=sources)
    res = run_extract(url, catalog, "consent_events", sources=sources)
    assert res.null_cursor_rows > 0 and res.rows_skipped_duplicate == res.null_cursor_rows + 1
    assert res.rows_inserted == 0
    assert_bronze_equals_source(url, catalog, "ConsentEvents", "consent_events", "ConsentEventID")


# ----------------------------------------------------------------------------- schema changes


def test_new_source_column_evolves_the_iceberg_schema(
    tiny_source: str, catalog: Any, spanda_home: Path
) -> None:
    run_extract(tiny_source, catalog, "students")
    con = sqlite3.connect(_db_path(tiny_source))
    con.execute('ALTER TABLE "Students" ADD COLUMN Pronouns NVARCHAR(20)')
    con.execute(
        "UPDATE \"Students\" SET Pronouns = 'they/them', ModifiedAt = '2031-01-01 00:00:00.000000' "
        "WHERE StudentID <= 3"
    )
    con.commit()
    con.close()
    result = run_extract(tiny_source, catalog, "students")
    assert result.columns_added == ["pronouns"]
    assert result.rows_updated == 3
    table = catalog.load_table(("bronze", "students"))
    assert "pronouns" in table.schema().column_names
    assert_bronze_equals_source(tiny_source, catalog, "Students", "students", "StudentID")


def test_narrowed_column_type_stops_before_writing(tiny_source: str, catalog: Any) -> None:
    run_extract(tiny_source, catalog, "assessment_results")
    table = catalog.load_table(("bronze", "assessment_results"))
    before = table.current_snapshot().snapshot_id
    con = sqlite3.connect(_db_path(tiny_source))
    # Score DECIMAL(6,2) becomes an INTEGER column (rebuild, as SQL Server's ALTER would).
    con.executescript(
        """
        ALTER TABLE "AssessmentResults" RENAME TO old_results;
        CREATE TABLE "AssessmentResults" (ResultID INTEGER PRIMARY KEY, StudentID INTEGER,
            CourseID INTEGER, AssessmentName NVARCHAR(100), Score INTEGER, MaxScore NUMERIC(6,2),
            SubmittedAt DATETIME, AttemptNo INTEGER);
        INSERT INTO "AssessmentResults" SELECT ResultID, StudentID, CourseID, AssessmentName,
            CAST(ROUND(Score) AS INTEGER), MaxScore, SubmittedAt, AttemptNo FROM old_results;
        INSERT INTO "AssessmentResults"
            VALUES (99999, 1, 1, 'Quiz 9', 15, 20, '2026-10-01 00:00:00', 1);
        """
    )
    con.commit()
    con.close()
    with pytest.raises(SchemaIncompatibleError) as err:
        run_extract(tiny_source, catalog, "assessment_results")
    msg = str(err.value)
    assert (
        "bronze.assessment_results" in msg
        and "column Score" in msg
        and "Nothing was written" in msg
    )
    table = catalog.load_table(("bronze", "assessment_results"))
    assert table.current_snapshot().snapshot_id == before
    assert "score" in table.schema().column_names
    assert str(table.schema().find_field("score").field_type) == "decimal(6, 2)"

    # The documented way out: a full refresh rebuilds bronze with the new type.
    result = run_extract(tiny_source, catalog, "assessment_results", full_refresh=True)
    assert result.full_load
    assert (
        str(
            catalog.load_table(("bronze", "assessment_results"))
            .schema()
            .find_field("score")
            .field_type
        )
        == "long"
    )


# ----------------------------------------------------------------------------- bad input


def test_missing_database_file(tmp_path: Path, catalog: Any) -> None:
    with pytest.raises(
        SourceUnreachableError, match=r"no operational database at .*missing\.db.*spanda seed"
    ):
        run_extract(f"sqlite:///{tmp_path / 'missing.db'}", catalog, "students")


def test_missing_table_is_named_and_nothing_written(tmp_path: Path, catalog: Any) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    sqlite3.connect(tmp_path / "empty.db").close()
    with pytest.raises(
        SourceTableError, match=r"source table Students does not exist.*sources file"
    ):
        run_extract(url, catalog, "students")
    assert (
        ("bronze", "students") not in [tuple(t) for t in catalog.list_tables("bronze")]
        if catalog.list_namespaces()
        else True
    )
    assert not catalog.list_namespaces() or not catalog.list_tables("bronze")


def test_missing_cursor_column_is_named(tiny_source: str, catalog: Any) -> None:
    sources = parse_sources(
        "sources: [{table: Students, primary_key: StudentID, cursor: UpdatedAt, mode: upsert}]"
    )
    with pytest.raises(SourceTableError) as err:
        run_extract(tiny_source, catalog, "students", sources=sources)
    msg = str(err.value)
    assert "Students has no cursor column 'UpdatedAt'" in msg and "ModifiedAt" in msg
    assert not catalog.list_namespaces() or not catalog.list_tables("bronze")


def test_missing_primary_key_column_is_named(tiny_source: str, catalog: Any) -> None:
    sources = parse_sources("sources: [{table: Students, primary_key: Id, cursor: ModifiedAt}]")
    with pytest.raises(SourceTableError, match=r"no primary key column 'Id'.*'primary_key'"):
        run_extract(tiny_source, catalog, "students", sources=sources)


def test_dashboard_data_is_a_config_change_only(
    tmp_path: Path, catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The classic example: add DashboardData to the YAML and it extracts incrementally."""
    db = tmp_path / "dash.db"
    con = sqlite3.connect(db)
    con.execute(
        'CREATE TABLE "DashboardData" (RecordID INT PRIMARY KEY, Category NVARCHAR(50), '
        "Value INT, DateRecorded DATE)"
    )
    con.executemany(
        'INSERT INTO "DashboardData" VALUES (?, ?, ?, ?)',
        [(i, f"cat{i % 3}", i * 10, f"2026-01-{i:02d}") for i in range(1, 11)],
    )
    con.commit()
    conf = tmp_path / "sources.yaml"
    conf.write_text(
        "sources:\n  - table: DashboardData\n    primary_key: [RecordID]\n    cursor: RecordID\n"
        "    mode: append\n"
    )
    monkeypatch.setenv("SPANDA_SOURCES_FILE", str(conf))
    url = f"sqlite:///{db}"
    first = run_extract(url, catalog, "dashboard_data", sources=load_sources())
    assert first.rows_inserted == 10
    con.executemany(
        'INSERT INTO "DashboardData" VALUES (?, ?, ?, ?)', [(11, "cat2", 5, "2026-02-01")]
    )
    con.commit()
    con.close()
    second = run_extract(url, catalog, "dashboard_data", sources=load_sources())
    assert second.rows_inserted == 1 and second.total_rows == 11
    assert_bronze_equals_source(url, catalog, "DashboardData", "dashboard_data", "RecordID")
    types = {
        f.name: str(f.field_type)
        for f in catalog.load_table(("bronze", "dashboard_data")).schema().fields
    }
    assert types == {
        "record_id": "long",
        "category": "string",
        "value": "long",
        "date_recorded": "date",
    }


def test_sqlalchemy_reader_gives_the_same_bronze(
    tiny_source: str, catalog: Any, spanda_home: Path
) -> None:
    for table, name, key in TABLES:
        result = run_extract(tiny_source, catalog, name, reader="sqlalchemy")
        assert result.reader == "sqlalchemy"
        assert_bronze_equals_source(tiny_source, catalog, table, name, key)


def test_connectorx_falls_back_when_it_cannot_type_a_null_numeric(
    tiny_source: str, catalog: Any
) -> None:
    # Enrollments.FinalGrade NUMERIC(5,2) is NULL in the first rows: connectorx cannot type it.
    result = run_extract(tiny_source, catalog, "enrollments")
    assert result.reader == "sqlalchemy"
    posts = run_extract(tiny_source, catalog, "forum_posts")
    assert posts.reader == "connectorx"


def test_pending_rows_counts_what_the_sensor_needs(
    tiny_source: str, catalog: Any, spanda_home: Path
) -> None:
    (source,) = [s for s in load_sources() if s.name == "forum_posts"]
    engine = make_engine(tiny_source)
    try:
        assert pending_rows(engine, catalog, source) == (1000, "1000")
        run_extract(tiny_source, catalog, "forum_posts")
        assert pending_rows(engine, catalog, source) == (0, "")
        append_batch(tiny_source, spanda_home)
        assert pending_rows(engine, catalog, source) == (100, "1100")
    finally:
        engine.dispose()


def test_timestamps_are_microseconds(tmp_path: Path, catalog: Any) -> None:
    db = tmp_path / "ts.db"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "T" (Id INTEGER PRIMARY KEY, At DATETIME)')
    con.execute("INSERT INTO \"T\" VALUES (1, '2026-09-01 08:00:00.123456')")
    con.commit()
    con.close()
    sources = parse_sources("sources: [{table: T, primary_key: Id, cursor: Id}]")
    run_extract(f"sqlite:///{db}", catalog, "t", sources=sources)
    arrow = catalog.load_table(("bronze", "t")).scan().to_arrow()
    assert arrow.schema.field("at").type == pa.timestamp("us")
    assert arrow.column("at")[0].as_py() == dt.datetime(2026, 9, 1, 8, 0, 0, 123456)


def test_a_concurrent_commit_is_refused_not_duplicated(
    tiny_source: str, catalog: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second line of defence behind the per-table pool: no rebased retry of a commit."""
    run_extract(tiny_source, catalog, "forum_posts")
    seed_more = sqlite3.connect(_db_path(tiny_source))
    seed_more.execute(
        "INSERT INTO \"ForumPosts\" VALUES (1001, 1, 1, 'new', '2027-01-01 00:00:00.000000')"
    )
    seed_more.commit()
    seed_more.close()
    # A second extract of the same table commits while the first one is about to.
    real_point = faults.point

    def other_run_commits_first(name: str) -> None:
        if name == "before_commit":
            monkeypatch.setattr(faults, "point", real_point)
            run_extract(tiny_source, catalog, "forum_posts")
        real_point(name)

    monkeypatch.setattr(faults, "point", other_run_commits_first)
    with pytest.raises(
        ConcurrentExtractError, match=r"bronze\.forum_posts: the commit was refused"
    ):
        run_extract(tiny_source, catalog, "forum_posts")
    assert_bronze_equals_source(tiny_source, catalog, "ForumPosts", "forum_posts", "PostID")


def test_duplicate_keys_in_an_upsert_source_keep_the_newest_row(
    tmp_path: Path, catalog: Any
) -> None:
    """A declared key that the source does not enforce (a view, a table without the
    constraint): inside one batch, and across the commits of a first load, the row with
    the newest cursor wins and bronze holds each key once."""
    db = tmp_path / "dupes.db"
    con = sqlite3.connect(db)
    con.execute('CREATE TABLE "Grades" (Id INTEGER, Grade TEXT, ModifiedAt TEXT)')
    rows = [(i, f"v{i}", f"2026-01-01 00:00:{i % 60:02d}") for i in range(1, 51)]
    # key 7 again with a later cursor, far enough to land in another commit of 10 rows
    rows += [(7, "v7-newer", "2026-01-01 00:05:00"), (3, "v3-newer", "2026-01-01 00:05:00")]
    con.executemany('INSERT INTO "Grades" VALUES (?, ?, ?)', rows)
    con.commit()
    sources = parse_sources(
        "sources: [{table: Grades, primary_key: Id, cursor: ModifiedAt, mode: upsert, "
        "column_types: {ModifiedAt: timestamp}}]"
    )
    url = f"sqlite:///{db}"
    first = run_extract(url, catalog, "grades", sources=sources, commit_rows=10, batch_rows=10)
    assert first.commits > 1
    bronze = catalog.load_table(("bronze", "grades")).scan().to_arrow()
    ids = bronze["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 50
    grades = dict(zip(ids, bronze["grade"].to_pylist(), strict=True))
    assert grades[7] == "v7-newer" and grades[3] == "v3-newer"
    # an incremental batch that holds one key twice
    con.executemany(
        'INSERT INTO "Grades" VALUES (?, ?, ?)',
        [(9, "v9-a", "2026-01-02 00:00:00"), (9, "v9-b", "2026-01-02 00:00:01")],
    )
    con.commit()
    con.close()
    run_extract(url, catalog, "grades", sources=sources, commit_rows=10, batch_rows=10)
    bronze = catalog.load_table(("bronze", "grades")).scan().to_arrow()
    ids = bronze["id"].to_pylist()
    assert len(ids) == len(set(ids)) == 50
    assert dict(zip(ids, bronze["grade"].to_pylist(), strict=True))[9] == "v9-b"


def test_unknown_column_type_in_sources_yaml_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"column_types.Grade: unknown type 'money'"):
        parse_sources(
            "sources: [{table: G, primary_key: Id, cursor: Id, column_types: {Grade: money}}]"
        )


def test_two_steps_creating_a_namespace_at_once_both_succeed(catalog: Any) -> None:
    """The first run's bronze steps all create `bronze`; in a SQL catalog the loser of that
    race gets a unique-key violation, not NamespaceAlreadyExistsError."""

    class Raced:
        def __init__(self, inner: Any, won_by_other: bool) -> None:
            self.inner, self.won_by_other = inner, won_by_other

        def create_namespace_if_not_exists(self, namespace: str) -> None:
            if self.won_by_other:
                self.inner.create_namespace_if_not_exists(namespace)  # the other process
            raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed"))

        def list_namespaces(self) -> Any:
            return self.inner.list_namespaces()

    ensure_namespace(Raced(catalog, won_by_other=True), "bronze")  # type: ignore[arg-type]
    assert ("bronze",) in catalog.list_namespaces()
    with pytest.raises(IntegrityError):  # a real failure still surfaces
        ensure_namespace(Raced(catalog, won_by_other=False), "silver")  # type: ignore[arg-type]
