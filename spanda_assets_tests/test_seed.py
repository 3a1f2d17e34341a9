"""The demo database: deterministic, realistic, with ground truth kept outside the DB."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pyarrow.compute as pc
import sqlalchemy as sa

from spanda_assets.lib.domain import TABLE_NAMES
from spanda_assets.lib.seed import PLACES, SeedSizes, read_ground_truth, seed

RESTRICTED = {
    "036",
    "059",
    "063",
    "102",
    "203",
    "556",
    "692",
    "790",
    "821",
    "823",
    "830",
    "831",
    "878",
    "879",
    "884",
    "890",
    "893",
}


def _digest(url: str) -> str:
    engine = sa.create_engine(url)
    h = hashlib.sha256()
    with engine.connect() as conn:
        for table in TABLE_NAMES:
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}" ORDER BY 1')):
                h.update(repr(tuple(row)).encode())
    engine.dispose()
    return h.hexdigest()


def test_same_seed_same_data(tmp_path: Path) -> None:
    sizes = SeedSizes(students=50, courses=5, posts=200, results=100)
    a, b, c = (f"sqlite:///{tmp_path / n}.db" for n in "abc")
    seed(a, sizes, seed=1, ground_truth=tmp_path / "ga")
    seed(b, sizes, seed=1, ground_truth=tmp_path / "gb")
    seed(c, sizes, seed=2, ground_truth=tmp_path / "gc")
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    seed(a, sizes, seed=1, append=True, ground_truth=tmp_path / "ga")
    seed(b, sizes, seed=1, append=True, ground_truth=tmp_path / "gb")
    assert _digest(a) == _digest(b)


def test_realistic_edge_cases_are_present(tiny_source: str) -> None:
    engine = sa.create_engine(tiny_source)
    with engine.connect() as conn:
        students = [dict(r._mapping) for r in conn.execute(sa.text('SELECT * FROM "Students"'))]
        null_courses = conn.execute(
            sa.text('SELECT COUNT(*) FROM "Courses" WHERE ModifiedAt IS NULL')
        ).scalar()
        ties = conn.execute(
            sa.text('SELECT COUNT(*) - COUNT(DISTINCT ModifiedAt) FROM "Students"')
        ).scalar()
    engine.dispose()
    zips = {s["ZipCode"][:3] for s in students}
    assert zips & RESTRICTED, "some students live in restricted ZIP3 areas"
    assert any("-" in s["ZipCode"] for s in students), "some ZIP+4 codes"
    from spanda_assets.lib.privacy.generalize import AGE_CAP, age_on

    today = dt.date.today()
    ages = [age_on(dt.date.fromisoformat(s["BirthDate"]), today) for s in students]
    assert any(a > AGE_CAP for a in ages), "some students are over 89 today"
    assert all(len(s["SSN"]) == 11 and s["SSN"][3] == "-" for s in students)
    assert any(":" in s["LastLoginIP"] for s in students) and any(
        "." in s["LastLoginIP"] for s in students
    )
    assert null_courses == 2 and ties > 0
    assert len(PLACES) > 40


def test_ground_truth_spans_match_the_post_text(tiny_source: str, spanda_home: Path) -> None:
    truth = read_ground_truth(spanda_home / "ground_truth")
    assert truth.num_rows == 1000
    engine = sa.create_engine(tiny_source)
    with engine.connect() as conn:
        bodies = dict(conn.execute(sa.text('SELECT PostID, Body FROM "ForumPosts"')).all())
        tables = set(sa.inspect(engine).get_table_names())
    engine.dispose()
    assert tables == set(TABLE_NAMES)  # the ground truth never enters the operational DB
    seen = set()
    for row in truth.to_pylist():
        body = bodies[row["post_id"]]
        for span in row["pii_spans"]:
            text = body[span["start"] : span["end"]]
            seen.add(span["category"])
            if span["category"] == "EMAIL":
                assert "@" in text
            elif span["category"] == "SSN":
                assert len(text) == 11
            elif span["category"] == "URL":
                assert "." in text and "/" in text
            assert text.strip() == text and text
    assert {"NAME", "EMAIL", "PHONE", "ID", "URL", "DATE"} <= seen
    urgent_share = pc.mean(truth.column("urgent").cast("int8")).as_py()
    assert 0.12 < urgent_share < 0.35


def test_append_adds_later_changes(tiny_source: str, spanda_home: Path) -> None:
    engine = sa.create_engine(tiny_source)

    def stats() -> tuple[int, str, int]:
        with engine.connect() as conn:
            return tuple(
                conn.execute(
                    sa.text(
                        'SELECT (SELECT MAX(PostID) FROM "ForumPosts"), '
                        '(SELECT MAX(ModifiedAt) FROM "Students"), '
                        "(SELECT COUNT(*) FROM \"ConsentEvents\" WHERE State = 'withdrawn')"
                    )
                ).one()
            )  # type: ignore[return-value]

    before = stats()
    report = seed(
        tiny_source,
        SeedSizes.preset("tiny"),
        seed=7,
        append=True,
        ground_truth=spanda_home / "ground_truth",
    )
    after = stats()
    engine.dispose()
    assert after[0] == before[0] + report.rows["ForumPosts"] == 1100
    assert after[1] > before[1]
    assert after[2] > before[2]
    assert read_ground_truth(spanda_home / "ground_truth").num_rows == 1100
