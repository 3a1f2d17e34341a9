"""`spanda validate`: every rule family, bad input, config and ignore files, output modes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.lib.submissions.sample import DESCRIPTION, write_oneroster
from spanda_assets.lib.submissions.validator import validate


@pytest.fixture
def sub(tmp_path: Path) -> Path:
    return write_oneroster(tmp_path / "district-2026", users=30, enrollments=60, classes=3)


def codes(report: object) -> dict[str, list[tuple[str, int | None, object]]]:
    out: dict[str, list[tuple[str, int | None, object]]] = {}
    for i in report.issues:  # type: ignore[attr-defined]
        out.setdefault(i.code, []).append((i.location, i.line, i.column))
    return out


def edit_csv(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new, 1))


def test_sample_submission_is_valid(sub: Path) -> None:
    report = validate(sub)
    assert report.valid and report.issues == []
    assert report.formats == ["OneRoster 1.1"] and report.rows_checked > 90


def test_dataset_description_rules(sub: Path) -> None:
    (sub / "dataset_description.json").unlink()
    assert "MISSING_DATASET_DESCRIPTION" in codes(validate(sub))
    doc = {k: v for k, v in DESCRIPTION.items() if k not in ("Title", "ConsentBasis", "Keywords")}
    (sub / "dataset_description.json").write_text(json.dumps(doc))
    c = codes(validate(sub))
    assert ("dataset_description.json", None, None) in c["JSON_KEY_REQUIRED"]
    assert "CONSENT_BASIS_MISSING" in c and "JSON_KEY_RECOMMENDED" in c
    (sub / "dataset_description.json").write_text('{\n  "Title": "x",\n  "Creators": [1,]\n}')
    (issue,) = [i for i in validate(sub).issues if i.code == "JSON_INVALID"]
    assert (issue.line, issue.column) == (3, 18)  # the ']' after the trailing comma


def test_oneroster_values_references_and_uniqueness(sub: Path) -> None:
    edit_csv(sub / "enrollments.csv", "enr-5,,,", "enr-4,,,")
    edit_csv(sub / "enrollments.csv", "user-7,student", "user-999,student")
    edit_csv(sub / "enrollments.csv", "user-8,student", "user-8,headmaster")
    edit_csv(
        sub / "enrollments.csv",
        "2026-08-25,2026-12-18\nenr-10",  # read_text() gives universal newlines
        "08/25/2026,2026-12-18\nenr-10",
    )
    report = validate(sub)
    c = codes(report)
    assert not report.valid
    assert c["DUPLICATE_SOURCED_ID"] == [("enrollments.csv", 6, "sourcedId")]
    (fk,) = [i for i in report.issues if i.code == "FOREIGN_KEY_MISSING"]
    assert (
        (fk.line, fk.column) == (7, "userSourcedId")
        and "user-999" in fk.message
        and "users.csv" in fk.message
    )
    assert c["CSV_VALUE_NOT_ALLOWED"] == [("enrollments.csv", 8, "role")]
    assert c["CSV_VALUE_INCORRECT_TYPE"] == [("enrollments.csv", 10, "beginDate")]


def test_oneroster_manifest_consistency(sub: Path) -> None:
    (sub / "classes.csv").unlink()
    edit_csv(sub / "manifest.csv", "file.results,absent", "file.results,maybe")
    (sub / "lineItems.csv").write_text("sourcedId,status,dateLastModified\r\nli-1,,\r\n")
    c = codes(validate(sub))
    assert c["ONEROSTER_FILE_MISSING"] == [("classes.csv", None, None)]
    assert c["ONEROSTER_MANIFEST_VALUE"] == [("manifest.csv", None, None)]
    assert c["ONEROSTER_FILE_NOT_IN_MANIFEST"] == [("lineItems.csv", None, None)]
    assert ("lineItems.csv", 1, "title") in c["CSV_COLUMN_MISSING"]


def test_identifiers_must_be_removed(sub: Path) -> None:
    edit_csv(
        sub / "users.csv", "user-3,,,true,org-1,student,,,,", "user-3,,,true,org-1,student,,,Ada,"
    )
    (issue,) = [i for i in validate(sub).issues if i.code == "IDENTIFIER_NOT_DEIDENTIFIED"]
    assert (issue.location, issue.line, issue.column, issue.severity) == (
        "users.csv",
        4,
        "givenName",
        "error",
    )


def test_malformed_files_get_codes_not_tracebacks(sub: Path) -> None:
    (sub / "orgs.csv").write_bytes(
        b"\xef\xbb\xbfsourcedId,status,dateLastModified,name,type,name\r\norg-1,,,X,school\r\n"
    )
    (sub / "courses.csv").write_bytes(
        (sub / "courses.csv").read_bytes() + b"course-2,,,term-1,Caf\xe9,C2,09,org-1,Math\r\n"
    )
    (sub / "empty.csv").write_text("")
    c = codes(validate(sub))
    assert "BOM_PRESENT" in c
    assert c["CSV_DUPLICATE_HEADER"] == [("orgs.csv", 1, 6)]
    assert c["CSV_RAGGED_ROW"] == [("orgs.csv", 2, None)]
    assert c["INVALID_ENCODING"] == [("courses.csv", 3, 22)]  # byte 21 of the line, 1-based
    assert c["EMPTY_FILE"] == [("empty.csv", None, None)]


def test_xapi_statements(tmp_path: Path) -> None:
    root = tmp_path / "xapi"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION))
    good = {
        "actor": {"account": {"homePage": "https://lms.example.edu", "name": "a1"}},
        "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
        "object": {"id": "https://lms.example.edu/q1"},
    }
    lines = [
        json.dumps(good),
        json.dumps({**good, "verb": {"id": "completed"}}),
        json.dumps({**good, "actor": {"mbox": "mailto:a@example.edu"}}),
        '{"actor": ',
        json.dumps({"verb": good["verb"]}),
        json.dumps({**good, "result": {"response": "call me at 555-123-4567"}}),
    ]
    (root / "statements.jsonl").write_text("\n".join(lines) + "\n")
    report = validate(root)
    found = {(i.code, i.line) for i in report.issues}
    assert ("XAPI_STATEMENT_INVALID", 2) in found and ("XAPI_STATEMENT_INVALID", 3) in found
    assert ("JSON_INVALID", 4) in found and ("XAPI_STATEMENT_INVALID", 5) in found
    assert ("FREE_TEXT_PII", 6) in found
    assert report.formats == ["xAPI"]


def test_generic_csv_sidecar_small_cells_and_free_text(tmp_path: Path) -> None:
    root = tmp_path / "survey"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION))
    (root / "counts.csv").write_text(
        "school,grade,n,comment\r\nA,9,125,fine\r\nB,9,4,email me at t@example.org\r\n"
    )
    c = codes(validate(root))
    assert c["SIDECAR_MISSING"] == [("counts.csv", None, None)]
    (root / "counts.json").write_text(
        json.dumps(
            {
                "columns": {
                    "school": {"description": "school code"},
                    "n": {"description": "students"},
                    "comment": {"description": "free text", "type": "text"},
                },
                "aggregate": {"count_columns": ["n"]},
            }
        )
    )
    c = codes(validate(root))
    assert c["SIDECAR_COLUMN_UNDESCRIBED"] == [("counts.csv", 1, "grade")]
    assert c["SMALL_CELL"] == [("counts.csv", 3, "n")]
    assert c["FREE_TEXT_PII"] == [("counts.csv", 3, "comment")]
    (root / "notes.txt").write_text("hello")
    assert codes(validate(root))["UNKNOWN_FILE"] == [("notes.txt", None, None)]


def test_config_reclassifies_and_ignores(sub: Path) -> None:
    (sub / "notes.txt").write_text("hello")
    (sub / "scratch").mkdir()
    (sub / "scratch" / "tmp.bin").write_bytes(b"\0")
    edit_csv(sub / "enrollments.csv", "user-8,student", "user-8,headmaster")
    (sub / ".spandaignore").write_text("# local scratch\nscratch/*\n")
    (sub / ".spanda-validator.yaml").write_text(
        "rules:\n  UNKNOWN_FILE: error\n"
        "ignore:\n  - {code: CSV_VALUE_NOT_ALLOWED, location: enrollments.csv}\n"
    )
    c = {i.code: i.severity for i in validate(sub).issues}
    assert c == {"UNKNOWN_FILE": "error"}
    assert [i.location for i in validate(sub).issues] == ["notes.txt"]


def test_archives_traversal_and_bombs(sub: Path, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        for p in sub.rglob("*"):
            z.write(p, Path("district-2026") / p.relative_to(sub))
    assert validate(good).valid
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../etc/cron.d/x", "boom")
    assert codes(validate(evil)) == {"ARCHIVE_PATH_TRAVERSAL": [("evil.zip", None, None)]}
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("big.csv", b"0" * 50_000_000)
    assert "ARCHIVE_BOMB" in codes(validate(bomb))
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04 not really")
    assert "ARCHIVE_INVALID" in codes(validate(tmp_path / "broken.zip"))


def test_cli_text_json_and_exit_codes(sub: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(sub)])
    assert ok.exit_code == 0 and "VALID: 0 error(s)" in ok.output
    edit_csv(sub / "enrollments.csv", "user-7,student", "user-999,student")
    bad = runner.invoke(main, ["validate", str(sub), "--json"])
    assert bad.exit_code == 1
    doc = json.loads(bad.output)
    assert doc["valid"] is False and doc["summary"]["errors"] == 1
    (issue,) = doc["issues"]
    assert set(issue) == {"code", "severity", "location", "line", "column", "message", "suggestion"}
    missing = runner.invoke(main, ["validate", str(sub / "nope")])
    assert missing.exit_code == 2 and "no such file or folder" in missing.output
