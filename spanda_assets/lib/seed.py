"""The demo operational database: realistic, deterministic, and as large as asked.

`seed()` writes the domain schema (Students, Courses, Enrollments, ForumPosts,
AssessmentResults, ConsentEvents) to any SQLAlchemy URL. The same seed gives
the same rows. `append=True` adds a later batch: new posts, results and
consent events, new students, and updates to existing students and
enrollments with a later ModifiedAt, which is what an incremental extract must
pick up.

The data has the hard cases a de-identifier and an extract meet in practice:
students over 89, ZIP codes in restricted ZIP3 areas and in ZIP+4 form, IPv4
and IPv6 addresses, non-unique ModifiedAt values, courses whose ModifiedAt is
NULL, and forum posts that mention classmates, instructors, emails, phone
numbers, student numbers, URLs and dates, with a real urgency signal.

What the generator knows (the PII spans in each post and its urgency label) is
written as Parquet under `SPANDA_HOME/ground_truth/`, never into the
operational database: the pipeline must find it on its own.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from spanda_assets.lib.domain import TABLE_NAMES, domain_metadata

BASE_TIME = dt.datetime(2026, 9, 1, 8, 0, 0)
CHUNK = 50_000


@dataclass(frozen=True)
class SeedSizes:
    students: int
    courses: int
    posts: int
    results: int

    @classmethod
    def preset(cls, name: str) -> SeedSizes:
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown size {name!r}; choose one of {', '.join(PRESETS)}") from None


PRESETS = {
    "tiny": SeedSizes(students=200, courses=12, posts=1_000, results=1_000),
    "small": SeedSizes(students=1_000, courses=40, posts=10_000, results=10_000),
    "medium": SeedSizes(students=20_000, courses=400, posts=1_000_000, results=500_000),
    "large": SeedSizes(students=200_000, courses=4_000, posts=10_000_000, results=5_000_000),
}


@dataclass
class SeedReport:
    url: str
    appended: bool
    rows: dict[str, int]
    ground_truth: Path


# ----------------------------------------------------------------------------- reference data

# (city, state, ZIP3) — real ZIP3 areas, including every restricted ZIP3 from HHS guidance.
PLACES: tuple[tuple[str, str, str], ...] = (
    ("Boston", "MA", "021"),
    ("New York", "NY", "100"),
    ("Brooklyn", "NY", "112"),
    ("Philadelphia", "PA", "191"),
    ("Baltimore", "MD", "212"),
    ("Atlanta", "GA", "303"),
    ("Miami", "FL", "331"),
    ("Chicago", "IL", "606"),
    ("Detroit", "MI", "482"),
    ("Columbus", "OH", "432"),
    ("Minneapolis", "MN", "554"),
    ("St. Louis", "MO", "631"),
    ("Dallas", "TX", "752"),
    ("Houston", "TX", "770"),
    ("Austin", "TX", "787"),
    ("Denver", "CO", "802"),
    ("Phoenix", "AZ", "850"),
    ("Seattle", "WA", "981"),
    ("Portland", "OR", "972"),
    ("San Francisco", "CA", "941"),
    ("Los Angeles", "CA", "900"),
    ("San Diego", "CA", "921"),
    ("Nashville", "TN", "372"),
    ("Charlotte", "NC", "282"),
    ("Pittsburgh", "PA", "152"),
    ("Madison", "WI", "537"),
    ("Salt Lake City", "UT", "841"),
    # restricted ZIP3 areas (population under 20,000)
    ("Lancaster", "NH", "036"),
    ("St. Johnsbury", "VT", "059"),
    ("Norwich", "CT", "063"),
    ("New York", "NY", "102"),
    ("Washington", "DC", "203"),
    ("Two Harbors", "MN", "556"),
    ("Valentine", "NE", "692"),
    ("Dalhart", "TX", "790"),
    ("Rock Springs", "WY", "821"),
    ("Rawlins", "WY", "823"),
    ("Jackson", "WY", "830"),
    ("Pinedale", "WY", "831"),
    ("Socorro", "NM", "878"),
    ("Truth or Consequences", "NM", "879"),
    ("Tucumcari", "NM", "884"),
    ("Las Vegas", "NV", "890"),
    ("Ely", "NV", "893"),
)
RESTRICTED_SHARE = 0.08
STREETS = (
    "Oak",
    "Maple",
    "Cedar",
    "Pine",
    "Elm",
    "Washington",
    "Lake",
    "Hill",
    "Park",
    "Main",
    "Lincoln",
    "Jefferson",
    "Sunset",
    "Highland",
    "Riverside",
    "Madison",
    "Franklin",
    "Church",
)
STREET_KINDS = ("Street", "Avenue", "Road", "Lane", "Drive", "Court", "Boulevard", "Way", "St.")
SUBJECTS = {
    "Mathematics": ("Calculus I", "Linear Algebra", "Statistics", "Discrete Mathematics"),
    "Computer Science": ("Intro to Programming", "Data Structures", "Machine Learning"),
    "Biology": ("Cell Biology", "Genetics", "Ecology"),
    "History": ("World History", "US History", "History of Science"),
    "English": ("Academic Writing", "Modern Poetry", "Rhetoric"),
    "Physics": ("Mechanics", "Electricity and Magnetism", "Astronomy"),
    "Economics": ("Microeconomics", "Macroeconomics", "Econometrics"),
}
TERMS = ("2026-Fall", "2027-Spring")
GRADE_LEVELS = ("09", "10", "11", "12", "UG", "PG")
STATUSES = ("active", "active", "active", "active", "inactive", "graduated", "withdrawn")
ASSESSMENTS = ("Quiz 1", "Quiz 2", "Quiz 3", "Midterm", "Project", "Final Exam", "Lab Report")
EMAIL_DOMAINS = ("example.edu", "student.example.edu", "mail.example.org", "example.com")
PURPOSES = ("research", "model_training")
COLLECTION = ("web_form", "paper_form", "lms_banner", "email_reply")
NOTICES = ("v1.0", "v1.1", "v2.0")

URGENT = (
    "I can't submit {ASSIGNMENT} and the deadline is tonight, please help.",
    "The exam page crashed halfway through and now it says I have no attempts left.",
    "Urgent: my grade for {ASSIGNMENT} shows zero but I submitted it on time.",
    "I have been locked out of the course since yesterday and the quiz closes in an hour.",
    "The upload keeps failing with an error and I will miss the deadline.",
    "Please help, the final exam timer ran out while the page was frozen.",
    "My account was charged twice and I cannot access the course materials at all.",
    "I am sick and in hospital, I need an extension for {ASSIGNMENT} as soon as possible.",
    "Nobody answered my email and the submission portal closes today, what should I do?",
    "The video lectures for this week are missing and the test is tomorrow morning.",
)
ROUTINE = (
    "Thanks for the great lecture on {TOPIC}, the examples really helped.",
    "Does anyone want to form a study group for {TOPIC}?",
    "I found a nice explanation of {TOPIC} in the second reading.",
    "Just sharing my notes from week {WEEK} in case they help someone.",
    "Is the reading for week {WEEK} the whole chapter or only the first part?",
    "Great discussion today, I enjoyed the debate about {TOPIC}.",
    "Can someone explain the difference between the two approaches to {TOPIC}?",
    "I think there is a small typo on slide {WEEK} of the {TOPIC} lecture.",
    "Looking forward to the guest lecture next week.",
    "Happy to help anyone who is stuck on the practice problems.",
)
PII_SENTENCES = (
    "{NAME} and I worked on it together.",
    "I already asked {INSTRUCTOR} about it.",
    "You can email me at {EMAIL}.",
    "Call or text me at {PHONE} if that is easier.",
    "My student number is {ID} in case you need it.",
    "Here is the link: {URL}",
    "I will be away on {DATE} and {DATE2}.",
    "Thanks {NAME}, that fixed it for me.",
    "Hi, I'm {FIRST} and I'm new to this course.",
    "Please send the forms to {ADDRESS}.",
    "{INSTRUCTOR} said we could ask here.",
    "My login came from {IP} when it failed.",
    "The registrar asked for my SSN {SSN} again, is that normal?",
    "My name is {NAME}, student ID {ID}.",
    "The deadline was moved to {DATE}, right?",
)
TOPICS = (
    "recursion",
    "photosynthesis",
    "supply and demand",
    "the French Revolution",
    "integrals",
    "Newton's laws",
    "sorting algorithms",
    "gene expression",
    "regression",
    "poetry meter",
)
MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


def _parse_template(text: str) -> list[tuple[bool, str]]:
    out: list[tuple[bool, str]] = []
    rest = text
    while "{" in rest:
        head, _, tail = rest.partition("{")
        slot, _, rest = tail.partition("}")
        if head:
            out.append((False, head))
        out.append((True, slot))
    if rest:
        out.append((False, rest))
    return out


_URGENT_T = [_parse_template(t) for t in URGENT]
_ROUTINE_T = [_parse_template(t) for t in ROUTINE]
_PII_T = [_parse_template(t) for t in PII_SENTENCES]
# Slot -> ground-truth category (None: not PII)
SLOT_CATEGORY = {
    "NAME": "NAME",
    "FIRST": "NAME",
    "INSTRUCTOR": "NAME",
    "EMAIL": "EMAIL",
    "PHONE": "PHONE",
    "ID": "ID",
    "URL": "URL",
    "DATE": "DATE",
    "DATE2": "DATE",
    "ADDRESS": "ADDRESS",
    "IP": "IP",
    "SSN": "SSN",
}


# ----------------------------------------------------------------------------- generator


class _Gen:
    """All random draws go through one seeded numpy Generator: same seed, same data."""

    def __init__(self, seed: int, salt: int = 0) -> None:
        from faker.providers.person.en_US import Provider as Person

        self.rng = np.random.default_rng([seed, salt])
        self.first = list(Person.first_names_female) + list(Person.first_names_male)
        self.last = list(Person.last_names)
        self.titles = ("Dr.", "Professor", "Prof.", "Ms.", "Mr.", "Mrs.")

    def pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.integers(len(seq)))]

    def phone(self) -> str:
        a, b, c = (int(x) for x in self.rng.integers([201, 200, 0], [990, 999, 10000]))
        style = int(self.rng.integers(6))
        if style == 0:
            return f"({a}) {b}-{c:04d}"
        if style == 1:
            return f"{a}-{b}-{c:04d}"
        if style == 2:
            return f"{a}.{b}.{c:04d}"
        if style == 3:
            return f"+1 {a} {b} {c:04d}"
        if style == 4:
            return f"+44 20 {b}{c // 1000} {c:04d}"
        return f"{a}{b}{c:04d}"

    def ssn(self) -> str:
        a = int(self.rng.integers(1, 899))
        a = a + 1 if a == 666 else a
        return f"{a:03d}-{int(self.rng.integers(1, 99)):02d}-{int(self.rng.integers(1, 9999)):04d}"

    def ip(self) -> str:
        if self.rng.random() < 0.15:
            parts = self.rng.integers(0, 0xFFFF, 6)
            return "2001:db8:" + ":".join(f"{int(p):x}" for p in parts)
        o = self.rng.integers(1, 255, 4)
        return ".".join(str(int(x)) for x in o)

    def url(self) -> str:
        host = self.pick(("docs.example.edu", "drive.example.com", "www.example.org", "github.com"))
        path = "".join(self.pick("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(8))
        scheme = "https://" if self.rng.random() < 0.85 else "http://"
        return f"{scheme}{host}/{path}" if self.rng.random() < 0.9 else f"www.example.org/{path}"

    def date_text(self) -> str:
        month = int(self.rng.integers(1, 13))
        day = int(self.rng.integers(1, 29))
        style = int(self.rng.integers(5))
        if style == 0:
            return f"{MONTHS[month - 1]} {_ordinal(day)}"
        if style == 1:
            return f"{month}/{day}/2026"
        if style == 2:
            return f"2026-{month:02d}-{day:02d}"
        if style == 3:
            return f"{day} {MONTHS[month - 1]} 2026"
        return f"{MONTHS[month - 1]} {day}, 2026"

    def address(self) -> str:
        return f"{int(self.rng.integers(10, 9999))} {self.pick(STREETS)} {self.pick(STREET_KINDS)}"

    def student_number(self, student_id: int) -> str:
        return f"S{student_id + 4_000_000:07d}"


@dataclass
class _Roster:
    ids: list[int]
    names: list[tuple[str, str]]
    emails: list[str]
    instructors: list[str]
    course_ids: list[int]


def _body(
    g: _Gen, roster: _Roster, student_id: int
) -> tuple[str, bool, list[tuple[str, int, int]]]:
    """One post body, its urgency label, and the (category, start, end) of every PII span."""
    parts: list[str] = []
    spans: list[tuple[str, int, int]] = []
    pos = 0
    urgent = g.rng.random() < 0.22
    sentences = [g.pick(_URGENT_T if urgent else _ROUTINE_T)]
    n_pii = 0 if g.rng.random() < 0.55 else int(g.rng.integers(1, 3))
    for _ in range(n_pii):
        sentences.insert(int(g.rng.integers(0, len(sentences) + 1)), g.pick(_PII_T))
    if g.rng.random() < 0.3:
        sentences.append(g.pick(_ROUTINE_T))
    for si, segs in enumerate(sentences):
        if si:
            parts.append(" ")
            pos += 1
        for is_slot, text in segs:
            value = _slot(g, roster, text, student_id) if is_slot else text
            if is_slot and SLOT_CATEGORY.get(text):
                spans.append((SLOT_CATEGORY[text], pos, pos + len(value)))
            parts.append(value)
            pos += len(value)
    # ~5% of labels disagree with the text, as human labels do.
    label = urgent if g.rng.random() >= 0.05 else not urgent
    return "".join(parts), label, spans


def _slot(g: _Gen, roster: _Roster, slot: str, student_id: int) -> str:
    if slot == "NAME":
        i = int(g.rng.integers(len(roster.names)))
        first, last = roster.names[i]
        return f"{first} {last}" if g.rng.random() < 0.7 else first
    if slot == "FIRST":
        return roster.names[int(g.rng.integers(len(roster.names)))][0]
    if slot == "INSTRUCTOR":
        full = g.pick(roster.instructors)
        if g.rng.random() < 0.5:
            return f"{g.pick(g.titles)} {full.split()[-1]}"
        return str(full)
    if slot == "EMAIL":
        return str(g.pick(roster.emails))
    if slot == "PHONE":
        return g.phone()
    if slot == "ID":
        return g.student_number(int(g.pick(roster.ids)))
    if slot == "URL":
        return g.url()
    if slot in ("DATE", "DATE2"):
        return g.date_text()
    if slot == "ADDRESS":
        return g.address()
    if slot == "IP":
        return g.ip()
    if slot == "SSN":
        return g.ssn()
    if slot == "ASSIGNMENT":
        return str(g.pick(ASSESSMENTS))
    if slot == "TOPIC":
        return str(g.pick(TOPICS))
    if slot == "WEEK":
        return str(int(g.rng.integers(1, 13)))
    raise KeyError(slot)


def _student_rows(
    g: _Gen, start_id: int, count: int, when: dt.datetime, later: bool = False
) -> list[dict[str, Any]]:
    """Students modified before `when` (initial load) or after it (`later`, appended batch)."""
    direction = 1 if later else -1
    rows = []
    for sid in range(start_id, start_id + count):
        first, last = g.pick(g.first), g.pick(g.last)
        if g.rng.random() < RESTRICTED_SHARE:
            city, state, zip3 = g.pick(PLACES[-17:])
        else:
            city, state, zip3 = g.pick(PLACES[:-17])
        zipcode = f"{zip3}{int(g.rng.integers(0, 100)):02d}"
        if g.rng.random() < 0.2:
            zipcode += f"-{int(g.rng.integers(0, 10000)):04d}"
        # ~1.5% are over 89 (mature learners), the Safe Harbor edge case.
        if g.rng.random() < 0.015:
            birth_year = int(g.rng.integers(1925, 1937))
        else:
            birth_year = int(g.rng.integers(1960, 2012))
        birth = dt.date(birth_year, int(g.rng.integers(1, 13)), int(g.rng.integers(1, 29)))
        domain = g.pick(EMAIL_DOMAINS)
        rows.append(
            {
                "StudentID": sid,
                "SourcedId": str(uuid.UUID(bytes=g.rng.bytes(16), version=4)),
                "GivenName": first,
                "FamilyName": last,
                "Email": f"{first.lower()}.{last.lower()}{sid}@{domain}",
                "Phone": g.phone(),
                "BirthDate": birth,
                "StreetAddress": g.address(),
                "City": city,
                "State": state,
                "ZipCode": zipcode,
                "SSN": g.ssn(),
                "LastLoginIP": g.ip(),
                "GradeLevel": g.pick(GRADE_LEVELS),
                "EnrollmentStatus": g.pick(STATUSES),
                # Whole minutes: many students share a ModifiedAt (non-unique cursor).
                "ModifiedAt": when + direction * dt.timedelta(minutes=int(g.rng.integers(0, 600))),
            }
        )
    return rows


def _course_rows(g: _Gen, count: int, when: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    subjects = list(SUBJECTS)
    for cid in range(1, count + 1):
        subject = subjects[(cid - 1) % len(subjects)]
        title = g.pick(SUBJECTS[subject])
        first, last = g.pick(g.first), g.pick(g.last)
        rows.append(
            {
                "CourseID": cid,
                "CourseCode": f"{subject[:4].upper().replace(' ', '')}{100 + cid}",
                "Title": title,
                "Subject": subject,
                "Term": g.pick(TERMS),
                "InstructorName": f"{first} {last}",
                "InstructorEmail": f"{first[0].lower()}{last.lower()}@example.edu",
                # Two legacy courses were imported before ModifiedAt existed.
                "ModifiedAt": None if cid in (3, 7) else when - dt.timedelta(days=cid % 5),
            }
        )
    return rows


# ----------------------------------------------------------------------------- writers


class _Writer:
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

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
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

    def upsert(self, table: str, key: str, rows: list[dict[str, Any]]) -> None:
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


# ----------------------------------------------------------------------------- main entry


def seed(
    url: str,
    sizes: SeedSizes,
    *,
    seed: int = 42,
    append: bool = False,
    ground_truth: Path,
    progress: Callable[[str], None] | None = None,
) -> SeedReport:
    """Create (or, with `append`, extend) the demo operational database at `url`."""
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
        writer = _Writer(engine, md)
        ground_truth.mkdir(parents=True, exist_ok=True)
        try:
            if append:
                rows = _append_batch(engine, md, writer, sizes, seed, ground_truth, say)
            else:
                for old in ground_truth.glob("posts-*.parquet"):
                    old.unlink()
                rows = _initial(writer, sizes, seed, ground_truth, say)
        finally:
            writer.close()
    finally:
        engine.dispose()
    return SeedReport(
        url=u.render_as_string(), appended=append, rows=rows, ground_truth=ground_truth
    )


def _initial(
    writer: _Writer, sizes: SeedSizes, seed: int, gt: Path, say: Callable[[str], None]
) -> dict[str, int]:
    g = _Gen(seed)
    when = BASE_TIME
    students = _student_rows(g, 1, sizes.students, when)
    writer.insert("Students", students)
    courses = _course_rows(g, sizes.courses, when)
    writer.insert("Courses", courses)
    enrollments = _enrollment_rows(g, students, sizes.courses, 1, when)
    writer.insert("Enrollments", enrollments)
    consent = _initial_consent(g, students, when)
    writer.insert("ConsentEvents", consent)
    roster = _roster(students, courses)
    say(f"students={len(students)} courses={len(courses)} enrollments={len(enrollments)}")
    n_posts = _write_posts(g, writer, roster, 1, sizes.posts, when, gt, say)
    n_results = _write_results(g, writer, roster, 1, sizes.results, when)
    return {
        "Students": len(students),
        "Courses": len(courses),
        "Enrollments": len(enrollments),
        "ForumPosts": n_posts,
        "AssessmentResults": n_results,
        "ConsentEvents": len(consent),
    }


def _roster(students: list[dict[str, Any]], courses: list[dict[str, Any]]) -> _Roster:
    return _Roster(
        ids=[s["StudentID"] for s in students],
        names=[(s["GivenName"], s["FamilyName"]) for s in students],
        emails=[s["Email"] for s in students],
        instructors=[c["InstructorName"] for c in courses],
        course_ids=[c["CourseID"] for c in courses],
    )


def _enrollment_rows(
    g: _Gen,
    students: list[dict[str, Any]],
    n_courses: int,
    start_id: int,
    when: dt.datetime,
    later: bool = False,
) -> list[dict[str, Any]]:
    direction = 1 if later else -1
    rows = []
    eid = start_id
    for s in students:
        k = min(n_courses, int(g.rng.integers(1, 6)))
        for cid in g.rng.choice(np.arange(1, n_courses + 1), size=k, replace=False):
            begin = dt.date(2026, 8, 25) + dt.timedelta(days=int(g.rng.integers(0, 20)))
            rows.append(
                {
                    "EnrollmentID": eid,
                    "StudentID": s["StudentID"],
                    "CourseID": int(cid),
                    "Role": "student" if g.rng.random() < 0.97 else "aide",
                    "BeginDate": begin,
                    "EndDate": begin + dt.timedelta(days=110),
                    "FinalGrade": None,
                    "ModifiedAt": when
                    + direction * dt.timedelta(minutes=int(g.rng.integers(0, 300))),
                }
            )
            eid += 1
    return rows


def _initial_consent(
    g: _Gen, students: list[dict[str, Any]], when: dt.datetime, start_id: int = 1
) -> list[dict[str, Any]]:
    rows = []
    cid = start_id
    for s in students:
        for purpose, p in (("research", 0.88), ("model_training", 0.75)):
            if g.rng.random() < p:
                rows.append(
                    {
                        "ConsentEventID": cid,
                        "StudentID": s["StudentID"],
                        "Purpose": purpose,
                        "State": "given",
                        "RecordedAt": when - dt.timedelta(days=int(g.rng.integers(1, 30))),
                        "CollectionMethod": g.pick(COLLECTION),
                        "NoticeVersion": g.pick(NOTICES),
                    }
                )
                cid += 1
    return rows


BLANK_POST_EVERY = 2_000  # the tiny preset (1,000 posts) has none


def _post_chunks(
    g: _Gen, roster: _Roster, start_id: int, count: int, when: dt.datetime
) -> Iterator[tuple[list[dict[str, Any]], pa.Table]]:
    pid = start_id
    end = start_id + count
    t = when
    while pid < end:
        n = min(CHUNK, end - pid)
        rows: list[dict[str, Any]] = []
        gt_ids, gt_urgent, gt_spans = [], [], []
        sids = g.rng.choice(np.asarray(roster.ids), size=n)
        cids = g.rng.choice(np.asarray(roster.course_ids), size=n)
        gaps = g.rng.integers(1, 60, size=n)
        for i in range(n):
            sid = int(sids[i])
            body, urgent, spans = _body(g, roster, sid)
            if pid % BLANK_POST_EVERY == 0:
                # A blank post now and then, as forms let through: the demo's gold
                # quarantine has something to show (rule body_present).
                body, urgent, spans = "  ", False, []
            t = t + dt.timedelta(seconds=int(gaps[i]))
            rows.append(
                {
                    "PostID": pid,
                    "StudentID": sid,
                    "CourseID": int(cids[i]),
                    "Body": body,
                    "CreatedAt": t,
                }
            )
            gt_ids.append(pid)
            gt_urgent.append(urgent)
            gt_spans.append([{"category": c, "start": s, "end": e} for c, s, e in spans])
            pid += 1
        truth = pa.table(
            {
                "post_id": pa.array(gt_ids, pa.int64()),
                "urgent": pa.array(gt_urgent, pa.bool_()),
                "pii_spans": pa.array(gt_spans, type=GT_SPANS_TYPE),
            }
        )
        yield rows, truth


GT_SPANS_TYPE = pa.list_(
    pa.struct([("category", pa.string()), ("start", pa.int32()), ("end", pa.int32())])
)


def _write_posts(
    g: _Gen,
    writer: _Writer,
    roster: _Roster,
    start_id: int,
    count: int,
    when: dt.datetime,
    gt: Path,
    say: Callable[[str], None],
) -> int:
    if count <= 0:
        return 0
    written = 0
    path = gt / f"posts-{start_id:012d}.parquet"
    with pq.ParquetWriter(
        path,
        pa.schema([("post_id", pa.int64()), ("urgent", pa.bool_()), ("pii_spans", GT_SPANS_TYPE)]),
    ) as out:
        for rows, truth in _post_chunks(g, roster, start_id, count, when):
            writer.insert("ForumPosts", rows)
            out.write_table(truth)
            written += len(rows)
            if written % 500_000 == 0:
                say(f"posts: {written:,}/{count:,}")
    return written


def _write_results(
    g: _Gen, writer: _Writer, roster: _Roster, start_id: int, count: int, when: dt.datetime
) -> int:
    rid = start_id
    end = start_id + count
    while rid < end:
        n = min(CHUNK, end - rid)
        sids = g.rng.choice(np.asarray(roster.ids), size=n)
        cids = g.rng.choice(np.asarray(roster.course_ids), size=n)
        ability = g.rng.beta(5, 2, size=n)
        rows = []
        for i in range(n):
            name = g.pick(ASSESSMENTS)
            max_score = 100 if name in ("Midterm", "Final Exam") else 20
            score = round(float(ability[i]) * max_score, 2)
            rows.append(
                {
                    "ResultID": rid,
                    "StudentID": int(sids[i]),
                    "CourseID": int(cids[i]),
                    "AssessmentName": name,
                    "Score": score,
                    "MaxScore": max_score,
                    "SubmittedAt": when + dt.timedelta(minutes=int(rid % 100_000)),
                    "AttemptNo": int(g.rng.integers(1, 4)),
                }
            )
            rid += 1
        writer.insert("AssessmentResults", rows)
    return count


def _append_batch(
    engine: Engine,
    md: sa.MetaData,
    writer: _Writer,
    sizes: SeedSizes,
    seed: int,
    gt: Path,
    say: Callable[[str], None],
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
    g = _Gen(seed, salt=max_post + 1)
    stamps = [_as_datetime(v) for v in latest if v is not None]
    when = (max(stamps) if stamps else BASE_TIME) + dt.timedelta(hours=1)
    when = when.replace(second=0, microsecond=0)

    new_posts = max(1, sizes.posts // 10)
    new_results = max(1, sizes.results // 10)
    new_students = _student_rows(
        g, max_ids["Students"] + 1, max(1, len(students) // 50), when, later=True
    )
    writer.insert("Students", new_students)

    # ~5% of students move, change phone or status; several share one ModifiedAt.
    k = max(1, len(students) // 20)
    changed = []
    for idx in g.rng.choice(len(students), size=min(k, len(students)), replace=False):
        s = students[int(idx)]
        changed.append(
            {
                "StudentID": s["StudentID"],
                "Phone": g.phone(),
                "StreetAddress": g.address(),
                "EnrollmentStatus": g.pick(STATUSES),
                "ModifiedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 5))),
            }
        )
    writer.upsert("Students", "StudentID", changed)

    graded = []
    m = max(1, len(enrollment_ids) // 10)
    for eid in g.rng.choice(
        np.asarray(enrollment_ids), size=min(m, len(enrollment_ids)), replace=False
    ):
        graded.append(
            {
                "EnrollmentID": int(eid),
                "FinalGrade": round(float(g.rng.uniform(40, 100)), 2),
                "ModifiedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 5))),
            }
        )
    writer.upsert("Enrollments", "EnrollmentID", graded)
    new_enrollments = _enrollment_rows(
        g, new_students, len(courses), max_ids["Enrollments"] + 1, when, later=True
    )
    writer.insert("Enrollments", new_enrollments)

    consent = _initial_consent(g, new_students, when, start_id=max_ids["ConsentEvents"] + 1)
    next_cid = max_ids["ConsentEvents"] + 1 + len(consent)
    # Some students withdraw consent for one purpose.
    for idx in g.rng.choice(len(students), size=max(1, len(students) // 40), replace=False):
        consent.append(
            {
                "ConsentEventID": next_cid,
                "StudentID": students[int(idx)]["StudentID"],
                "Purpose": g.pick(PURPOSES),
                "State": "withdrawn",
                "RecordedAt": when + dt.timedelta(minutes=int(g.rng.integers(0, 60))),
                "CollectionMethod": g.pick(COLLECTION),
                "NoticeVersion": NOTICES[-1],
            }
        )
        next_cid += 1
    writer.insert("ConsentEvents", consent)

    roster = _roster(students + new_students, courses)
    n_posts = _write_posts(g, writer, roster, max_post + 1, new_posts, when, gt, say)
    n_results = _write_results(
        g, writer, roster, max_ids["AssessmentResults"] + 1, new_results, when
    )
    return {
        "Students": len(new_students) + len(changed),
        "Courses": 0,
        "Enrollments": len(new_enrollments) + len(graded),
        "ForumPosts": n_posts,
        "AssessmentResults": n_results,
        "ConsentEvents": len(consent),
    }


def _as_datetime(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v
    return dt.datetime.fromisoformat(str(v))


def read_ground_truth(gt: Path) -> pa.Table:
    """All ground-truth parts (initial load and every appended batch)."""
    parts = sorted(gt.glob("posts-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"no ground truth under {gt}; run `spanda seed` first")
    return pa.concat_tables(pq.read_table(p) for p in parts)
