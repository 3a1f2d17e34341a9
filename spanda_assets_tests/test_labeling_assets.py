"""The labeled set in the asset graph, on the embedded default (local annotation store):
tasks from published gold, annotations resolved into gold.labeled_posts through
write-audit-publish, label-quality checks, and consent withdrawal reaching the tool."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest

from spanda_assets.definitions import defs
from spanda_assets.lib.labeling.labeled import split_of
from spanda_assets.lib.labeling.store import AnnotationStore
from spanda_assets.lib.labeling.studio import Studio
from spanda_assets.resources import AnnotationToolResource
from spanda_assets_tests.servers import LabelStudioServer, free_port
from spanda_assets_tests.test_privacy_e2e import (
    _add_consent_event,
    catalog,
    expected_research_consent,
    run_all,
    subject_of,
)


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    monkeypatch.setenv("SPANDA_LABEL_BATCH", "40")
    monkeypatch.setenv("SPANDA_MIN_LABELS_PER_CLASS", "3")
    return tiny_source


class Tool:
    """The annotation tool as instructors and an auditor see it: the local store, or a
    real Label Studio server."""

    def __init__(self, store: AnnotationStore | None = None, studio: Studio | None = None):
        self.store, self.studio = store, studio
        self._users: dict[str, int] = {}

    def bodies(self) -> dict[str, str]:
        if self.store is not None:
            return {t.data.post_key: t.data.body for t in self.store.tasks()}
        assert self.studio is not None
        return {t["data"]["post_key"]: t["data"]["body"] for t in self.studio.tasks()}

    def keys(self) -> list[str]:
        if self.store is not None:
            return [t.data.post_key for t in self.store.tasks()]
        assert self.studio is not None
        return [t["data"]["post_key"] for t in self.studio.tasks()]

    def annotate(self, key: str, label: str, who: str) -> None:
        if self.store is not None:
            self.store.add_annotation(key, label, completed_by=who)
            return
        assert self.studio is not None
        user = self._users.get(who) or self.studio.user(f"{who}@spanda.test")
        self._users[who] = user
        self.studio.annotate(self.studio.task_ids()[key][0], label, user)


@pytest.fixture(params=["local", "label_studio"])
def tool(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Tool:
    if request.param == "local":
        return Tool(store=AnnotationStore())
    server: LabelStudioServer = request.getfixturevalue("label_studio")
    title = f"spanda assets {uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LABEL_STUDIO_URL", server.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", server.token)
    monkeypatch.setenv("LABEL_STUDIO_PROJECT", title)
    studio = Studio(server.url, server.token)
    studio.provision(title=title)
    return Tool(studio=studio)


def _md(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    (mat,) = result.asset_materializations_for_node(node)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.asset_key == dg.AssetKey(["gold", "labeled_posts"])
    }


def _labeled() -> list[dict[str, Any]]:
    table = catalog().load_table(("gold", "labeled_posts"))
    return table.scan().to_arrow().to_pylist()


def _gold_posts() -> dict[str, dict[str, Any]]:
    rows = catalog().load_table(("gold", "validated_posts")).scan().to_arrow().to_pylist()
    return {str(r["post_id"]): r for r in rows}


def _annotate(tool: Tool, keys: list[str], label_of: Any) -> None:
    """Two simulated annotators: everyone labels with the post's rule, the second one
    on every other post (the overlap sample)."""
    for i, key in enumerate(keys):
        tool.annotate(key, label_of(key), "annotator.one")
        if i % 2 == 0:
            tool.annotate(key, label_of(key), "annotator.two")


def test_tasks_labels_checks_and_withdrawal(demo_env: str, tool: Tool) -> None:
    with dg.instance_for_test() as instance:
        first = run_all(instance)
        md = _md(first, "labeling__label_tasks")
        gold = _gold_posts()
        tasks = tool.bodies()
        # At most the batch, only published gold posts, each with its de-identified text.
        assert md["tasks_pushed"] == len(tasks) == min(40, len(gold))
        for key, body in tasks.items():
            assert body == gold[key]["body"]
        assert md["prelabel_model_version"].startswith("lf-")
        # the first run reads all of gold into the pool, and keeps the rest waiting
        assert md["gold_rows_read"] == md["posts_prelabeled"] == len(gold)
        assert md["posts_awaiting_a_task"] == len(gold) - len(tasks)
        assert {f["function"] for f in md["labeling_functions"]}  # per-rule figures shown
        # Nothing annotated yet: the labeled set publishes empty, and says it is not ready.
        assert _labeled() == []
        assert _checks(first)["minimum_labels_per_class"] is False
        assert _checks(first)["split_disjoint"] is True

        # Re-run: no duplicate tasks; the next batch goes out.
        second = _md(run_all(instance), "labeling__label_tasks")
        keys_after = tool.keys()
        assert len(keys_after) == len(set(keys_after))
        assert second["tasks_already_in_tool"] == len(tasks)
        # incremental: nothing new in gold, nothing read from it; the pool serves the batch
        assert second["gold_rows_read"] == 0 and second["pool_rebuilt"] is False
        assert second["tasks_pushed"] == min(40, len(gold) - len(tasks))

        def label_of(key: str) -> str:
            return "urgent" if hashlib.sha256(key.encode()).digest()[0] % 3 == 0 else "not_urgent"

        annotated = keys_after[:30]
        _annotate(tool, annotated, label_of)
        result = run_all(instance)
        labeled = {r["post_key"]: r for r in _labeled()}
        assert set(labeled) == set(annotated)
        for key, row in labeled.items():
            assert row["label"] == label_of(key)
            assert row["body"] == gold[key]["body"]
            assert row["split"] == split_of(row["subject_id"])
        checks = _checks(result)
        assert checks["split_disjoint"] is True
        assert checks["minimum_labels_per_class"] is True
        assert checks["annotator_agreement"] is True  # the two annotators always agree
        md = _md(result, "gold__labeled_posts")
        assert md["resolved"] == 30 and md["unresolved_ties"] == 0

        # A re-run with nothing new rewrites nothing.
        again = _md(run_all(instance), "gold__labeled_posts")
        assert again["rows_written"] == 0

        # A student withdraws model_training consent: tasks, annotations and labels go.
        student = next(
            s
            for s in expected_research_consent(demo_env, "model_training")
            if any(labeled[k]["subject_id"] == subject_of(s) for k in labeled)
        )
        gone = {k for k, r in labeled.items() if r["subject_id"] == subject_of(student)}
        _add_consent_event(demo_env, 900_201, student, "withdrawn", purpose="model_training")
        after = run_all(instance)
        assert not gone & set(tool.keys())  # what the tool itself holds afterwards
        assert not gone & {r["post_key"] for r in _labeled()}
        assert _md(after, "labeling__label_tasks")["tasks_deleted_after_withdrawal"] >= len(gone)


def test_the_graph_has_the_labeling_assets_and_sensor() -> None:
    d = defs()
    keys = {k.to_user_string() for k in d.resolve_asset_graph().get_all_asset_keys()}
    assert {"labeling/label_tasks", "gold/labeled_posts"} <= keys
    assert d.resolve_sensor_def("annotations_changed") is not None


def test_the_sensor_requests_a_pull_only_when_annotations_changed() -> None:
    store = AnnotationStore()
    store.add_tasks(pa.table({"post_key": ["a", "b"], "body": ["help", "thanks"]}))
    d = defs()
    sensor = d.resolve_sensor_def("annotations_changed")
    resources = {"annotations": AnnotationToolResource()}
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources=resources)
        assert isinstance(sensor(context), dg.SkipReason)  # tasks, but nobody annotated
        store.add_annotation("a", "urgent", completed_by="ann1")
        request = sensor(context)
        assert isinstance(request, dg.RunRequest)
        assert request.tags["spanda/trigger"] == "annotations"
        context = dg.build_sensor_context(
            instance=instance, resources=resources, cursor=context.cursor
        )
        assert isinstance(sensor(context), dg.SkipReason)  # seen already


def test_a_server_that_is_down_fails_the_run_clearly_and_the_next_one_recovers(
    demo_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
        monkeypatch.setenv("LABEL_STUDIO_URL", f"http://127.0.0.1:{free_port()}")
        monkeypatch.setenv("LABEL_STUDIO_API_KEY", "any-token-1234")
        labeled = catalog().load_table(("gold", "labeled_posts"))
        before = labeled.current_snapshot().snapshot_id
        failed = run_all(instance, raise_on_error=False)
        assert not failed.success
        errors = [
            e.step_failure_data.error.to_string()
            for e in failed.all_events
            if e.event_type_value == "STEP_FAILURE"
        ]
        assert any("is not reachable" in m and "LABEL_STUDIO_URL" in m for m in errors), errors
        assert not any("any-token-1234" in m for m in errors)
        labeled.refresh()
        assert labeled.current_snapshot().snapshot_id == before  # nothing written
        monkeypatch.delenv("LABEL_STUDIO_URL")
        assert run_all(instance).success  # the next run, with the tool back, recovers


def _labeling_only(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs().resolve_job_def("materialize_platform")
    keys = [dg.AssetKey(["labeling", "label_tasks"]), dg.AssetKey(["gold", "labeled_posts"])]
    return job.execute_in_process(instance=instance, asset_selection=keys)


def test_a_rebuilt_gold_deletes_nothing_and_new_text_reaches_tasks_and_labels(
    demo_env: str,
) -> None:
    """Gold empty while it is rebuilt is not a withdrawal; a post whose text gold
    re-derived (a scrubber fix) shows the new text to annotators and in the labeled set."""
    store = AnnotationStore()
    with dg.instance_for_test() as instance:
        run_all(instance)
        keys = [t.data.post_key for t in store.tasks()]
        for key in keys[:12]:
            store.add_annotation(key, "urgent" if key < keys[6] else "not_urgent", completed_by=1)
        run_all(instance)
        labeled_before = {r["post_key"] for r in _labeled()}
        assert labeled_before

        # gold.validated_posts re-derives one post's text
        gold = catalog().load_table(("gold", "validated_posts"))
        target = keys[0]
        rows = gold.scan(row_filter=f"post_id == '{target}'").to_arrow()
        fixed = rows.set_column(
            rows.schema.get_field_index("body"),
            "body",
            pa.array(["a re-scrubbed text [NAME]"], rows.schema.field("body").type),
        )
        with gold.transaction() as tx:
            tx.delete(f"post_id == '{target}'")
            tx.append(fixed)
        md = _md(_labeling_only(instance), "labeling__label_tasks")
        assert md["task_texts_updated"] == 1
        assert {t.data.post_key: t.data.body for t in store.tasks()}[target] == (
            "a re-scrubbed text [NAME]"
        )
        assert {r["post_key"]: r["body"] for r in _labeled()}[target] == (
            "a re-scrubbed text [NAME]"
        )

        # gold is rebuilt: its main is empty for a while. Nothing is deleted.
        keys = [t.data.post_key for t in store.tasks()]
        schema = gold.schema()
        catalog().drop_table(("gold", "validated_posts"))
        empty = catalog().create_table(("gold", "validated_posts"), schema=schema)
        empty.append(empty.schema().as_arrow().empty_table())
        md = _md(_labeling_only(instance), "labeling__label_tasks")
        assert md["tasks_deleted_after_withdrawal"] == 0
        assert md["tasks_not_in_gold_kept"] == len(keys)
        assert [t.data.post_key for t in store.tasks()] == keys
        assert {r["post_key"] for r in _labeled()} == labeled_before
