"""Sources whose columns carry other types than the demo's: text numbers, letter grades,
all-NULL columns, dates kept as strings. Never a raw Arrow kernel error: values are
cast, an uncastable one is quarantined with its value and the expected type, or the
run stops with what to change in sources.yaml."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
import yaml

from spanda_assets.definitions import defs
from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.validation.gold import _convert, target_type
from spanda_assets_tests.conftest import chain_checks
from spanda_assets_tests.test_privacy_e2e import expected_research_consent, run_all
from spanda_assets_tests.test_validation_gold import _model_training_students, catalog


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def _retype(url: str, table: str, types: dict[str, str]) -> None:
    """Declare columns of a SQLite table with other SQL types (the values stay; SQLite
    converts them by the new column's affinity), as a real source may have them."""
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    cols = con.execute(f'PRAGMA table_info("{table}")').fetchall()
    defs = ", ".join(
        f'"{c[1]}" {types.get(c[1], c[2])}' + (" PRIMARY KEY" if c[5] else "") for c in cols
    )
    con.executescript(
        f'CREATE TABLE "{table}__new" ({defs});'
        f'INSERT INTO "{table}__new" SELECT * FROM "{table}";'
        f'DROP TABLE "{table}";'
        f'ALTER TABLE "{table}__new" RENAME TO "{table}";'
    )
    con.commit()
    con.close()


def _sql(url: str, statement: str, *args: Any) -> list[Any]:
    con = sqlite3.connect(url.removeprefix("sqlite:///"))
    rows = con.execute(statement, args).fetchall()
    con.commit()
    con.close()
    return rows


def _both_consents(url: str) -> list[int]:
    return sorted(_model_training_students(url) & expected_research_consent(url))


def _enrollments_of(url: str, students: list[int]) -> list[int]:
    marks = ",".join("?" * len(students))
    rows = _sql(
        url,
        f'SELECT EnrollmentID FROM "Enrollments" WHERE StudentID IN ({marks}) '
        "AND Role = 'student' ORDER BY 1",
        *students,
    )
    return [r[0] for r in rows]


def _gold_and_quarantine(name: str, key: str) -> tuple[dict[Any, dict[str, Any]], list[Any]]:
    rows = catalog().load_table(("gold", name)).scan().to_arrow().to_pylist()
    held = [
        r
        for r in catalog().load_table(("gold", "quarantine")).scan().to_arrow().to_pylist()
        if r["table_name"] == name
    ]
    return {r[key]: r for r in rows}, held


def test_grades_kept_as_text_are_cast_and_letter_grades_quarantined(demo_env: str) -> None:
    _retype(demo_env, "Enrollments", {"FinalGrade": "TEXT"})
    ids = _enrollments_of(demo_env, _both_consents(demo_env))[:3]
    _sql(demo_env, "UPDATE \"Enrollments\" SET FinalGrade = 'B+' WHERE EnrollmentID = ?", ids[0])
    _sql(demo_env, "UPDATE \"Enrollments\" SET FinalGrade = ' 92 ' WHERE EnrollmentID = ?", ids[1])
    _sql(demo_env, 'UPDATE "Enrollments" SET FinalGrade = NULL WHERE EnrollmentID = ?', ids[2])
    with dg.instance_for_test() as instance:
        result = run_all(instance, raise_on_error=False)
    assert result.success, "a text column must not stop gold"
    bronze = catalog().load_table(("bronze", "enrollments")).schema().as_arrow()
    assert pa.types.is_string(bronze.field("final_grade").type) or pa.types.is_large_string(
        bronze.field("final_grade").type
    )
    gold, held = _gold_and_quarantine("validated_enrollments", "enrollment_id")
    schema = catalog().load_table(("gold", "validated_enrollments")).schema().as_arrow()
    assert schema.field("final_grade").type == pa.float64()
    (letter,) = [h for h in held if h["rule"] == "type_final_grade"]
    assert "'B+'" in letter["reason"] and "a number" in letter["reason"]
    assert "float64" in letter["reason"] and "sources.yaml" in letter["reason"]
    grades = sorted(g["final_grade"] for g in gold.values() if g["final_grade"] is not None)
    assert 92.0 in grades
    assert any(g["final_grade"] is None for g in gold.values())  # NULL stays NULL
    # the letter grade is held for its type alone, not also for the range rule
    assert not [
        h for h in held if h["row_key"] == letter["row_key"] and h["rule"] != letter["rule"]
    ]


def test_numbers_kept_as_text_and_an_all_null_column(demo_env: str) -> None:
    _retype(
        demo_env,
        "AssessmentResults",
        {"Score": "TEXT", "MaxScore": "TEXT", "AttemptNo": "TEXT"},
    )
    _retype(demo_env, "Enrollments", {"FinalGrade": "TEXT"})
    _sql(demo_env, 'UPDATE "Enrollments" SET FinalGrade = NULL')
    with dg.instance_for_test() as instance:
        result = run_all(instance, raise_on_error=False)
    assert result.success
    gold, held = _gold_and_quarantine("validated_assessments", "result_id")
    assert gold and not [h for h in held if h["rule"].startswith("type_")]
    schema = catalog().load_table(("gold", "validated_assessments")).schema().as_arrow()
    assert schema.field("score").type == pa.float64()
    assert schema.field("attempt_no").type == pa.int64()
    assert all(r["score"] <= r["max_score"] for r in gold.values())
    enrollments, _ = _gold_and_quarantine("validated_enrollments", "enrollment_id")
    assert enrollments and all(r["final_grade"] is None for r in enrollments.values())
    evals = [e for e in chain_checks(result) if e.check_name != "gx_soft_signals"]
    assert evals and all(e.passed for e in evals)


def test_dates_kept_as_text_stop_silver_with_the_setting_to_change(
    demo_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _retype(demo_env, "Enrollments", {"BeginDate": "TEXT", "EndDate": "TEXT"})
    with dg.instance_for_test() as instance:
        result = run_all(instance, raise_on_error=False)
    assert not result.success
    (failure,) = [
        e
        for e in result.all_events
        if e.event_type_value == "STEP_FAILURE" and e.step_key == "silver__enrollments"
    ]
    message = failure.step_failure_data.error.cause.message  # type: ignore[union-attr]
    for part in ("silver.enrollments", "begin_date", "string", "date", "column_types"):
        assert part in message, message
    assert "kernel" not in message

    assert load_table_or_none(catalog(), "silver", "enrollments") is None, "nothing written"

    # The setting the message names fixes it.
    doc = yaml.safe_load(
        (Path(__file__).parent.parent / "spanda_assets/config/sources.yaml").read_text()
    )
    for entry in doc["sources"]:
        if entry["table"] == "Enrollments":
            entry["column_types"] = {"BeginDate": "date", "EndDate": "date"}
    sources = tmp_path / "sources.yaml"
    sources.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("SPANDA_SOURCES_FILE", str(sources))

    with dg.instance_for_test() as instance:
        job = defs().resolve_job_def("materialize_platform")
        fixed = job.execute_in_process(
            instance=instance,
            run_config={"ops": {"bronze__enrollments": {"config": {"full_refresh": True}}}},
            raise_on_error=False,
        )
    assert fixed.success
    years = catalog().load_table(("silver", "enrollments")).scan().to_arrow()
    assert years.schema.field("begin_date_year").type == pa.int32()
    assert set(years.column("begin_date_year").to_pylist()) <= set(range(1990, 2101))


@pytest.mark.parametrize(
    ("values", "kind", "expected", "bad"),
    [
        (
            ["85", " +85 ", "B+", "85.0", "85.5", None, "1e3", "-3"],
            "integer",
            [85, 85, None, 85, None, None, 1000, -3],
            [False, False, True, False, True, False, False, False],
        ),
        (
            ["99999999999999999999", "inf", "nan"],
            "integer",
            [None, None, None],
            [True, True, True],
        ),
        (
            ["92", " 7.5 ", "A-", "", None, "-.5"],
            "number",
            [92.0, 7.5, None, None, None, -0.5],
            [False, False, True, True, False, False],
        ),
    ],
)
def test_text_values_are_read_or_named_never_raised(
    values: list[Any], kind: str, expected: list[Any], bad: list[bool]
) -> None:
    column = pa.chunked_array([pa.array(values, pa.string())])
    out, mask = _convert(column, kind, target_type(kind, column.type))
    assert pa.chunked_array([out]).to_pylist() == expected
    assert pa.chunked_array([mask]).to_pylist() == bad


def test_floats_and_decimals_to_integers_mark_only_the_inexact_values() -> None:
    floats = pa.chunked_array([[1.0, float("inf"), 1e20, 2.5, None]])
    out, mask = _convert(floats, "integer", pa.int64())
    assert pa.chunked_array([out]).to_pylist() == [1, None, None, None, None]
    assert pa.chunked_array([mask]).to_pylist() == [False, True, True, True, False]
    decimals = pa.chunked_array(
        [pa.array([Decimal("85.00"), Decimal("85.50")], pa.decimal128(10, 2))]
    )
    out, mask = _convert(decimals, "integer", pa.int64())
    assert pa.chunked_array([out]).to_pylist() == [85, None]
    assert pa.chunked_array([mask]).to_pylist() == [False, True]
