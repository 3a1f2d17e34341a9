"""gold.validated_*: quarantine with reasons, release after a fix, contracts as checks."""

from __future__ import annotations

import inspect
import sqlite3
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from spanda_assets.definitions import defs
from spanda_assets.defs.validation.assets import build_gold_asset
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.resources import LakehouseResource
from spanda_assets_tests.conftest import append_batch, chain_checks, child, killed
from spanda_assets_tests.test_privacy_e2e import (
    _add_consent_event,
    expected_research_consent,
    run_all,
    subject_of,
)


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
            "type_course_id": 0,
            "type_final_grade": 0,
            "type_begin_date_year": 0,
            "type_end_date_year": 0,
            "grade_range": 1,
            "role_known": 1,
            "dates_ordered": 0,
            "course_exists": 0,
            "student_exists": 0,
        }
        gold_checks = [c for c in chain_checks(result) if c.asset_key.path[0] == "gold"]
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
    posts = catalog().load_table(("gold", "validated_posts")).scan().to_arrow()
    assert posts["body_length"].to_pylist() == [len(b) for b in posts["body"].to_pylist()]


def _corrupt(name: str, key: str, **overrides: object) -> str:
    """Stage a row that bypassed the rules on the audit branch, as a buggy writer would."""
    table = catalog().load_table(("gold", name))
    row = table.scan(limit=1).to_arrow().to_pylist()[0]
    row.update(overrides)
    table.append(pa.Table.from_pylist([row], schema=table.schema().as_arrow()), branch="audit")
    return str(row[key])


def _published_keys(name: str, key: str) -> set[str]:
    return {str(k) for k in _keys("gold", name, key)}


def test_contract_checks_fail_with_observed_values_and_keys(
    demo_env: str, spanda_home: Path
) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
    bad_key = _corrupt(
        "validated_enrollments",
        "enrollment_id",
        enrollment_id="ps_" + "a" * 32,
        final_grade=150,
        role="principal",
    )
    published = catalog().load_table(("gold", "validated_enrollments")).current_snapshot()
    evals = _run_checks("validated_enrollments")
    # The audit failed: main did not move, and no reader sees the row.
    after = catalog().load_table(("gold", "validated_enrollments")).current_snapshot()
    assert after.snapshot_id == published.snapshot_id
    assert bad_key not in _published_keys("validated_enrollments", "enrollment_id")
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

    # Nothing changed: the next run validates the same rows again and still fails.
    evals = _run_checks("validated_enrollments")
    assert not evals["pandera_contract"].passed and not evals["gx_gates"].passed
    assert evals["pandera_contract"].metadata["rows_checked"].value >= 1


def test_duplicate_key_across_runs_fails_the_contract(demo_env: str) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
    table = catalog().load_table(("gold", "validated_posts"))
    row = table.scan(limit=1).to_arrow()
    table.append(row, branch="audit")  # the same post again, in a later file: valid on its own
    evals = _run_checks("validated_posts")
    assert len(_keys("gold", "validated_posts", "post_id")) == len(
        set(_keys("gold", "validated_posts", "post_id"))
    ), "the duplicate was published"
    pandera = evals["pandera_contract"]
    assert not pandera.passed
    assert pandera.metadata["rows_checked"].value == 1
    (dupe,) = [f for f in pandera.metadata["failures"].value if f["check"] == "unique across table"]
    assert dupe["key"] == [row.column("post_id")[0].as_py()]


def _run_checks(name: str) -> dict[str, Any]:
    """Materialize gold.<name> alone (nothing new from silver): its audits read what the
    audit branch holds that main lacks. Their evaluations by check name."""
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [build_gold_asset(name)],
            resources={"lakehouse": LakehouseResource()},
            instance=instance,
            raise_on_error=False,
        )
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _gold_md(result: dg.ExecuteInProcessResult, name: str) -> dict[str, Any]:
    (mat,) = result.asset_materializations_for_node(f"gold__{name}")
    return {k: v.value for k, v in mat.metadata.items()}


def _keys(namespace: str, name: str, column: str) -> list[Any]:
    t = catalog().load_table((namespace, name)).scan(selected_fields=(column,)).to_arrow()
    return t.column(0).to_pylist()


def _quarantine(name: str) -> list[dict[str, Any]]:
    rows = catalog().load_table(("gold", "quarantine")).scan().to_arrow().to_pylist()
    return [r for r in rows if r["table_name"] == name]


def assert_gold_consistent(url: str, name: str, source: str, key: str) -> None:
    """What an incremental history left equals what a rebuild from silver would hold:
    every consented silver row is in gold or in quarantine, never both, never twice."""
    allowed = {
        subject_of(s) for s in _model_training_students(url) & expected_research_consent(url)
    }
    silver = catalog().load_table(("silver", source)).scan().to_arrow()
    pairs = zip(silver[key].to_pylist(), silver["subject_id"].to_pylist(), strict=True)
    expected = {k for k, s in pairs if s in allowed}
    gold = _keys("gold", name, key)
    held = [r["row_key"] for r in _quarantine(name)]
    assert len(gold) == len(set(gold)), "duplicate keys in gold"
    assert not set(gold) & set(held), "a key is both validated and quarantined"
    assert set(gold) | set(held) == expected
    rules = {(r["row_key"], r["rule"]) for r in _quarantine(name)}
    assert len(rules) == len(held), "duplicate quarantine entries"


def _checked(result: dg.ExecuteInProcessResult, name: str) -> dict[str, int]:
    """Rows each contract check of gold.<name> validated in this run."""
    return {
        e.check_name: e.metadata["rows_checked"].value
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey(["gold", name])
    }


def test_gold_and_its_checks_read_only_new_rows(demo_env: str, spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        result = run_all(instance)
        first = _gold_md(result, "validated_posts")
        assert first["full_rebuild"] is True
        assert first["dagster/table_name"] == "gold.validated_posts"
        assert first["rows_read_from_silver"] == len(_keys("silver", "forum_posts", "post_id"))
        total = first["dagster/row_count"]
        assert _checked(result, "validated_posts") == {
            "pandera_contract": total,
            "gx_gates": total,
            "gx_soft_signals": total,
        }
        result = run_all(instance)
        again = _gold_md(result, "validated_posts")
        assert again["full_rebuild"] is False
        assert again["rows_read_from_silver"] == 0 and again["rows_validated"] == 0
        assert again["dagster/row_count"] == first["dagster/row_count"]
        # the asset itself shows the quality history and links the Data Docs
        # (this run's audits ran before the asset published: its own run is counted)
        assert "| pandera_contract | 2 | 2 | 100.00% | passed" in again["quality_history"]
        assert Path(again["data_docs"].removeprefix("file://")).is_file()
        assert set(_checked(result, "validated_posts").values()) == {0}
        assert all(e.passed for e in chain_checks(result))
        gates = next(e for e in result.get_asset_check_evaluations() if e.check_name == "gx_gates")
        docs = gates.metadata["data_docs"].value  # the last validation's docs stay linked
        assert Path(docs.removeprefix("file://")).is_file()

        append_batch(demo_env, spanda_home)
        result = run_all(instance)
        third = _gold_md(result, "validated_posts")
        (silver_mat,) = result.asset_materializations_for_node("silver__forum_posts")
        appended = silver_mat.metadata["rows_written"].value
        assert third["full_rebuild"] is False
        assert third["rows_read_from_silver"] == appended > 0
        assert third["dagster/row_count"] == (
            first["dagster/row_count"]
            + third["rows_validated"]
            - third["rows_erased_after_withdrawal"]
        )
        # the checks validate exactly what gold appended, not the rows an erasure rewrote
        assert third["rows_erased_after_withdrawal"] > 0
        assert set(_checked(result, "validated_posts").values()) == {third["rows_validated"]}
        # upsert tables merge changed rows instead of duplicating them
        assert _gold_md(result, "validated_enrollments")["full_rebuild"] is False
    for name, source, key in (
        ("validated_posts", "forum_posts", "post_id"),
        ("validated_enrollments", "enrollments", "enrollment_id"),
        ("validated_assessments", "assessment_results", "result_id"),
    ):
        assert_gold_consistent(demo_env, name, source, key)


def test_post_with_unknown_course_is_released_when_the_course_arrives(demo_env: str) -> None:
    both = sorted(_model_training_students(demo_env) & expected_research_consent(demo_env))
    _sql(
        demo_env,
        'INSERT INTO "ForumPosts" VALUES '
        f"(9000001, {both[0]}, 777, 'Question about the new elective', '2030-01-01 00:00:00')",
    )
    with dg.instance_for_test() as instance:
        md = _gold_md(run_all(instance), "validated_posts")
        assert md["failures_by_rule"]["course_exists"] == 1
        held = _quarantine("validated_posts")
        assert [r["rule"] for r in held] == ["course_exists"]
        key = held[0]["row_key"]
        assert key not in _keys("gold", "validated_posts", "post_id")

        _sql(
            demo_env,
            "INSERT INTO \"Courses\" VALUES (777, 'ELEC-777', 'Elective', 'Arts', '2030S', "
            "'Ann Teacher', 'ann@example.edu', '2030-01-01 00:00:00')",
        )
        md = _gold_md(run_all(instance), "validated_posts")
        assert md["full_rebuild"] is False
        assert md["rows_released_from_quarantine"] == 1
        assert _quarantine("validated_posts") == []
        assert key in _keys("gold", "validated_posts", "post_id")
    assert_gold_consistent(demo_env, "validated_posts", "forum_posts", "post_id")


def test_model_training_withdrawal_leaves_gold_but_not_silver(demo_env: str) -> None:
    both = sorted(_model_training_students(demo_env) & expected_research_consent(demo_env))
    with dg.instance_for_test() as instance:
        run_all(instance)
        gold_subjects = set(_keys("gold", "validated_posts", "subject_id"))
        student = next(s for s in both if subject_of(s) in gold_subjects)
        subject = subject_of(student)
        _add_consent_event(demo_env, 900_101, student, "withdrawn", purpose="model_training")
        md = _gold_md(run_all(instance), "validated_posts")
        assert md["full_rebuild"] is False and md["rows_erased_after_withdrawal"] >= 1
        assert subject not in set(_keys("gold", "validated_posts", "subject_id"))
        assert subject in set(_keys("silver", "forum_posts", "subject_id"))

        _add_consent_event(demo_env, 900_102, student, "given", purpose="model_training")
        run_all(instance)
        assert subject in set(_keys("gold", "validated_posts", "subject_id"))
    assert_gold_consistent(demo_env, "validated_posts", "forum_posts", "post_id")


def test_killed_between_quarantine_and_gold_commits_recovers(
    demo_env: str, spanda_home: Path
) -> None:
    """SIGKILL after the quarantine commit, before the gold commit: the retry releases the
    held post and quarantines the new one exactly once."""
    both = sorted(_model_training_students(demo_env) & expected_research_consent(demo_env))
    _sql(
        demo_env,
        'INSERT INTO "ForumPosts" VALUES '
        f"(9000002, {both[0]}, 778, 'Which room is the lab in?', '2030-01-01 00:00:00')",
    )
    with dg.instance_for_test() as instance:
        run_all(instance)
        assert len(_quarantine("validated_posts")) == 1
        gold_snapshot = catalog().load_table(("gold", "validated_posts")).current_snapshot()
        # The course appears and a bad post arrives; the gold run dies between its commits.
        _sql(
            demo_env,
            "INSERT INTO \"Courses\" VALUES (778, 'LAB-778', 'Lab', 'Science', '2030S', "
            "'Bo Teacher', 'bo@example.edu', '2030-01-01 00:00:00')",
            'INSERT INTO "ForumPosts" VALUES '
            f"(9000003, {both[0]}, 779, 'Is there a makeup session?', '2030-01-02 00:00:00')",
        )
        job = defs().resolve_job_def("materialize_platform")
        upstream = dg.AssetSelection.groups("bronze", "privacy", "silver")
        keys = list(upstream.resolve(job.asset_layer.asset_graph))
        assert job.execute_in_process(instance=instance, asset_selection=keys).success
    run = ["-m", "spanda_assets_tests.materialize_once", "gold/validated_posts"]
    crashed = child(spanda_home, run, fault="gold_between_commits:1")
    assert killed(crashed), crashed.stderr[-2000:]
    gold = catalog().load_table(("gold", "validated_posts"))
    assert gold.current_snapshot().snapshot_id == gold_snapshot.snapshot_id
    held = [r["rule"] for r in _quarantine("validated_posts")]
    assert "course_exists" in held  # the quarantine commit of the killed run stands

    with dg.instance_for_test() as instance:
        md = _gold_md(run_all(instance), "validated_posts")
    assert md["rows_released_from_quarantine"] == 1
    assert [r["rule"] for r in _quarantine("validated_posts")] == ["course_exists"]
    assert_gold_consistent(demo_env, "validated_posts", "forum_posts", "post_id")


def test_gx_still_has_the_fingerprint_threshold() -> None:
    """contracts.run_gx switches GX's per-frame hash off through this module constant
    (docs/decisions/0023): an upgrade that drops it must be noticed."""
    from great_expectations.execution_engine import (  # noqa: PLC0415 (4 s at collection)
        pandas_execution_engine,
    )

    assert isinstance(pandas_execution_engine.HASH_THRESHOLD, int | float)

    source = inspect.getsource(pandas_execution_engine.PandasExecutionEngine)
    assert "HASH_THRESHOLD" in source, "GX no longer reads the threshold: revisit 0023"


def test_gx_validation_draws_no_progress_bar(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GX draws a tqdm bar per validation ("Calculating Metrics") unless its context says
    otherwise; TQDM_DISABLE cannot stop it (GX passes `disable=` itself). A run's log and
    the demo's terminal get the verdicts only."""
    import pandas as pd  # noqa: PLC0415

    from spanda_assets.lib.validation.contracts import load_suite, run_gx  # noqa: PLC0415

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    frame = pd.DataFrame(
        {
            "post_id": [f"ps_{i:032x}" for i in range(40)],
            "subject_id": [f"ps_{i % 9:032x}" for i in range(40)],
            "course_id": [1] * 40,
            "created_at_year": [2026] * 40,
            "body_length": [120 + i for i in range(40)],
        }
    )
    results = run_gx("validated_posts", frame, tmp_path, "post_id")
    out, err = capfd.readouterr()
    # the suite ran, gates and soft signals alike
    expectations = load_suite("validated_posts")["expectations"]
    assert results["gate"].evaluated + results["soft"].evaluated == len(expectations)
    assert results["gate"].passed and results["soft"].passed
    for stream, text in (("stdout", out), ("stderr", err)):
        for mark in ("Calculating Metrics", "\r", "%|", "it/s]"):
            assert mark not in text, f"{mark!r} on {stream}: {text[:400]!r}"
