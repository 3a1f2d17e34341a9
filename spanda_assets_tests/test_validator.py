"""`spanda validate`: every rule family, bad input, config and ignore files, output modes."""

from __future__ import annotations

import json
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from spanda_assets.cli import main
from spanda_assets.lib.submissions.csvio import CsvFile, CsvProblem
from spanda_assets.lib.submissions.sample import DESCRIPTION, write_oneroster
from spanda_assets.lib.submissions.validate import CHECKERS, Context, Report, Validator, validate
from spanda_assets.lib.submissions.validate.xapi_schema import SCHEMA as XAPI_SCHEMA


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
        # ids are IRIs by the spec: not free text, no warning
        json.dumps({**good, "object": {"id": "https://lms.example.edu/q1?user=a1"}}),
        json.dumps(
            {
                **good,
                "object": {
                    "id": "https://x.example/a",
                    "definition": {"name": {"en": "mail me: t@example.org"}},
                },
            }
        ),
    ]
    (root / "statements.jsonl").write_text("\n".join(lines) + "\n")
    report = validate(root)
    found = {(i.code, i.line) for i in report.issues}
    assert ("XAPI_STATEMENT_INVALID", 2) in found and ("XAPI_STATEMENT_INVALID", 3) in found
    assert ("JSON_INVALID", 4) in found and ("XAPI_STATEMENT_INVALID", 5) in found
    assert ("FREE_TEXT_PII", 6) in found and ("FREE_TEXT_PII", 8) in found
    assert ("FREE_TEXT_PII", 7) not in found
    assert not {line for code, line in found if code == "FREE_TEXT_PII"} & {1, 7}
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


def test_steward_config_reclassifies_and_ignores(sub: Path, tmp_path: Path) -> None:
    (sub / "notes.txt").write_text("hello")
    (sub / "scratch").mkdir()
    (sub / "scratch" / "tmp.bin").write_bytes(b"\0")
    edit_csv(sub / "enrollments.csv", "user-8,student", "user-8,headmaster")
    (sub / ".spandaignore").write_text("# local scratch\nscratch/*\n")
    steward = tmp_path / "steward.yaml"
    steward.write_text(
        "rules:\n  UNKNOWN_FILE: error\n"
        "ignore:\n  - {code: CSV_VALUE_NOT_ALLOWED, location: enrollments.csv}\n"
    )
    report = validate(sub, steward)
    assert {i.code: i.severity for i in report.issues} == {"UNKNOWN_FILE": "error"}
    assert [i.location for i in report.issues] == ["notes.txt"]
    # the files .spandaignore names are not part of what was validated
    assert not any(f.startswith("scratch/") for f in report.files)


def test_steward_config_comes_from_the_environment(
    sub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sub / "notes.txt").write_text("hello")
    steward = tmp_path / "steward.yaml"
    steward.write_text("rules:\n  UNKNOWN_FILE: ignore\n")
    assert "UNKNOWN_FILE" in codes(validate(sub))
    monkeypatch.setenv("SPANDA_VALIDATOR_CONFIG", str(steward))
    assert "UNKNOWN_FILE" not in codes(validate(sub))


def test_a_submission_cannot_lower_its_own_gate(sub: Path) -> None:
    """Its own config may raise a severity or tighten a limit, never lower the gate;
    the report names each refused request."""
    (sub / "notes.txt").write_text("hello")
    edit_csv(sub / "enrollments.csv", "user-8,student", "user-8,headmaster")
    (sub / ".spanda-validator.yaml").write_text(
        "rules:\n  UNKNOWN_FILE: error\n  CSV_VALUE_NOT_ALLOWED: ignore\n"
        "  CONFIG_LOWERING_REFUSED: ignore\n"
        "ignore:\n  - {code: CSV_VALUE_NOT_ALLOWED, location: enrollments.csv}\n  - {}\n"
        "limits:\n  max_file_bytes: 100000000000\n"
    )
    report = validate(sub)
    severities = {i.code: i.severity for i in report.issues}
    assert severities["UNKNOWN_FILE"] == "error"  # raised: allowed
    assert severities["CSV_VALUE_NOT_ALLOWED"] == "error"  # lowering refused
    assert not report.valid
    refused = [i.message for i in report.issues if i.code == "CONFIG_LOWERING_REFUSED"]
    assert [i.location for i in report.issues if i.code == "CONFIG_LOWERING_REFUSED"] == [
        ".spanda-validator.yaml"
    ] * 5
    assert any("set CSV_VALUE_NOT_ALLOWED to ignore" in m for m in refused)
    assert any("set CONFIG_LOWERING_REFUSED to ignore" in m for m in refused)
    assert any("ignore CSV_VALUE_NOT_ALLOWED in enrollments.csv" in m for m in refused)
    assert any("ignore every issue in *" in m for m in refused)
    assert any("raise limit max_file_bytes" in m for m in refused)


def test_a_submission_may_tighten_a_limit(sub: Path) -> None:
    (sub / ".spanda-validator.yaml").write_text("limits:\n  max_file_bytes: 100\n")
    assert "FILE_TOO_LARGE" in codes(validate(sub))


def test_the_report_records_a_digest_of_every_validated_file(sub: Path) -> None:
    report = validate(sub)
    assert set(report.files) == {p.relative_to(sub).as_posix() for p in sub.rglob("*.*")}
    before = report.digest
    (sub / "users.csv").write_bytes((sub / "users.csv").read_bytes())  # same bytes, new mtime
    assert validate(sub).digest == before
    (sub / "users.csv").write_bytes((sub / "users.csv").read_bytes() + b"\r\n")
    assert validate(sub).digest != before


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


# ----------------------------------------------------------------------------- CSV parsing
# CSV is parsed by pyarrow (lib/submissions/csvio.py), shared with ingest. These pin what
# the validator reports for the inputs where pyarrow and a line-by-line reader differ.


def survey(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A generic-CSV submission: each CSV gets a sidecar describing school, n and comment."""
    root = tmp_path / "survey"
    root.mkdir(exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION))
    sidecar = {
        "columns": {
            "school": {"description": "school code"},
            "n": {"description": "students"},
            "comment": {"description": "free text", "type": "text"},
        },
        "aggregate": {"count_columns": ["n"]},
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
        (root / name).with_suffix(".json").write_text(json.dumps(sidecar))
    return root


def test_csv_quotes_and_multiline_records_keep_line_numbers(tmp_path: Path) -> None:
    root = survey(
        tmp_path,
        {
            "c.csv": b"school,n,comment\r\n"  # line 1
            b'A,125,"fine, thanks"\r\n'  # 2: a quoted comma is one field
            b'B,4,"said ""hi""\r\nthen left"\r\n'  # 3-4: escaped quotes, CRLF inside quotes
            b"C,7\r\n"  # 5: ragged
            b"D,3,ok\r\n"  # 6
        },
    )
    report = validate(root)
    c = codes(report)
    # An issue names the line its record starts on (the old reader gave 4, the last line).
    assert c["SMALL_CELL"] == [("c.csv", 3, "n"), ("c.csv", 6, "n")]
    (ragged,) = [i for i in report.issues if i.code == "CSV_RAGGED_ROW"]
    assert (ragged.line, ragged.message) == (5, "row has 2 fields, the header has 3")
    assert report.rows_checked == 4 and set(c) == {"SMALL_CELL", "CSV_RAGGED_ROW"}


def test_csv_unclosed_quote_is_reported_not_swallowed(tmp_path: Path) -> None:
    root = survey(
        tmp_path,
        {"u.csv": b'school,n\nA,125\nB,"4\nC,7\nD,8\n', "v.csv": b'school,"n\nA,125\n'},
    )
    report = validate(root)
    found = [(i.code, i.location, i.line) for i in report.issues]
    assert found == [("CSV_MALFORMED", "u.csv", 3), ("CSV_MALFORMED", "v.csv", 1)]
    assert "closing quote" in report.issues[0].message and not report.valid
    assert "the header never ends" in report.issues[1].message


def test_csv_record_longer_than_a_block_stops_with_its_line(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    p.write_bytes(b"a,b\n1,2\n" + b'3,"' + b"x" * 5000 + b'"\n4,5\n')
    problems: list[CsvProblem] = []
    rows = list(CsvFile(p, problems.append, block_bytes=1024).records())
    assert rows == [(1, ["a", "b"]), (2, ["1", "2"])]
    (problem,) = problems
    assert (problem.kind, problem.line) == ("malformed", 3) and "1,024 bytes" in problem.detail


def test_csv_blank_rows_are_skipped_but_keep_their_lines(tmp_path: Path) -> None:
    root = survey(tmp_path, {"b.csv": b"school,n\n\nA,125\n   \n,\nB,4\n"})
    report = validate(root)
    assert codes(report) == {"SMALL_CELL": [("b.csv", 6, "n")]}
    assert report.rows_checked == 2


def test_csv_bom_and_bad_bytes_name_line_and_byte(tmp_path: Path) -> None:
    root = survey(
        tmp_path,
        {
            "e.csv": b"\xef\xbb\xbfschool,n,comment\n"  # the BOM is not part of 'school'
            b"Caf\xe9,125,x\n"  # 2: byte 4 of the line
            b'B,4,"multi\nline \xff here"\n'  # 3-4: the bad byte is on line 4
            b"C,125,end\xe9"  # 5: cut short at the end of the file
        },
    )
    report = validate(root)
    c = codes(report)
    assert c["BOM_PRESENT"] == [("e.csv", None, None)]
    assert c["INVALID_ENCODING"] == [("e.csv", 2, 4), ("e.csv", 4, 6), ("e.csv", 5, 10)]
    reasons = [i.message for i in report.issues if i.code == "INVALID_ENCODING"]
    assert "invalid continuation byte" in reasons[0] and "invalid start byte" in reasons[1]
    assert "unexpected end of data" in reasons[2]
    # Rows with bad bytes are still checked (with U+FFFD), and no column is undescribed.
    assert c["SMALL_CELL"] == [("e.csv", 3, "n")] and "SIDECAR_COLUMN_UNDESCRIBED" not in c


def test_csv_without_records_is_empty(sub: Path, tmp_path: Path) -> None:
    root = survey(tmp_path, {"bom.csv": b"\xef\xbb\xbf", "blank.csv": b"\r\n  \r\n"})
    c = codes(validate(root))
    assert c == {
        "BOM_PRESENT": [("bom.csv", None, None)],
        "EMPTY_FILE": [("blank.csv", None, None), ("bom.csv", None, None)],
    }
    (sub / "users.csv").write_text("\n\n")
    c = codes(validate(sub))
    assert c["EMPTY_FILE"] == [("users.csv", None, None)]
    assert not [loc for loc, _, _ in c.get("CSV_COLUMN_MISSING", []) if loc == "users.csv"]


def test_csv_header_only_and_header_after_blank_lines(sub: Path, tmp_path: Path) -> None:
    root = survey(
        tmp_path,
        {
            "h.csv": b"school,n",  # no line end at all
            "lead.csv": b"\r\n\r\nschool,n,extra\r\nA,125,x\r\nB,4,y\r\n",
        },
    )
    report = validate(root)
    assert codes(report) == {
        "SIDECAR_COLUMN_UNDESCRIBED": [("lead.csv", 3, "extra")],
        "SMALL_CELL": [("lead.csv", 5, "n")],
    }
    assert report.rows_checked == 2
    (sub / "academicSessions.csv").write_text("sourcedId,status,dateLastModified,title\r\n")
    c = codes(validate(sub))
    missing = [(line, col) for loc, line, col in c["CSV_COLUMN_MISSING"]]
    assert missing == [(1, "type"), (1, "startDate"), (1, "endDate"), (1, "schoolYear")]


def test_csv_lines_stay_right_across_blocks(tmp_path: Path) -> None:
    rows = [f"S{i},125,{'x' * 40}".encode() for i in range(60_000)]  # ~3.4 MB, several blocks
    rows[30_000] = b'S,125,"two\nlines"'  # every later record is one line further down
    rows[45_000] = b"S,125"
    rows[50_000] = b"Caf\xe9,125,x"
    rows[59_990] = b"S,4,x"
    root = survey(tmp_path, {"big.csv": b"school,n,comment\n" + b"\n".join(rows) + b"\n"})
    report = validate(root)
    assert codes(report) == {
        "CSV_RAGGED_ROW": [("big.csv", 45_003, None)],
        "INVALID_ENCODING": [("big.csv", 50_003, 4)],
        "SMALL_CELL": [("big.csv", 59_993, "n")],
    }
    assert report.rows_checked == 60_000


def test_manifest_rows_are_read_as_before(sub: Path) -> None:
    """The manifest is read field by field: a trailing comma is no error (as before)."""
    edit_csv(sub / "manifest.csv", "file.users,bulk", "file.users,bulk,")
    report = validate(sub)
    assert report.valid and report.issues == []


# ----------------------------------------------------------------------------- xAPI schema

AGENT: dict[str, Any] = {"account": {"homePage": "https://lms.example.edu", "name": "a1"}}
GOOD: dict[str, Any] = {
    "actor": AGENT,
    "verb": {"id": "http://adlnet.gov/expapi/verbs/completed"},
    "object": {"id": "https://lms.example.edu/q1"},
}
UUID = "0d5c9f8e-4b2a-4e61-9c3d-7a1f2e3b4c5d"


def xapi(tmp_path: Path, lines: list[str]) -> Report:
    root = tmp_path / "xapi"
    root.mkdir(exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION))
    (root / "statements.jsonl").write_text("\n".join(lines) + "\n")
    return validate(root)


def test_xapi_schema_accepts_the_spec_s_variety(tmp_path: Path) -> None:
    full = {
        "id": UUID,
        "actor": {"objectType": "Group", "mbox_sha1sum": "a" * 40, "member": [AGENT]},
        "verb": {"id": "urn:example:verb:answered", "display": {"en-US": "answered"}},
        "object": {
            "objectType": "Activity",
            "id": "https://lms.example.edu/q1",
            "definition": {
                "name": {"en": "Question 1"},
                "type": "http://adlnet.gov/expapi/activities/cmi.interaction",
                "interactionType": "choice",
                "correctResponsesPattern": ["a"],
                "choices": [{"id": "a", "description": {"en": "A"}}],
                "extensions": {"https://example.org/x/difficulty": None},
            },
        },
        "result": {
            "score": {"scaled": -0.5, "raw": 2, "min": 0, "max": 10},
            "success": False,
            "completion": True,
            "duration": "PT1M30.5S",
        },
        "context": {
            "registration": UUID,
            "instructor": {"objectType": "Agent", "openid": "https://id.example.edu/t1"},
            "contextActivities": {"parent": {"id": "https://x.org/c"}, "other": []},
            "revision": "2",
            "language": "es-419",
            "statement": {"objectType": "StatementRef", "id": UUID},
        },
        "timestamp": "2026-03-01T09:30:00.123+01:00",
        "version": "1.0.3",
        "attachments": [
            {
                "usageType": "http://adlnet.gov/expapi/attachments/signature",
                "display": {"en": "signature"},
                "contentType": "application/octet-stream",
                "length": 12,
                "sha2": "b" * 64,
            }
        ],
    }
    sub_statement = {
        **GOOD,
        "object": {"objectType": "SubStatement", **GOOD, "timestamp": "2027-01-01T00:00:00Z"},
    }
    agent_object = {**GOOD, "object": {"objectType": "Agent", **AGENT}}
    report = xapi(tmp_path, [json.dumps(s) for s in (full, sub_statement, agent_object)])
    assert report.valid and report.errors == [] and report.rows_checked == 3


XAPI_ERRORS = [
    pytest.param(
        {**GOOD, "verb": {"id": "completed"}},
        "$.verb.id",
        'verb.id is not an IRI (got "completed")',
        "absolute IRI",
        id="verb-not-iri",
    ),
    pytest.param(
        {"verb": GOOD["verb"]},
        "$",
        "missing actor, object",
        "actor, verb (with id) and object",
        id="required",
    ),
    pytest.param(
        {**GOOD, "actor": {"name": "X"}},
        "$.actor",
        "identifier (account, mbox_sha1sum, openid or mbox); found none",
        "exactly one",
        id="no-identifier",
    ),
    pytest.param(
        {**GOOD, "actor": {"mbox_sha1sum": "a" * 40, "openid": "https://id.example/1"}},
        "$.actor",
        "found mbox_sha1sum, openid",
        "exactly one",
        id="two-identifiers",
    ),
    pytest.param(
        {**GOOD, "actor": {"mbox": "a@example.edu"}},
        "$.actor.mbox",
        "actor.mbox is not a mailto IRI",
        "mailto:",
        id="mbox-not-mailto",
    ),
    pytest.param(
        {**GOOD, "timestamp": "03/01/2026 09:30"},
        "$.timestamp",
        "is not an ISO 8601 timestamp",
        "ISO 8601",
        id="timestamp",
    ),
    pytest.param(
        {**GOOD, "result": {"score": {"scaled": 1.5}}},
        "$.result.score.scaled",
        "must be at most 1 (got 1.5)",
        "-1 to 1",
        id="scaled-range",
    ),
    pytest.param(
        {**GOOD, "result": {"score": {"raw": "5"}}},
        "$.result.score.raw",
        "result.score.raw must be a number",
        "wrong type",
        id="string-number",
    ),
    pytest.param(
        {**GOOD, "result": {"score": {"raw": 11, "min": 0, "max": 10}}},
        "$.result.score.raw",
        "between min and max",
        "from min to max",
        id="raw-outside-min-max",
    ),
    pytest.param(
        {**GOOD, "result": {"response": None}},
        "$.result.response",
        "must be a string",
        "rejects null",
        id="null",
    ),
    pytest.param(
        {**GOOD, "version": "2.0.0"},
        "$.version",
        'not a 1.0.x version (got "2.0.0")',
        "1.0.0",
        id="version",
    ),
    pytest.param({**GOOD, "id": "42"}, "$.id", "id is not a UUID", "UUID", id="uuid"),
    pytest.param(
        {**GOOD, "grade": "A"},
        "$",
        "grade not defined by xAPI 1.0.3",
        "extensions",
        id="undefined-property",
    ),
    pytest.param(
        {**GOOD, "result": {"duration": "01:30:00"}},
        "$.result.duration",
        "not an ISO 8601 duration",
        "PT1H30M",
        id="duration",
    ),
    pytest.param(
        {**GOOD, "verb": {**GOOD["verb"], "display": {"en US": "x"}}},
        "$.verb.display",
        'key "en US", which is not an RFC 5646 language tag',
        "en-US",
        id="language-tag",
    ),
    pytest.param(
        {**GOOD, "context": {"extensions": {"difficulty": 3}}},
        "$.context.extensions",
        'key "difficulty", which is not an IRI',
        "absolute IRI",
        id="extension-key",
    ),
    pytest.param(
        {
            **GOOD,
            "object": {"objectType": "StatementRef", "id": UUID},
            "context": {"platform": "web"},
        },
        "$.context.platform",
        "only allowed when the statement's object is an Activity",
        "unless the object is an Activity",
        id="platform-needs-activity",
    ),
    pytest.param(
        {
            **GOOD,
            "object": {
                "objectType": "SubStatement",
                **GOOD,
                "object": {"objectType": "SubStatement"},
            },
        },
        "$.object.object.objectType",
        'must be one of Activity, Agent, Group, StatementRef (got "SubStatement")',
        "top level only",
        id="nested-substatement",
    ),
    pytest.param(
        {**GOOD, "object": {"objectType": "SubStatement", "id": UUID, **GOOD}},
        "$.object",
        "object.id not defined by xAPI 1.0.3",
        "no id, stored, version or authority",
        id="substatement-id",
    ),
    pytest.param(
        {**GOOD, "actor": {"objectType": "Group"}},
        "$.actor.member",
        "missing actor.member",
        "anonymous Group",
        id="anonymous-group",
    ),
    pytest.param(
        {**GOOD, "actor": {"objectType": "Group", "member": [{"objectType": "Group", **AGENT}]}},
        "$.actor.member[0].objectType",
        'must be "Agent" (got "Group")',
        "cannot be Groups",
        id="group-in-group",
    ),
    pytest.param(
        {**GOOD, "authority": {"objectType": "Group", "member": [AGENT]}},
        "$.authority.member",
        "must have at least 2 item(s)",
        "exactly two Agents",
        id="oauth-authority",
    ),
    pytest.param(
        {**GOOD, "context": {"instructor": {"mbox": "mailto:t@example.edu"}}},
        "$.context.instructor.mbox",
        "context.instructor.mbox is an email address",
        "opaque account",
        id="mbox-anywhere",
    ),
]


@pytest.mark.parametrize(("statement", "column", "detail", "hint"), XAPI_ERRORS)
def test_xapi_schema_errors_name_path_line_and_hint(
    tmp_path: Path, statement: dict[str, object], column: str, detail: str, hint: str
) -> None:
    report = xapi(tmp_path, [json.dumps(GOOD), "", json.dumps(statement)])
    (issue,) = report.errors
    assert (issue.code, issue.location, issue.line, issue.column) == (
        "XAPI_STATEMENT_INVALID",
        "statements.jsonl",
        3,  # the file's line: a blank line does not shift it
        column,
    )
    assert issue.message.startswith("xAPI statement: ") and detail in issue.message
    assert hint in issue.suggestion


def test_xapi_reports_never_echo_identifying_values(tmp_path: Path) -> None:
    bad = [
        {**GOOD, "actor": {"mbox": "jane.doe@example.edu"}},
        {**GOOD, "actor": {"account": {"homePage": "lms", "name": "jane.doe"}}},
        {**GOOD, "authority": {"objectType": "Group", "member": [{"mbox_sha1sum": "jane.doe"}]}},
    ]
    report = xapi(tmp_path, [json.dumps(s) for s in bad])
    assert len(report.errors) == 3 and "jane.doe" not in report.to_json()


def test_xapi_json_that_python_would_accept_anyway(tmp_path: Path) -> None:
    """A property given twice and NaN parse in Python but are not one valid statement."""
    twice = '{"actor": {"account": {"homePage": "https://l.example", "name": "a"}}, '
    twice += '"verb": {"id": "http://a.example/v"}, "verb": {"id": "http://a.example/w"}, '
    twice += '"object": {"id": "http://a.example/o"}}'
    nan = json.dumps({**GOOD, "result": {"score": {"scaled": float("nan")}}})
    report = xapi(tmp_path, [twice, nan])
    found = [(i.code, i.line) for i in report.errors]
    assert found == [("XAPI_STATEMENT_INVALID", 1), ("JSON_INVALID", 2)]
    assert "'verb' appears more than once" in report.errors[0].message
    assert "NaN" in report.errors[1].message


def test_xapi_schema_is_packaged_and_valid() -> None:
    text = resources.files("spanda_assets").joinpath(XAPI_SCHEMA).read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    assert "1.0.3" in schema["title"] and schema["$defs"]["statement"]["required"] == [
        "actor",
        "verb",
        "object",
    ]


# ----------------------------------------------------------------------------- formats


def test_a_format_is_one_checker_behind_the_interface(tmp_path: Path) -> None:
    """A new format plugs in as a FormatChecker; what it accounts for is not unknown."""

    class Notes:
        name = "plain notes"

        def claims(self, path: Path, ctx: Context) -> bool:
            return path.suffix == ".txt"

        def check(self, path: Path, ctx: Context) -> set[Path]:
            ctx.report.rows_checked += len(path.read_text().splitlines())
            return {path}

    root = tmp_path / "notes"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps(DESCRIPTION))
    (root / "a.txt").write_text("one\ntwo\n")
    assert codes(validate(root)) == {"UNKNOWN_FILE": [("a.txt", None, None)]}
    report = Validator(root, checkers=(*CHECKERS, Notes())).run()
    assert report.issues == [] and report.formats == ["plain notes"] and report.rows_checked == 2


def test_the_manifest_and_description_cannot_be_ignored(sub: Path) -> None:
    """They define the submission: an ignore file naming them changes nothing."""
    expected = codes(validate(sub))
    (sub / ".spandaignore").write_text("manifest.csv\ndataset_description.json\n")
    report = validate(sub)
    assert report.valid and codes(report) == expected
    assert "OneRoster" in " ".join(report.formats)
