"""Seed -> bronze -> silver through Dagster: de-identification, consent, erasure, fail closed."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.privacy.did import did_from_public_key, public_key_bytes
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.privacy.residual import FORBIDDEN_COLUMNS
from spanda_assets.lib.privacy.subjects import did_of
from spanda_assets_tests.conftest import append_batch, chain_checks

SILVER_WITH_SUBJECTS = ["students", "enrollments", "forum_posts", "assessment_results"]


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def run_all(instance: dg.DagsterInstance, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    job = defs().resolve_job_def("materialize_platform")
    return job.execute_in_process(instance=instance, raise_on_error=raise_on_error)


def catalog() -> Any:
    return open_catalog(CatalogConfig.from_env())


def silver_subjects(name: str) -> set[str]:
    t = catalog().load_table(("silver", name)).scan(selected_fields=("subject_id",)).to_arrow()
    return set(t.column(0).to_pylist())


def subject_of(student_id: int) -> str:
    return Pseudonymizer(load_key()).subject_id(did_of(catalog(), student_id))


def expected_research_consent(url: str, purpose: str = "research") -> set[int]:
    """Computed straight from the operational DB, independently of the pipeline."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    rows = con.execute(
        'SELECT StudentID, State FROM "ConsentEvents" WHERE Purpose = ? '
        "ORDER BY RecordedAt, ConsentEventID",
        (purpose,),
    ).fetchall()
    con.close()
    latest: dict[int, str] = {}
    for sid, state in rows:
        latest[sid] = state
    return {sid for sid, state in latest.items() if state == "given"}


def _rows_of(name: str, subject: str) -> int:
    subjects = catalog().load_table(("silver", name)).scan(selected_fields=("subject_id",))
    return subjects.to_arrow().column(0).to_pylist().count(subject)


def _metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    mats = result.asset_materializations_for_node(f"silver__{name}")
    return {k: v.value for k, v in mats[-1].metadata.items()}


def _add_consent_event(
    url: str, event_id: int, student: int, state: str, purpose: str = "research"
) -> None:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    con.execute(
        'INSERT INTO "ConsentEvents" VALUES (?, ?, ?, ?, ?, ?, ?)',
        (event_id, student, purpose, state, "2027-01-01 00:00:00.000000", "web_form", "v2.0"),
    )
    con.commit()
    con.close()


def test_silver_is_deidentified_and_consent_filtered(demo_env: str) -> None:
    with dg.instance_for_test() as instance:
        result = run_all(instance)
        checks = chain_checks(result)
        assert checks and all(c.passed for c in checks), [
            c.metadata for c in checks if not c.passed
        ]
    cat = catalog()
    for name in [
        "students",
        "courses",
        "enrollments",
        "forum_posts",
        "assessment_results",
        "consent_records",
    ]:
        cols = set(cat.load_table(("silver", name)).schema().column_names)
        assert not cols & FORBIDDEN_COLUMNS, (name, cols & FORBIDDEN_COLUMNS)
    students = cat.load_table(("silver", "students")).scan().to_arrow()
    assert set(students.column("zip3").to_pylist()) <= {None} | {
        z for z in students.column("zip3").to_pylist() if z and len(z) == 3
    }
    expected = {subject_of(s) for s in expected_research_consent(demo_env)}
    assert silver_subjects("students") == expected
    for name in SILVER_WITH_SUBJECTS:
        assert silver_subjects(name) <= expected
    bodies = cat.load_table(("silver", "forum_posts")).scan().to_arrow().column("body").to_pylist()
    assert any("[NAME]" in b for b in bodies) and not any("@" in b for b in bodies)


def test_withdrawal_erases_everywhere_and_regrant_restores(demo_env: str) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
        cat = catalog()
        posts = cat.load_table(("bronze", "forum_posts")).scan().to_arrow()
        consenting = expected_research_consent(demo_env)
        student = next(s for s in posts.column("student_id").to_pylist() if s in consenting)
        subject = subject_of(student)
        held = {n: _rows_of(n, subject) for n in SILVER_WITH_SUBJECTS}
        assert all(held.values()), held
        bronze_before = cat.load_table(("bronze", "forum_posts")).scan().to_arrow().num_rows

        _add_consent_event(demo_env, 900_001, student, "withdrawn")
        result = run_all(instance)
        for name in SILVER_WITH_SUBJECTS:
            assert subject not in silver_subjects(name), name
        for name in ("validated_posts", "validated_enrollments", "validated_assessments"):
            gold = catalog().load_table(("gold", name)).scan(selected_fields=("subject_id",))
            assert subject not in set(gold.to_arrow().column(0).to_pylist()), name
        erased = {n: _metadata(result, n)["rows_erased"] for n in SILVER_WITH_SUBJECTS}
        assert erased == held, "each table erased exactly the rows the student had there"
        # bronze keeps the legal record
        assert (
            catalog().load_table(("bronze", "forum_posts")).scan().to_arrow().num_rows
            == bronze_before
        )
        assert all(c.passed for c in chain_checks(result))

        _add_consent_event(demo_env, 900_002, student, "given")
        result = run_all(instance)
        for name in SILVER_WITH_SUBJECTS:
            assert subject in silver_subjects(name), name
        assert _metadata(result, "forum_posts")["subjects_restored"] == 1


def _source_count(url: str, table: str) -> int:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    (n,) = con.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    con.close()
    return int(n)


def test_incremental_silver_processes_only_new_rows(demo_env: str, spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        posts = _source_count(demo_env, "ForumPosts")
        first = run_all(instance)
        assert _metadata(first, "forum_posts")["rows_read_from_bronze"] == posts
        again = run_all(instance)
        assert _metadata(again, "forum_posts")["rows_read_from_bronze"] == 0
        append_batch(demo_env, spanda_home)
        added = _source_count(demo_env, "ForumPosts") - posts
        third = run_all(instance)
        assert added > 0
        assert _metadata(third, "forum_posts")["rows_read_from_bronze"] == added
        # upserted tables: the new and changed rows, not the files the upsert rewrote
        for name in ("students", "enrollments"):
            (bronze,) = third.asset_materializations_for_node(f"bronze__{name}")
            changed = bronze.metadata["rows_added"].value + bronze.metadata["rows_updated"].value
            assert 0 < _metadata(third, name)["rows_read_from_bronze"] == changed, name
        # silver keys stay unique after upserts of changed students
        keys = (
            catalog()
            .load_table(("silver", "students"))
            .scan()
            .to_arrow()
            .column("subject_id")
            .to_pylist()
        )
        assert len(keys) == len(set(keys))


def test_unclassified_column_fails_closed(demo_env: str) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
        before = catalog().load_table(("silver", "students")).current_snapshot().snapshot_id
        con = sqlite3.connect(demo_env.removeprefix("sqlite:///"))
        con.execute('ALTER TABLE "Students" ADD COLUMN MotherMaidenName NVARCHAR(50)')
        con.execute(
            'UPDATE "Students" SET MotherMaidenName = '
            "'Okafor', ModifiedAt = '2031-01-01 00:00:00'"
        )
        con.commit()
        con.close()
        result = run_all(instance, raise_on_error=False)
        assert not result.success
        failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        text = " ".join(str(e.step_failure_data.error) for e in failures)
        assert (
            "silver.students: column(s) mother_maiden_name of bronze.students are not classified"
            in text
        )
    assert catalog().load_table(("silver", "students")).current_snapshot().snapshot_id == before
    names = catalog().load_table(("bronze", "students")).schema().column_names
    assert "mother_maiden_name" in names  # bronze (restricted) took it; silver refused it


def subject_dids_file(url: str, path: Path) -> Path:
    """What production is given instead of a wallet: each student's DID (made here from fresh
    keys, as the students' own wallets would), never a private key."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    sourced = [r[0] for r in con.execute('SELECT SourcedId FROM "Students"')]
    con.close()
    lines = ["sourced_id,did"]
    for s in sourced:
        public = public_key_bytes(Ed25519PrivateKey.generate().public_key())
        lines.append(f"{s},{did_from_public_key(public)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_missing_pseudonym_key_refuses_to_run(
    tiny_source: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SPANDA_DEMO", raising=False)
    monkeypatch.setenv("SPANDA_SUBJECT_DIDS", str(subject_dids_file(tiny_source, tmp_path / "d")))
    with dg.instance_for_test() as instance:
        result = run_all(instance, raise_on_error=False)
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures
    assert all(
        "SPANDA_PSEUDONYM_KEY is not set" in str(e.step_failure_data.error) for e in failures
    )


def test_malformed_consent_is_quarantined(demo_env: str) -> None:
    _add_consent_event(demo_env, 800_001, 1, "given", purpose="marketing")
    _add_consent_event(demo_env, 800_002, 99_999, "given")
    _add_consent_event(demo_env, 800_003, 2, "maybe")
    with dg.instance_for_test() as instance:
        result = run_all(instance)
        (mat,) = result.asset_materializations_for_node("silver__consent_records")
        assert mat.metadata["quarantined"].value == 3
    reasons = (
        catalog()
        .load_table(("silver", "consent_quarantine"))
        .scan()
        .to_arrow()
        .column("reason")
        .to_pylist()
    )
    assert any("unknown purpose 'marketing'" in r for r in reasons)
    assert any("unknown student" in r for r in reasons)
    # silver is de-identified: the reason does not repeat the student number
    assert not any("99999" in r for r in reasons)


def test_consent_receipt_cli(demo_env: str, tmp_path: Path) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
    student = next(iter(expected_research_consent(demo_env)))
    out = tmp_path / "receipt.json"
    runner = CliRunner()
    issued = runner.invoke(main, ["consent", "issue", str(student), "--out", str(out)])
    assert issued.exit_code == 0, issued.output
    ok = runner.invoke(main, ["consent", "verify", str(out)])
    assert ok.exit_code == 0 and "valid: signed by the issuer" in ok.output
    out.write_text(out.read_text().replace('"given"', '"withdrawn"'))
    bad = runner.invoke(main, ["consent", "verify", str(out)])
    assert bad.exit_code == 1 and "changed after it was signed" in bad.output
    out.write_text("{not json")
    broken = runner.invoke(main, ["consent", "verify", str(out)])
    assert broken.exit_code == 2 and "line 1, column 2" in broken.output
