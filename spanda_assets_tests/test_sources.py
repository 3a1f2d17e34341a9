"""The sources YAML: parsing, validation messages, and adding a table by config alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.sources import load_sources, parse_sources, snake_case


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ForumPosts", "forum_posts"),
        ("StudentID", "student_id"),
        ("LastLoginIP", "last_login_ip"),
        ("SSN", "ssn"),
        ("DashboardData", "dashboard_data"),
        ("RecordID", "record_id"),
        ("ZipCode", "zip_code"),
        ("already_snake", "already_snake"),
    ],
)
def test_snake_case(name: str, expected: str) -> None:
    assert snake_case(name) == expected


def test_packaged_default_declares_the_domain_tables() -> None:
    sources = {s.name: s for s in load_sources()}
    assert set(sources) == {
        "students",
        "courses",
        "enrollments",
        "forum_posts",
        "assessment_results",
        "consent_events",
    }
    assert sources["students"].mode == "upsert"
    assert sources["students"].cursor == "ModifiedAt"
    assert sources["forum_posts"].mode == "append"
    assert sources["forum_posts"].primary_key == ("PostID",)
    assert sources["forum_posts"].qualified == "dbo.ForumPosts"


def test_sources_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(
        "sources:\n  - table: DashboardData\n    primary_key: RecordID\n    cursor: RecordID\n"
    )
    monkeypatch.setenv("SPANDA_SOURCES_FILE", str(f))
    (s,) = load_sources()
    assert (s.name, s.primary_key, s.cursor, s.mode, s.schema) == (
        "dashboard_data",
        ("RecordID",),
        "RecordID",
        "append",
        None,
    )


def test_missing_sources_file_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPANDA_SOURCES_FILE", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"SPANDA_SOURCES_FILE=.*nope\.yaml does not exist"):
        load_sources()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("[]", "top-level 'sources:' list"),
        ("sources: [{table: T, cursor: C}]", r"'T'.*primary_key"),
        ("sources: [{table: T, primary_key: [K]}]", r"'T'.*'cursor' is required"),
        ("sources: [{table: T, primary_key: K, cursor: C, mode: merge}]", "mode must be"),
        ("sources: [{table: T, primary_key: K, cursor: C, curser: X}]", r"unknown key.*curser"),
        ("sources: [{primary_key: K, cursor: C}]", r"sources\[0\]: 'table' is required"),
        (
            "sources: [{table: A, primary_key: K, cursor: C, name: x}, "
            "{table: B, primary_key: K, cursor: C, name: x}]",
            r"'A' and 'B' both map to bronze\.x",
        ),
        ("sources: [{table: T, primary_key: K, cursor: C, name: Bad-Name}]", "snake_case"),
        ("sources: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_config_is_explained(doc: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_sources(doc)


# ----------------------------------------------------------------------------- error positions

# Three good entries, then room for a bad one: an error that named the first entry's line,
# the entry's line instead of the field's, or a 0-based line would not match.
GOOD_ENTRIES = """\
# source tables
defaults:
  schema: dbo

sources:
  - table: Students
    primary_key: [StudentID]
    cursor: ModifiedAt
    mode: upsert
  - table: Courses
    primary_key: CourseID
    cursor: ModifiedAt
    mode: upsert
  - table: ForumPosts
    primary_key: [PostID]
    cursor: PostID
"""


def _where(text: str, token: str) -> tuple[int, int]:
    """1-based line and column of the line marked `# <-`, at `token` on that line."""
    (line,) = [i for i, row in enumerate(text.splitlines(), 1) if row.endswith("# <-")]
    return line, text.splitlines()[line - 1].index(token) + 1


@pytest.mark.parametrize(
    ("bad_entry", "token", "message"),
    [
        (
            "  - table: Grades\n    primary_key: GradeID\n    cursor: GradeID\n"
            "    mode: merge  # <-\n",
            "mode",
            r"source table 'Grades': mode must be 'append' or 'upsert', got 'merge'",
        ),
        (
            "  - table: Grades\n    primary_key: GradeID\n    curser: GradeID  # <-\n",
            "curser",
            r"source table 'Grades': unknown key 'curser'; did you mean 'cursor'\?",
        ),
        (
            "  - table: Grades  # <-\n    primary_key: GradeID\n",
            "table",
            r"source table 'Grades': 'cursor' is required: a column that grows",
        ),
        (
            "  - table: Grades\n    primary_key:\n      - GradeID\n      - 7  # <-\n"
            "    cursor: GradeID\n",
            "7",
            r"source table 'Grades': 'primary_key' must be a column name or a list of them, "
            "got 7",
        ),
        (
            "  - table: Grades\n    primary_key: GradeID\n    cursor: GradeID\n"
            "    column_types:\n      Score: float64\n      Grade: money  # <-\n",
            "Grade",
            r"source table 'Grades': column_types\.Grade: unknown type 'money'",
        ),
        (
            "  - table: Grades\n    primary_key: GradeID\n    cursor: GradeID\n"
            "    name: Grades  # <-\n",
            "name",
            r"source table 'Grades': name 'Grades' must be snake_case",
        ),
        (
            "  - primary_key: GradeID  # <-\n    cursor: GradeID\n",
            "primary_key",
            r"sources\[3\]: 'table' is required",
        ),
        (
            "  - table: Posts\n    name: forum_posts  # <-\n    primary_key: Id\n    cursor: Id\n",
            "name",
            r"tables 'ForumPosts' and 'Posts' both map to bronze\.forum_posts",
        ),
        ("  - just a string  # <-\n", "just", r"sources\[3\] must be a mapping"),
        (
            "  - table: 2024Posts  # <-\n    primary_key: Id\n    cursor: Id\n",
            "table",
            r"sources\[3\]: the table name '2024Posts' gives no usable bronze name",
        ),
        (
            "  - table: Grades\n    primary_key: Id\n    cursor: Id\n    5: x  # <-\n",
            "5",
            r"source table 'Grades': unknown key '5'",
        ),
    ],
    ids=[
        "bad-value",
        "unknown-key",
        "missing-field",
        "list-item",
        "column-type",
        "not-snake-case",
        "no-table",
        "duplicate-name",
        "not-a-mapping",
        "derived-name-unusable",
        "key-not-text",
    ],
)
def test_error_names_file_line_column_and_field(
    tmp_path: Path, bad_entry: str, token: str, message: str
) -> None:
    text = GOOD_ENTRIES + bad_entry
    line, column = _where(text, token)
    f = tmp_path / "sources.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_sources(f)
    # the problem's own line in the message starts with where it is
    (said,) = [row for row in str(err.value).splitlines() if re.search(message, row)]
    prefix = f"{f}, line {line}, column {column}: "
    assert said.startswith(prefix), f"{said!r} should start with {prefix!r}"


def test_every_problem_is_listed_in_file_order() -> None:
    text = GOOD_ENTRIES.replace(
        "    mode: upsert\n  - table: Courses", "    mode: merge\n  - table: Courses"
    )
    text += "  - table: Grades\n    primary_key: []\n    cursor: 5\n"
    with pytest.raises(ConfigError) as err:
        parse_sources(text, origin="s.yaml")
    assert str(err.value).splitlines() == [
        "s.yaml, line 9, column 5: source table 'Students': mode must be 'append' or 'upsert', "
        "got 'merge'",
        "s.yaml, line 18, column 5: source table 'Grades': 'primary_key' must be a column name "
        "or a list of them, got []",
        "s.yaml, line 19, column 5: source table 'Grades': 'cursor' must be a column that grows "
        "with new or changed rows (an identity key for append-only tables, ModifiedAt for "
        "tables whose rows change), got 5",
    ]


def test_yaml_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError, match=r'not valid YAML.*\n.*in "s\.yaml", line 3, column'):
        parse_sources("sources:\n  - table: T\n    cursor: [C\n", origin="s.yaml")


def test_good_entries_parse_with_defaults_and_overrides() -> None:
    text = GOOD_ENTRIES + (
        "  - table: Grades\n    schema: null\n    name: grades_v2\n    primary_key: Id\n"
        "    cursor: Id\n    description: 42\n    column_types: {Score: float64, 7: string}\n"
    )
    students, courses, posts, grades = parse_sources(text)
    assert (students.qualified, students.mode, students.primary_key) == (
        "dbo.Students",
        "upsert",
        ("StudentID",),
    )
    assert courses.primary_key == ("CourseID",)
    assert (posts.name, posts.mode, posts.schema) == ("forum_posts", "append", "dbo")
    assert (grades.schema, grades.name, grades.description) == (None, "grades_v2", "42")
    assert grades.column_types == {"Score": "float64", "7": "string"}
