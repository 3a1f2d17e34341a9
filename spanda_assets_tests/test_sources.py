"""The sources YAML: parsing, validation messages, and adding a table by config alone."""

from __future__ import annotations

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
