"""The demo database: deterministic, realistic, with ground truth kept outside the DB."""

from __future__ import annotations

import datetime as dt
import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import sqlalchemy as sa

from spanda_assets.lib.domain import TABLE_NAMES
from spanda_assets.lib.privacy.generalize import AGE_CAP, age_on, restricted_zip3
from spanda_assets.lib.seed import PLACES, SeedSizes, read_ground_truth, seed, vocabulary
from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import Roster
from spanda_assets.lib.seed.posts import fill_slot, template_slots, templates
from spanda_assets.lib.seed.vocabulary import DATA_FILES, read_data_file

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


def test_packaged_vocabulary_files_load() -> None:
    # Read through importlib.resources: a file left out of the package fails here.
    for name in DATA_FILES:
        data = read_data_file(name)
        assert data and all(data.values()), f"{name}.yaml has an empty list"
    words = vocabulary()
    assert vocabulary() is words, "loaded once and cached"
    for field, value in vars(words).items():
        assert value, f"vocabulary field {field} is empty"
    places = read_data_file("places")
    assert words.places == PLACES
    assert [list(p) for p in PLACES] == places["places"] + places["restricted_places"]
    assert (
        words.subjects["Mathematics"][0] == read_data_file("school")["subjects"]["Mathematics"][0]
    )
    assert words.grade_levels[0] == "09", "codes stay strings"


def test_importing_the_seed_package_reads_no_vocabulary() -> None:
    code = (
        "import sys, spanda_assets.lib.seed as s; "
        "from spanda_assets.lib.seed.vocabulary import vocabulary; "
        "from spanda_assets.lib.seed.posts import templates; "
        "assert vocabulary.cache_info().currsize == 0 and templates.cache_info().currsize == 0; "
        "assert 'faker' not in sys.modules; "
        "assert len(s.PLACES) > 40 and vocabulary.cache_info().currsize == 1"
    )
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


def test_restricted_places_are_the_safe_harbor_list() -> None:
    words = vocabulary()
    assert {zip3 for _, _, zip3 in words.restricted_places} == restricted_zip3() == RESTRICTED
    assert not {zip3 for _, _, zip3 in words.open_places} & restricted_zip3()


def test_every_template_slot_is_filled() -> None:
    words = vocabulary()
    slots = template_slots(words.urgent + words.routine + words.pii_sentences)
    assert {"ASSIGNMENT", "TOPIC", "WEEK", "NAME", "EMAIL"} <= slots
    who = Roster(
        ids=[1],
        names=[("Ada", "Byron")],
        emails=["ada@example.edu"],
        instructors=["Alan Kay"],
        course_ids=[1],
    )
    g = Draws(0)
    for slot in slots:
        assert fill_slot(g, who, slot, 1), slot


def test_the_generator_draws_from_the_packaged_vocabulary(tiny_source: str) -> None:
    words = vocabulary()
    engine = sa.create_engine(tiny_source)
    with engine.connect() as conn:

        def rows(table: str) -> list[dict[str, object]]:
            return [dict(r._mapping) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]

        students, courses = rows("Students"), rows("Courses")
        results, consent, posts = (
            rows("AssessmentResults"),
            rows("ConsentEvents"),
            rows("ForumPosts"),
        )
    engine.dispose()
    places = set(words.places)
    for s in students:
        assert (s["City"], s["State"], str(s["ZipCode"])[:3]) in places
        assert s["GradeLevel"] in words.grade_levels
        assert s["EnrollmentStatus"] in words.statuses
        assert str(s["Email"]).split("@")[1] in words.email_domains
        assert s["GivenName"] in words.first_names and s["FamilyName"] in words.last_names
    for c in courses:
        assert c["Title"] in words.subjects[str(c["Subject"])] and c["Term"] in words.terms
    assert {r["AssessmentName"] for r in results} <= set(words.assessments)
    assert {c["CollectionMethod"] for c in consent} <= set(words.collection_methods)
    assert {c["NoticeVersion"] for c in consent} <= set(words.notice_versions)
    # Every post holds an urgent or routine sentence; each such template opens with text.
    t = templates()
    openings = [segs[0][1] for segs in t.urgent + t.routine]
    bodies = [str(p["Body"]) for p in posts if str(p["Body"]).strip()]
    assert bodies and all(any(o in b for o in openings) for b in bodies)
