"""Write-audit-publish when things go wrong: SIGKILL at write, audit and publish; snapshot
expiry and compaction under every stage; the audit branch when main moves on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from pyiceberg.io.pyarrow import _dataframe_to_data_files

from spanda_assets.definitions import defs
from spanda_assets.lib import writes
from spanda_assets.lib.lakehouse import ensure_namespace
from spanda_assets.lib.privacy.erasure import _register, derived_tables
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.privacy.subjects import did_of
from spanda_assets_tests.conftest import (
    TABLES,
    append_batch,
    assert_bronze_equals_source,
    child,
    killed,
)
from spanda_assets_tests.test_privacy_e2e import expected_research_consent, run_all, subject_of
from spanda_assets_tests.test_validation_gold import assert_gold_consistent, catalog

GOLD = (
    ("validated_posts", "forum_posts", "post_id"),
    ("validated_enrollments", "enrollments", "enrollment_id"),
    ("validated_assessments", "assessment_results", "result_id"),
)


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def _child(home: Path, keys: list[str], fault: str | None = None) -> Any:
    return child(home, ["-m", "spanda_assets_tests.materialize_once", *keys], fault)


def _keys(namespace: str, name: str, key: str) -> list[Any]:
    return catalog().load_table((namespace, name)).scan().to_arrow()[key].to_pylist()


def assert_silver_posts_exact(url: str) -> None:
    """silver.forum_posts main holds each consenting student's bronze post exactly once."""
    allowed = {subject_of(s) for s in expected_research_consent(url)}
    bronze = catalog().load_table(("bronze", "forum_posts")).scan().to_arrow()
    ps = Pseudonymizer(load_key())
    expected = {
        ps.one("forum_posts.post_id", p)
        for p, s in zip(
            bronze["post_id"].to_pylist(), bronze["student_id"].to_pylist(), strict=True
        )
        if subject_of(s) in allowed
    }
    keys = catalog().load_table(("silver", "forum_posts")).scan().to_arrow()["post_id"].to_pylist()
    assert len(keys) == len(set(keys)), "a silver row was published twice"
    assert set(keys) == expected, (
        f"missing {len(expected - set(keys))}, unexpected {len(set(keys) - expected)}"
    )


SILVER_POINTS = [
    ("before_commit:1", False),  # data files written, the audit-branch commit not made
    ("before_audit:1", False),  # staged, not audited
    ("before_publish:1", False),  # audited, not published
    ("after_publish:1", True),  # published, the run's own bookkeeping not done
]


@pytest.mark.parametrize(("fault", "moved"), SILVER_POINTS)
def test_silver_killed_at_write_audit_and_publish_recovers(
    demo_env: str, spanda_home: Path, fault: str, moved: bool
) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
    append_batch(demo_env, spanda_home)
    bronze = [f"bronze/{name}" for _, name, _ in TABLES] + ["bronze/data_subjects"]
    assert _child(spanda_home, bronze).returncode == 0
    before = set(_keys("silver", "forum_posts", "post_id"))
    crashed = _child(spanda_home, ["silver/forum_posts"], fault)
    assert killed(crashed), crashed.stderr[-2000:]
    # (withdrawals may have left main already: erasure does not wait for the audit)
    published_new = bool(set(_keys("silver", "forum_posts", "post_id")) - before)
    assert published_new is moved
    done = _child(spanda_home, ["silver/forum_posts"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert_silver_posts_exact(demo_env)


@pytest.mark.parametrize(
    ("fault", "moved"),
    [("gold_between_commits:1", False), ("before_publish:1", False), ("after_publish:1", True)],
)
def test_gold_killed_between_commits_and_at_publish_recovers(
    demo_env: str, spanda_home: Path, fault: str, moved: bool
) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
        append_batch(demo_env, spanda_home)
        upstream = dg.AssetSelection.groups("bronze", "privacy", "silver")
        job = defs().resolve_job_def("materialize_platform")
        keys = upstream.resolve(job.asset_layer.asset_graph)
        assert job.execute_in_process(instance=instance, asset_selection=list(keys)).success
    before = set(_keys("gold", "validated_posts", "post_id"))
    crashed = _child(spanda_home, ["gold/validated_posts"], fault)
    assert killed(crashed), crashed.stderr[-2000:]
    published_new = bool(set(_keys("gold", "validated_posts", "post_id")) - before)
    assert published_new is moved
    done = _child(spanda_home, ["gold/validated_posts"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert_gold_consistent(demo_env, "validated_posts", "forum_posts", "post_id")


def _compact(table: Any) -> None:
    """Rewrite every live data file into one, in one snapshot that removes the old files
    and adds the new one (what an engine's compaction commits), carrying none of our
    markers."""
    rows = table.scan().to_arrow()
    tasks = list(table.scan().plan_files())
    with table.transaction() as tx, tx.update_snapshot().overwrite() as rewrite:
        for task in tasks:
            rewrite.delete_data_file(task.file)
        for data_file in _dataframe_to_data_files(
            table_metadata=tx.table_metadata, df=rows, io=table.io
        ):
            rewrite.append_data_file(data_file)


def _compact_and_expire(table: Any) -> None:
    """What another engine's maintenance does: expire history, compact, expire again."""
    writes.expire(table, older_than=None)
    if table.current_snapshot() is not None and writes.row_count(table):
        _compact(table)
    if writes.head(table, writes.AUDIT) is not None:
        writes.reset_audit(table)
    writes.expire(table, older_than=None)
    table.refresh()
    assert len(table.snapshots()) <= 1


def test_every_stage_survives_expiry_and_compaction(demo_env: str, spanda_home: Path) -> None:
    with dg.instance_for_test() as instance:
        run_all(instance)
    lake = catalog()
    for table in derived_tables(lake, ("bronze", "silver", "gold")):
        _compact_and_expire(table)
    append_batch(demo_env, spanda_home)
    with dg.instance_for_test() as instance:
        result = run_all(instance)
    extracted = {
        m.asset_key.to_user_string(): m.metadata["rows_read"].value
        for m in result.get_asset_materialization_events()
        for m in [m.step_materialization_data.materialization]
        if m.asset_key.path[0] == "bronze" and "rows_read" in m.metadata
    }
    # the watermarks survived: an increment, not a full re-extract of the posts
    posts_in_source = len(catalog().load_table(("bronze", "forum_posts")).scan().to_arrow())
    assert 0 < extracted["bronze/forum_posts"] < posts_in_source
    for source, name, key in TABLES:
        assert_bronze_equals_source(demo_env, catalog(), source, name, key)
    assert_silver_posts_exact(demo_env)
    for name, source, key in GOLD:
        assert_gold_consistent(demo_env, name, source, key)


def test_the_audit_branch_follows_main_when_main_moves_on_its_own(catalog: Any) -> None:
    ensure_namespace(catalog, "silver")
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("v", pa.int64())])
    table = catalog.create_table(("silver", "t"), schema=schema)
    writes.open_audit(table)
    state = {"spanda.bronze-sequence": "5"}
    with table.transaction() as tx:
        tx.append(pa.table({"k": ["a", "b"], "v": [1, 2]}, schema=schema), branch=writes.AUDIT)
        writes.close_run(tx, schema, state, writes.AUDIT)
    assert writes.row_count(table) == 0 and writes.row_count(table, writes.AUDIT) == 2
    pending = writes.pending(table)
    assert [t.file.record_count for t in writes.unpublished_files(pending.view, 0)] == [2]
    assert writes.publish(table).published
    assert writes.row_count(table) == 2
    assert writes.read_state(table, "spanda.bronze-sequence", ["spanda.bronze-sequence"]) == state
    # unpublished work, then main moves by itself (an erasure): the branch is reset to main
    with table.transaction() as tx:
        tx.append(pa.table({"k": ["c"], "v": [3]}, schema=schema), branch=writes.AUDIT)
        writes.close_run(tx, schema, {"spanda.bronze-sequence": "9"}, writes.AUDIT)
    assert writes.erase_rows(table, writes.in_filter("k", ["a"])) == 1
    assert writes.open_audit(table) is True
    assert writes.row_count(table, writes.AUDIT) == 1  # "c" is gone with the branch
    assert (
        writes.read_state(table, "spanda.bronze-sequence", ["spanda.bronze-sequence"], writes.AUDIT)
        == state
    ), "the writer resumes from main's position"
    # a reader of main never saw "c"
    assert sorted(table.scan().to_arrow()["k"].to_pylist()) == ["b"]


def _tiny_wap_table(catalog: Any, name: str) -> Any:
    ensure_namespace(catalog, "silver")
    schema = pa.schema([pa.field("k", pa.string(), nullable=False), pa.field("v", pa.int64())])
    table = catalog.create_table(("silver", name), schema=schema)
    writes.open_audit(table)
    return table, schema


def _stage(table: Any, schema: pa.Schema, keys: list[str], position: str) -> None:
    with table.transaction() as tx:
        rows = pa.table({"k": keys, "v": list(range(len(keys)))}, schema=schema)
        tx.append(rows, branch=writes.AUDIT)
        writes.close_run(tx, schema, {"spanda.bronze-sequence": position}, writes.AUDIT)


def test_a_rollback_of_main_resets_the_audit_branch(catalog: Any) -> None:
    table, schema = _tiny_wap_table(catalog, "rolled")
    _stage(table, schema, ["a"], "1")
    assert writes.publish(table).published
    first = table.current_snapshot().snapshot_id
    _stage(table, schema, ["b"], "2")
    assert writes.publish(table).published
    # An operator rolls main back to undo the second publication.
    table.manage_snapshots().rollback_to_snapshot(first).commit()
    assert writes.open_audit(table) is True, "the branch still held the rolled-back rows"
    position = writes.read_state(
        table, "spanda.bronze-sequence", ["spanda.bronze-sequence"], writes.AUDIT
    )
    assert position == {"spanda.bronze-sequence": "1"}
    assert sorted(writes.scan(table, writes.AUDIT).to_arrow()["k"].to_pylist()) == ["a"]


def test_publish_refuses_when_an_erasure_lands_during_the_audit(catalog: Any) -> None:
    table, schema = _tiny_wap_table(catalog, "raced")
    _stage(table, schema, ["a", "b"], "1")
    assert writes.publish(table).published
    _stage(table, schema, ["c"], "2")
    audited = writes.pending(table).snapshot_id
    # `spanda erase` in another process, while the audit runs
    other = catalog.load_table(("silver", "raced"))
    assert writes.erase_rows(other, writes.in_filter("k", ["a"])) == 1
    with pytest.raises(writes.PublishRefused, match="main moved during the audit"):
        writes.publish(table, audited=audited)
    assert sorted(table.scan().to_arrow()["k"].to_pylist()) == ["b"], "the erasure stands"


def test_the_erasure_register_is_read_by_every_run(demo_env: str, spanda_home: Path) -> None:
    """A request registered after a run loaded consent still keeps the student out."""
    with dg.instance_for_test() as instance:
        run_all(instance)
    posts = catalog().load_table(("silver", "forum_posts")).scan().to_arrow()
    subject = posts["subject_id"][0].as_py()
    bronze = catalog().load_table(("bronze", "forum_posts")).scan().to_arrow()
    student = next(s for s in bronze["student_id"].to_pylist() if subject_of(s) == subject)
    # Registered only: no rows deleted by hand. The next runs must apply it themselves.

    did = did_of(catalog(), student)
    _register(catalog(), student, Pseudonymizer(load_key()).subject_id(did), "test")
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
    for namespace, name in (("silver", "forum_posts"), ("gold", "validated_posts")):
        subjects = catalog().load_table((namespace, name)).scan().to_arrow()["subject_id"]
        assert subject not in subjects.to_pylist(), f"{namespace}.{name}"


def test_a_silver_rebuild_keeps_main_readable_until_its_audit_passes(
    demo_env: str, spanda_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bronze full refresh rebuilds silver on its audit branch: a failing audit leaves the
    published table (and gold) as they were; once it passes, gold rebuilds from it once."""
    with dg.instance_for_test() as instance:
        run_all(instance)
    before = sorted(_keys("silver", "forum_posts", "post_id"))
    gold_before = sorted(_keys("gold", "validated_posts", "post_id"))
    tripwire = tmp_path / "identifiers.yaml"
    tripwire.write_text(  # every post has a vowel: this audit cannot pass
        "identifiers:\n  - {name: vowel, pattern: '[aeiou]', category: ID, scrub: false}\n"
    )
    monkeypatch.setenv("SPANDA_IDENTIFIER_PATTERNS", str(tripwire))
    job = defs().resolve_job_def("materialize_platform")
    refresh = {"ops": {"bronze__forum_posts": {"config": {"full_refresh": True}}}}
    with dg.instance_for_test() as instance:
        failed = job.execute_in_process(instance=instance, run_config=refresh, raise_on_error=False)
    assert not failed.success
    assert sorted(_keys("silver", "forum_posts", "post_id")) == before
    assert sorted(_keys("gold", "validated_posts", "post_id")) == gold_before
    monkeypatch.delenv("SPANDA_IDENTIFIER_PATTERNS")
    with dg.instance_for_test() as instance:
        fixed = job.execute_in_process(instance=instance, raise_on_error=False)
    assert fixed.success
    gold_md = {
        m.asset_key.to_user_string(): m.metadata
        for e in fixed.get_asset_materialization_events()
        for m in [e.step_materialization_data.materialization]
    }
    assert gold_md["gold/validated_posts"]["full_rebuild"].value is True
    assert_silver_posts_exact(demo_env)
    assert_gold_consistent(demo_env, "validated_posts", "forum_posts", "post_id")
