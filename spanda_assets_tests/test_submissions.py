"""The submission pipeline: inbox sensor, reports, blocking check, de-identified ingest."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from spanda_assets.definitions import defs
from spanda_assets.defs.submissions.assets import INGESTED_KEY, REPORT_KEY
from spanda_assets.defs.submissions.sensors import submission_inbox
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.submissions.csvio import CsvError, CsvFile, CsvProblem
from spanda_assets.lib.submissions.inbox import fetch, list_submissions, partition_key
from spanda_assets.lib.submissions.ingest import table_names
from spanda_assets.lib.submissions.sample import write_oneroster
from spanda_assets.lib.submissions.validate import validate

DISTRICT = partition_key("District 2026")
BAD = partition_key("bad-export")


@pytest.fixture
def inbox(spanda_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    box = spanda_home / "inbox"
    write_oneroster(box / "District 2026", users=20, enrollments=40, classes=2)
    bad = write_oneroster(box / "bad-export", users=20, enrollments=40, classes=2)
    text = (
        (bad / "users.csv")
        .read_text()
        .replace("user-3,,,true,org-1,student,,,,", "user-3,,,true,org-1,student,,,Ada,", 1)
    )
    (bad / "users.csv").write_text(text)
    return box


def process(
    instance: dg.DagsterInstance, key: str, only: dg.AssetKey | None = None
) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("submissions", [key])
    job = defs().resolve_job_def("process_submission")
    return job.execute_in_process(
        instance=instance,
        partition_key=key,
        raise_on_error=False,
        asset_selection=[only] if only else None,
    )


def catalog() -> Any:
    return open_catalog(CatalogConfig.from_env())


def test_partition_keys_are_table_safe() -> None:
    assert partition_key("district_2026") == "district_2026"  # a safe name is its own key
    assert re.fullmatch(r"district_2026__[0-9a-f]{8}", partition_key("District 2026.zip"))
    assert partition_key("District 2026.zip") != partition_key("District 2026")
    assert re.fullmatch(r"bad_export__[0-9a-f]{8}", partition_key("bad-export"))
    assert re.fullmatch(r"submission__[0-9a-f]{8}", partition_key("..."))


def test_sensor_registers_new_and_changed_submissions(inbox: Path) -> None:
    with dg.instance_for_test() as instance:
        first = submission_inbox(dg.build_sensor_context(instance=instance))
        assert isinstance(first, dg.SensorResult)
        assert sorted(r.partition_key for r in first.run_requests) == sorted([BAD, DISTRICT])
        (add,) = first.dynamic_partitions_requests
        assert sorted(add.partition_keys) == sorted([BAD, DISTRICT])
        idle = submission_inbox(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(idle, dg.SkipReason)
        (inbox / "District 2026" / "orgs.csv").write_text(
            (inbox / "District 2026" / "orgs.csv").read_text() + "org-2,,,Other High,school,,\r\n"
        )
        again = submission_inbox(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert isinstance(again, dg.SensorResult)
        assert [r.partition_key for r in again.run_requests] == [DISTRICT]


def test_valid_submission_is_ingested_deidentified(inbox: Path, spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        result = process(instance, DISTRICT)
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"submission_valid", "residual_pii"}
    assert all(e.passed for e in checks.values())
    # The staged tables were audited before publication: every row was scanned.
    assert checks["residual_pii"].metadata["rows_scanned"].value > 0
    tables = {t[1] for t in catalog().list_tables("submissions")}
    assert {f"{DISTRICT}__users", f"{DISTRICT}__enrollments", f"{DISTRICT}__classes"} <= tables
    users = catalog().load_table(("submissions", f"{DISTRICT}__users")).scan().to_arrow()
    assert not {"given_name", "family_name", "email", "username", "password"} & set(
        users.column_names
    )
    assert all(v.startswith("ps_") for v in users.column("sourced_id").to_pylist())
    enrollments = (
        catalog().load_table(("submissions", f"{DISTRICT}__enrollments")).scan().to_arrow()
    )
    assert set(enrollments.column("user_sourced_id").to_pylist()) <= set(
        users.column("sourced_id").to_pylist()
    )
    report = json.loads((spanda_home / "reports" / DISTRICT / "report.json").read_text())
    assert report["valid"] and (spanda_home / "reports" / DISTRICT / "report.html").is_file()
    # Re-ingesting (a retry) replaces, never duplicates.
    with dg.instance_for_test() as instance:
        assert process(instance, DISTRICT).success
    assert (
        catalog().load_table(("submissions", f"{DISTRICT}__users")).scan().to_arrow().num_rows == 20
    )


def test_rejected_submission_gets_a_report_and_is_never_ingested(
    inbox: Path, spanda_home: Path
) -> None:
    with dg.instance_for_test() as instance:
        result = process(instance, BAD)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["errors"].value == 1
    assert not result.asset_materializations_for_node("submissions__ingested")
    assert (
        not [t for t in catalog().list_tables("submissions") if t[1].startswith(BAD)]
        if "submissions" in [n[0] for n in catalog().list_namespaces()]
        else True
    )
    html = (spanda_home / "reports" / BAD / "report.html").read_text()
    assert "IDENTIFIER_NOT_DEIDENTIFIED" in html and "users.csv" in html and "Ada" not in html


def test_files_the_submission_ignores_are_never_ingested(inbox: Path) -> None:
    folder = inbox / "District 2026"
    (folder / "scratch").mkdir()
    (folder / "scratch" / "scores.csv").write_text("id,score\r\nx-1,3\r\n")
    (folder / ".spandaignore").write_text("scratch/*\n")
    with dg.instance_for_test() as instance:
        assert process(instance, DISTRICT).success
    tables = {t[1] for t in catalog().list_tables("submissions")}
    assert f"{DISTRICT}__users" in tables
    assert not [t for t in tables if "scores" in t]


def test_content_changed_after_validation_is_refused(inbox: Path) -> None:
    """Ingest loads exactly the bytes validation checked, or nothing."""
    folder = inbox / "District 2026"
    with dg.instance_for_test() as instance:
        assert process(instance, DISTRICT, only=REPORT_KEY).success
        users = (folder / "users.csv").read_bytes()
        (folder / "users.csv").write_bytes(users.replace(b",student,,,,", b",student,,,Ada,", 1))
        (folder / "late.csv").write_text("id\r\n1\r\n")
        result = process(instance, DISTRICT, only=INGESTED_KEY)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = str(failure.event_specific_data.error)  # type: ignore[union-attr]
    assert "users.csv changed" in message and "late.csv was added" in message
    assert "Ada" not in message
    namespaces = [n[0] for n in catalog().list_namespaces()]
    assert "submissions" not in namespaces or not catalog().list_tables("submissions")


def test_two_entries_that_would_meet_get_their_own_partitions(inbox: Path) -> None:
    source = inbox / "District 2026"
    shutil.copytree(source, inbox / "a-b")
    with zipfile.ZipFile(inbox / "A b.zip", "w") as z:
        for p in source.rglob("*"):
            z.write(p, p.relative_to(source))
    before = {s.name: s.key for s in list_submissions()}
    assert before["a-b"] != before["A b.zip"]
    # a later entry neither moves the others' keys nor can take one of them
    shutil.copytree(source, inbox / "a_b")
    shutil.copytree(source, inbox / before["a-b"])  # named exactly like another's key
    keys = {s.name: s.key for s in list_submissions()}
    assert {n: keys[n] for n in before} == before
    assert keys["a_b"] == "a_b"
    assert len(set(keys.values())) == len(keys)
    assert fetch(keys["a-b"]).name == "a-b" and fetch(keys["A b.zip"]).name == "A b.zip"


def test_two_files_that_would_meet_get_their_own_tables(inbox: Path) -> None:
    names = table_names("d", ["users.csv", "x/users.csv", "y/users.csv", "Users.jsonl", "a.csv"])
    assert names["users.csv"] == "d__users" and names["a.csv"] == "d__a"
    assert len(set(names.values())) == len(names)
    assert all(names[p].startswith("d__users_") for p in ("x/users.csv", "y/users.csv"))
    # two submissions: dataset `a` with b_users.csv, dataset `a_b` with users.csv
    assert table_names("a", ["b_users.csv"]) != table_names("a_b", ["users.csv"])
    folder = inbox / "District 2026"
    sidecar = {"columns": {"school": {"description": "school code"}, "n": {"description": "n"}}}
    for sub, n in (("x", 12), ("y", 15)):
        (folder / sub).mkdir()
        (folder / sub / "counts.csv").write_text(f"school,n\r\norg-1,{n}\r\n")
        (folder / sub / "counts.json").write_text(json.dumps(sidecar))
    with dg.instance_for_test() as instance:
        assert process(instance, DISTRICT).success
    counts = [t[1] for t in catalog().list_tables("submissions") if "counts" in t[1]]
    assert len(counts) == 2
    values = {
        catalog().load_table(("submissions", t)).scan().to_arrow()["n"][0].as_py() for t in counts
    }
    assert values == {"12", "15"}


def test_links_in_a_submission_are_never_followed(inbox: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("school,n\r\nsecret-school,99\r\n")
    folder = inbox / "District 2026"
    (folder / "extra.csv").symlink_to(outside / "secret.csv")
    report = validate(folder)
    assert not report.valid
    assert [(i.code, i.location) for i in report.errors] == [("NOT_A_REGULAR_FILE", "extra.csv")]
    assert "extra.csv" not in report.files


def test_an_ignored_sidecar_is_not_used(inbox: Path) -> None:
    """Validation sees only what ingest will load: a sidecar the submission ignores
    cannot describe its CSV (or mark which columns hold free text)."""
    folder = inbox / "District 2026"
    sidecar = {"columns": {"school": {"description": "school code"}, "n": {"description": "n"}}}
    (folder / "counts.csv").write_text("school,n\r\norg-1,12\r\n")
    (folder / "counts.json").write_text(json.dumps(sidecar))
    assert validate(folder).valid
    (folder / ".spandaignore").write_text("counts.json\n")
    report = validate(folder)
    assert "counts.json" not in report.files
    assert ("SIDECAR_MISSING", "counts.csv") in [(i.code, i.location) for i in report.issues]


def test_zip_submission(inbox: Path) -> None:
    folder = inbox / "District 2026"
    with zipfile.ZipFile(inbox / "Zipped 2026.zip", "w") as z:
        for p in folder.rglob("*"):
            z.write(p, Path("zipped") / p.relative_to(folder))
    shutil.rmtree(inbox / "bad-export")
    zipped = partition_key("Zipped 2026.zip")
    assert [s.key for s in list_submissions()] == sorted([DISTRICT, zipped])
    with dg.instance_for_test() as instance:
        assert process(instance, zipped).success
    assert ("submissions", f"{zipped}__users") in catalog().list_tables("submissions")


@pytest.mark.integration
def test_inbox_on_s3(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = write_oneroster(tmp_path / "src", users=5, enrollments=5, classes=1)
    s3.create_bucket("partner-drop")
    client = s3.client()
    for p in local.rglob("*"):
        client.upload_file(str(p), "partner-drop", f"inbox/north-district/{p.relative_to(local)}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    host = s3.endpoint.removeprefix("http://")
    uri = f"s3://partner-drop/inbox?endpoint_override={host}&scheme=http&region={s3.region}"
    (sub,) = list_submissions(uri)
    assert sub.key == partition_key("north-district")
    copy = fetch(sub.key, uri)
    assert (copy / "users.csv").read_bytes() == (local / "users.csv").read_bytes()


TRICKY_CSV = (
    b"\xef\xbb\xbfsourcedId,name,note\r\n"
    b'u-1,"Doe, Jane","line one\r\nline two"\r\n'
    b"\r\n"
    b'u-2,O\'Brien,"said ""hi"""\r\n'
    b"   \r\n"
    b"u-3,,\r\n"
)


def test_ingest_parses_csv_as_the_validator_does(tmp_path: Path) -> None:
    """One parser: ingest's batches hold exactly the rows the validator checked."""
    path = tmp_path / "users.csv"
    path.write_bytes(TRICKY_CSV)
    batches = list(CsvFile(path, block_bytes=64).batches())  # tiny blocks: several batches
    assert all(b.schema.names == ["sourcedId", "name", "note"] for b in batches)
    assert all(t == pa.string() for b in batches for t in b.schema.types)
    loaded = [tuple(r.values()) for b in batches for r in b.to_pylist()]
    assert loaded == [
        ("u-1", "Doe, Jane", "line one\r\nline two"),
        ("u-2", "O'Brien", 'said "hi"'),
        ("u-3", "", ""),
    ]
    problems: list[CsvProblem] = []
    header, *records = CsvFile(path, problems.append).records()
    checked = [tuple(v) for _, v in records if "".join(v).strip()]
    assert header == (1, ["sourcedId", "name", "note"]) and checked == loaded
    assert [line for line, v in records if "".join(v).strip()] == [2, 5, 7]
    assert [p.kind for p in problems] == ["bom"]


def test_ingest_refuses_what_validation_rejects(tmp_path: Path) -> None:
    ragged = tmp_path / "ragged.csv"
    ragged.write_bytes(b"a,b\n1,2\n3\n")
    with pytest.raises(CsvError, match=r"ragged\.csv: record 3 has 1 fields, the header has 2"):
        list(CsvFile(ragged).batches())
    encoding = tmp_path / "latin1.csv"
    encoding.write_bytes(b"a,b\n1,2\nCaf\xe9,3\n")
    with pytest.raises(CsvError, match=r"latin1\.csv, line 3: invalid continuation byte"):
        list(CsvFile(encoding).batches())
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_bytes(b'a,b\n1,"' + b"x" * 300 + b"\n2,3\n" * 50)
    with pytest.raises(CsvError, match=r"unclosed\.csv: a record .* longer than 128 bytes"):
        list(CsvFile(unclosed, block_bytes=128).batches())
