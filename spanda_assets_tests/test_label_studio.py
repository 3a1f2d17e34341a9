"""The labeled set against a real Label Studio server on 127.0.0.1 (its own venv,
started by the `label_studio` fixture): provisioning, tasks with pre-labels, two
simulated annotators, incremental reads, resolution, deletion, and the errors an
operator sees when the server is down or the token wrong."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.lib.labeling.lsformat import WATERMARK_OVERLAP
from spanda_assets.lib.labeling.quality import LABEL_ISSUES_SCHEMA
from spanda_assets.lib.labeling.resolve import resolve
from spanda_assets.lib.labeling.store import AnnotationStore
from spanda_assets.lib.labeling.studio import (
    REVIEW_VIEW,
    LabelStudioError,
    Studio,
    config_hash,
    label_config,
)
from spanda_assets_tests.servers import LabelStudioServer, free_port

_titles = itertools.count()


@pytest.fixture
def studio(label_studio: LabelStudioServer) -> Studio:
    """A client on a project of its own, so tests do not see each other's tasks."""
    client = Studio(label_studio.url, label_studio.token)
    client.provision(title=f"spanda test {next(_titles)} {dt.datetime.now().isoformat()}")
    return client


def posts(*rows: tuple[str, str, str | None], version: str = "lf-0123456789ab") -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "post_key": key,
                "body": body,
                "course": "CS101",
                "prelabel": label,
                "confidence": 0.8 if label else None,
                "model_version": version if label else None,
            }
            for key, body, label in rows
        ]
    )


def server_tasks(studio: Studio) -> dict[str, dict[str, Any]]:
    return {t["data"]["post_key"]: t for t in studio.tasks()}


def test_provisioning_is_idempotent_and_keeps_a_config_edited_in_the_ui(
    label_studio: LabelStudioServer,
) -> None:
    title = f"spanda provisioning {dt.datetime.now().isoformat()}"
    first = Studio(label_studio.url, label_studio.token).provision(title=title)
    again = Studio(label_studio.url, label_studio.token).provision(title=title)
    assert first.created and not again.created
    assert again.id == first.id and again.config_drift is None
    assert again.config_hash == config_hash(label_config())

    # An instructor adds a choice in the UI: reported, not overwritten.
    edited = label_config().replace(
        '<Choice value="urgent" hotkey="u"/>',
        '<Choice value="urgent" hotkey="u"/><Choice value="spam"/>',
    )
    client = Studio(label_studio.url, label_studio.token)
    client.provision(title=title)
    client._client.projects.update(id=first.id, label_config=edited)
    drifted = client.provision(title=title)
    assert drifted.config_drift is not None
    assert f"project {first.id}" in drifted.config_drift
    assert "left as it is" in drifted.config_drift
    on_server = client._client.projects.get(id=first.id).label_config
    assert config_hash(on_server or "") == config_hash(edited)


def test_tasks_carry_their_prelabel_and_are_never_duplicated(studio: Studio) -> None:
    batch = posts(
        ("p1", "The exam is tomorrow and I am locked out", "urgent"),
        ("p2", "Thanks, solved it", "not_urgent"),
        ("p3", "Where is the reading list?", None),
    )
    first = studio.add_tasks(batch, data_columns=("course",))
    again = studio.add_tasks(batch, data_columns=("course",))
    assert (first.added, again.added, again.unchanged) == (3, 0, 3)
    tasks = server_tasks(studio)
    assert sorted(tasks) == ["p1", "p2", "p3"]
    assert tasks["p1"]["data"]["course"] == "CS101"
    (prediction,) = tasks["p1"]["predictions"]
    assert prediction["model_version"] == "lf-0123456789ab"
    assert prediction["result"][0]["value"]["choices"] == ["urgent"]
    assert tasks["p3"]["predictions"] == []

    # The champion model's predictions join the labeling functions' on known tasks.
    champion = studio.add_tasks(posts(("p1", "ignored", "urgent"), version="model-7"))
    assert (champion.added, champion.predictions_replaced) == (0, 1)
    versions = {p["model_version"] for p in server_tasks(studio)["p1"]["predictions"]}
    assert versions == {"lf-0123456789ab", "model-7"}
    project = studio._client.projects.get(id=studio.project_id)
    assert project.model_version == "model-7"  # what annotators are shown


def test_two_annotators_are_read_back_incrementally_and_resolved(studio: Studio) -> None:
    studio.add_tasks(
        posts(
            ("a", "Grade missing and the deadline is today", "urgent"),
            ("b", "Nice lecture", "not_urgent"),
            ("c", "Is the lab open?", "not_urgent"),
        )
    )
    ids = studio.task_ids()
    ann1 = studio.user("annotator.one@spanda.test")
    ann2 = studio.user("annotator.two@spanda.test")
    assert ann1 != ann2 and studio.user("annotator.one@spanda.test") == ann1
    studio.annotate(ids["b"][0], "not_urgent", ann1)
    # b is annotated well before the rest: the incremental read below must skip it.
    time.sleep(WATERMARK_OVERLAP.total_seconds() + 1)
    studio.annotate(ids["a"][0], "urgent", ann1)
    studio.annotate(ids["a"][0], "urgent", ann2)
    studio.annotate(ids["c"][0], "urgent", ann1)
    studio.annotate(ids["c"][0], "not_urgent", ann2)

    everything = studio.changed_since(None)
    assert sorted(everything.post_keys) == ["a", "b", "c"]
    rows = everything.annotations.to_pylist()
    assert len(rows) == 5
    assert {r["completed_by"] for r in rows} == {str(ann1), str(ann2)}
    assert {(r["post_key"], r["prelabel"]) for r in rows} >= {("a", "urgent"), ("b", "not_urgent")}
    resolution = resolve(everything.annotations, live_keys=set(ids))
    labels = dict(
        zip(
            resolution.labels.column("post_key").to_pylist(),
            resolution.labels.column("label").to_pylist(),
            strict=True,
        )
    )
    assert labels == {"a": "urgent", "b": "not_urgent"}
    assert resolution.unresolved == ["c"]  # one each way: a tie stays unresolved
    assert resolution.prelabels_accepted == 4 and resolution.prelabels_changed == 1

    # Past the overlap window nothing comes back.
    watermark = everything.high_water
    assert watermark is not None
    assert studio.changed_since(watermark + dt.timedelta(seconds=10)).post_keys == []
    # A ground-truth annotation on c: c is read again with all its annotations and now
    # resolves; b, updated before the watermark's overlap window, is not read again.
    studio.annotate(ids["c"][0], "urgent", ann1, ground_truth=True)
    newer = studio.changed_since(watermark)
    assert "c" in newer.post_keys and "b" not in newer.post_keys
    assert newer.high_water is not None and newer.high_water >= watermark  # never goes back
    c_rows = newer.annotations.filter(pa.compute.equal(newer.annotations["post_key"], "c"))
    assert c_rows.num_rows == 3
    settled = resolve(c_rows)
    assert settled.labels.column("label").to_pylist() == ["urgent"]
    assert settled.labels.column("method").to_pylist() == ["ground_truth"]


def test_deleting_a_students_posts_removes_tasks_and_annotations(studio: Studio) -> None:
    studio.add_tasks(posts(("keep", "Office hours?", None), ("gone", "Help, exam today", "urgent")))
    ids = studio.task_ids()
    annotator = studio.user("annotator.one@spanda.test")
    studio.annotate(ids["gone"][0], "urgent", annotator)
    assert studio.delete(["gone", "never-pushed"]) == 1
    assert sorted(server_tasks(studio)) == ["keep"]
    # The annotation went with its task: the server no longer has it.
    with pytest.raises(Exception, match=r"404|[Nn]ot [Ff]ound"):
        studio._client.tasks.get(id=ids["gone"][0])
    assert studio.delete(["gone"]) == 0  # idempotent


def test_a_post_imported_twice_by_hand_is_deleted_everywhere(studio: Studio) -> None:
    studio.add_tasks(posts(("twice", "Help, exam today", "urgent")))
    # someone imports the same post again through the UI: two tasks with one key
    studio._client.projects.import_tasks(
        id=studio.project_id, request=[{"data": {"post_key": "twice", "body": "Help"}}]
    )
    assert studio.task_ids()["twice"] and len(studio.task_ids()["twice"]) == 2
    assert studio.delete(["twice"]) == 2
    assert "twice" not in server_tasks(studio)


def test_rows_without_a_key_are_skipped_on_the_server_too(studio: Studio) -> None:
    table = pa.table({"post_key": ["k", None], "body": ["text", "other"]})
    result = studio.add_tasks(table)
    assert (result.added, result.skipped) == (1, 1)
    assert sorted(server_tasks(studio)) == ["k"]


def test_the_prelabel_shown_is_the_newest_prediction(studio: Studio) -> None:
    studio.add_tasks(posts(("n", "exam tomorrow", "urgent")))
    studio.add_tasks(posts(("n", "exam tomorrow", "not_urgent"), version="model-2"))
    annotator = studio.user("annotator.one@spanda.test")
    studio.annotate(studio.task_ids()["n"][0], "not_urgent", annotator)
    (row,) = studio.changed_since(None).annotations.to_pylist()
    assert (row["prelabel"], row["prelabel_model_version"]) == ("not_urgent", "model-2")


@pytest.fixture(scope="module")
def personal_token(label_studio: LabelStudioServer) -> str:
    """The admin's personal access token (a user has one at a time)."""
    token = Studio(label_studio.url, label_studio.token)._client.tokens.create().token
    assert token
    return str(token)


def test_a_personal_access_token_works_like_a_legacy_token(
    label_studio: LabelStudioServer, personal_token: str
) -> None:
    legacy = Studio(label_studio.url, label_studio.token)
    pat = personal_token
    assert pat != label_studio.token
    assert Studio(label_studio.url, pat).check() == legacy.check()


def test_a_wrong_token_is_refused_before_anything_is_written(
    label_studio: LabelStudioServer,
) -> None:
    secret = "not-the-right-token-0000"
    client = Studio(label_studio.url, secret)
    with pytest.raises(LabelStudioError) as err:
        client.provision(title="never created")
    message = str(err.value)
    assert "refused the token in LABEL_STUDIO_API_KEY" in message and "401" in message
    assert secret not in message
    assert "cookie" not in message.lower() and "headers" not in message
    titles = [p.title for p in Studio(label_studio.url, label_studio.token)._client.projects.list()]
    assert "never created" not in titles


def test_a_refused_personal_access_token_fails_in_the_constructor_clearly(
    label_studio: LabelStudioServer, personal_token: str
) -> None:
    pat = personal_token
    forged = pat[:-4] + ("AAAA" if not pat.endswith("AAAA") else "BBBB")  # bad signature
    with pytest.raises(LabelStudioError) as err:
        Studio(label_studio.url, forged).check()
    assert "LABEL_STUDIO_API_KEY" in str(err.value) and forged not in str(err.value)


def test_a_server_that_is_down_gets_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = Studio(url, "whatever-token", timeout=3)
    with pytest.raises(LabelStudioError) as err:
        client.check()
    assert f"Label Studio at {url} is not reachable" in str(err.value)
    assert "LABEL_STUDIO_URL" in str(err.value) and "whatever-token" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "key", "missing"), [("", "k", "LABEL_STUDIO_URL"), ("u", "", "LABEL_STUDIO_API_KEY")]
)
def test_missing_settings_are_named(url: str, key: str, missing: str) -> None:
    with pytest.raises(LabelStudioError, match=missing):
        Studio(url, key)


def test_the_review_queue_reaches_the_server_as_marks_and_a_tab(studio: Studio) -> None:
    studio.add_tasks(posts(("r1", "a", None), ("r2", "b", None), ("r3", "c", None)))
    ids = studio.task_ids()

    def flags(*keys: str) -> pa.Table:
        return pa.Table.from_pylist(
            [
                {"post_key": k, "label": "urgent", "suggested": "not_urgent", "label_quality": 0.2}
                for k in keys
            ],
            schema=LABEL_ISSUES_SCHEMA,
        )

    def tab() -> list[int]:
        (view,) = [
            v
            for v in studio._client.views.list(project=studio.project_id)
            if (v.data or {}).get("title") == REVIEW_VIEW
        ]
        return sorted(
            t.id for t in studio._client.tasks.list(project=studio.project_id, view=view.id)
        )

    assert studio.review(flags("r1", "r3")) == 2
    marked = {k: t.get("meta", {}).get("spanda_review") for k, t in server_tasks(studio).items()}
    assert marked["r1"]["suggested"] == "not_urgent" and marked["r2"] is None
    assert tab() == sorted([ids["r1"][0], ids["r3"][0]])
    assert studio.review(flags("r1", "r3")) == 0  # a re-run touches no task
    assert studio.review(flags("r2")) == 3
    assert tab() == [ids["r2"][0]]


def test_annotations_move_between_the_local_store_and_the_server(
    label_studio: LabelStudioServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`spanda labels export` from one tool, `spanda labels import` into the other."""
    local = AnnotationStore()
    local.add_tasks(posts(("m1", "Exam today, locked out", "urgent"), ("m2", "Thanks!", None)))
    local.add_annotation("m1", "urgent", completed_by="lead@school.test")
    local.add_annotation("m1", "urgent", completed_by=7)  # another server's user id
    local.add_annotation("m2", "not_urgent", completed_by="lead@school.test")
    runner = CliRunner()
    exported = tmp_path / "local.json"
    assert runner.invoke(main, ["labels", "export", str(exported)]).exit_code == 0

    title = f"spanda moving {dt.datetime.now().isoformat()}"
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    monkeypatch.setenv("LABEL_STUDIO_PROJECT", title)
    first = runner.invoke(main, ["labels", "import", str(exported)])
    assert first.exit_code == 0, first.output
    assert "2 new tasks, 3 new annotations, 0 already in Label Studio project" in first.output
    again = runner.invoke(main, ["labels", "import", str(exported)])
    assert "0 new tasks, 0 new annotations, 3 already" in again.output

    studio = Studio(label_studio.url, label_studio.token)
    studio.provision(title=title)
    rows = studio.changed_since(None).annotations.to_pylist()
    users = {u.id: u.email for u in studio._client.users.list()}
    got = sorted((r["post_key"], r["label"], users[int(r["completed_by"])]) for r in rows)
    assert got == [
        ("m1", "urgent", "annotator-7@imported.invalid"),
        ("m1", "urgent", "lead@school.test"),
        ("m2", "not_urgent", "lead@school.test"),
    ]
    # and back: the server's export reads into a fresh local store with the same labels
    back = tmp_path / "server.json"
    assert runner.invoke(main, ["labels", "export", str(back)]).exit_code == 0
    fresh = AnnotationStore(tmp_path / "fresh.json")
    assert fresh.import_file(back).annotations_added == 3
    labels = sorted((r["post_key"], r["label"]) for r in fresh.annotations_since().to_pylist())
    assert labels == [("m1", "urgent"), ("m1", "urgent"), ("m2", "not_urgent")]
