"""gold.validated_*: quarantine with reasons, release after a fix, contracts as checks."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets_tests.test_privacy_e2e import expected_research_consent, run_all


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def catalog() -> Any:
    return open_catalog(CatalogConfig.from_env())


def _sql(url: str, *statements: str) -> None:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    for s in statements:
        con.execute(s)
    con.commit()
    con.close()


def _model_training_students(url: str) -> set[int]:
    return expected_research_consent(url, "model_training")


def test_bad_rows_are_quarantined_then_released(demo_env: str) -> None:
    both = sorted(_model_training_students(demo_env) & expected_research_consent(demo_env))
    student = both[0]
    _sql(
        demo_env,
        'INSERT INTO "Enrollments" VALUES '
        f"(90001, {student}, 1, 'student', '2026-09-01', '2026-12-20', 150, '2026-09-01'),"
        f"(90002, {student}, 2, 'principal', '2026-09-01', '2026-12-20', 80, '2026-09-01')",
    )
    with dg.instance_for_test() as instance:
        result = run_all(instance)
        (mat,) = result.asset_materializations_for_node("gold__validated_enrollments")
        md = {k: v.value for k, v in mat.metadata.items()}
        assert md["rows_quarantined"] == 2
        assert md["failures_by_rule"] == {
            "grade_range": 1,
            "role_known": 1,
            "dates_ordered": 0,
            "course_exists": 0,
            "student_exists": 0,
        }
        gold_checks = [
            c for c in result.get_asset_check_evaluations() if c.asset_key.path[0] == "gold"
        ]
        assert gold_checks and all(c.passed for c in gold_checks), [
            (c.asset_key, c.check_name, c.metadata) for c in gold_checks if not c.passed
        ]
        q = catalog().load_table(("gold", "quarantine")).scan().to_arrow().to_pylist()
        mine = [r for r in q if r["table_name"] == "validated_enrollments"]
        assert {r["rule"] for r in mine} == {"grade_range", "role_known"}
        assert {r["reason"] for r in mine} == {
            "final_grade is outside 0-100",
            "role is not one of student, aide, teacher",
        }
        validated = catalog().load_table(("gold", "validated_enrollments")).scan().to_arrow()
        assert not {r["row_key"] for r in mine} & set(validated.column("enrollment_id").to_pylist())

        # Fix the source: the next run releases both rows.
        _sql(
            demo_env,
            "UPDATE \"Enrollments\" SET FinalGrade = 88, Role = 'student', "
            "ModifiedAt = '2030-01-01 00:00:00' WHERE EnrollmentID IN (90001, 90002)",
        )
        run_all(instance)
        q = catalog().load_table(("gold", "quarantine")).scan().to_arrow().to_pylist()
        assert [r for r in q if r["table_name"] == "validated_enrollments"] == []
        validated = catalog().load_table(("gold", "validated_enrollments")).scan().to_arrow()
        assert {r["row_key"] for r in mine} <= set(validated.column("enrollment_id").to_pylist())


def test_gold_holds_only_model_training_consent(demo_env: str) -> None:
    from spanda_assets_tests.test_privacy_e2e import subject_of

    with dg.instance_for_test() as instance:
        run_all(instance)
    allowed = {
        subject_of(s)
        for s in _model_training_students(demo_env) & expected_research_consent(demo_env)
    }
    got = set(
        catalog()
        .load_table(("gold", "validated_posts"))
        .scan()
        .to_arrow()
        .column("subject_id")
        .to_pylist()
    )
    assert got and got <= allowed
    silver = set(
        catalog()
        .load_table(("silver", "forum_posts"))
        .scan()
        .to_arrow()
        .column("subject_id")
        .to_pylist()
    )
    assert silver - got, "some research-only students are in silver but not in the ML dataset"


def _corrupt(name: str, key: str, **overrides: object) -> str:
    """Append a row that bypassed the rules, as a buggy writer would."""
    table = catalog().load_table(("gold", name))
    row = table.scan(limit=1).to_arrow().to_pylist()[0]
    row.update(overrides)
    table.append(pa.Table.from_pylist([row], schema=table.schema().as_arrow()))
    return str(row[key])


def test_contract_checks_fail_with_observed_values_and_keys(
    demo_env: str, spanda_home: Path
) -> None:
    from spanda_assets.defs.validation.checks import build_checks
    from spanda_assets.resources import LakehouseResource

    with dg.instance_for_test() as instance:
        run_all(instance)
    bad_key = _corrupt(
        "validated_enrollments",
        "enrollment_id",
        enrollment_id="ps_" + "a" * 32,
        final_grade=150,
        role="principal",
    )
    checks = build_checks("validated_enrollments")
    resources = {"lakehouse": LakehouseResource()}
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            checks,
            resources=resources,
            instance=instance,
            raise_on_error=False,
            selection=dg.AssetSelection.all_asset_checks(),
        )
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    pandera = evals["pandera_contract"]
    assert not pandera.passed and pandera.severity == dg.AssetCheckSeverity.ERROR
    failures = pandera.metadata["failures"].value
    assert any(
        f["column"] == "final_grade" and f["observed"] == "150.0" and f["key"] == bad_key
        for f in failures
    )
    gates = evals["gx_gates"]
    assert not gates.passed
    gx_failures = {f["expectation"]: f for f in gates.metadata["failures"].value}
    assert gx_failures["expect_column_values_to_be_in_set"]["unexpected_sample"] == ["principal"]
    assert gx_failures["expect_column_values_to_be_in_set"]["failing_keys"] == [bad_key]
    docs = gates.metadata["data_docs"].value
    assert docs.startswith("file://") and Path(docs.removeprefix("file://")).is_file()
    assert evals["gx_soft_signals"].severity == dg.AssetCheckSeverity.WARN
    history = catalog().load_table(("gold", "dq_history")).scan().to_arrow()
    mine = history.filter(pa.compute.equal(history["table_name"], "validated_enrollments"))
    assert {"pandera_contract", "gx_gates", "gx_soft_signals"} <= set(
        mine.column("check_name").to_pylist()
    )
    assert False in mine.column("passed").to_pylist()
