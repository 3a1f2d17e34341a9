"""Versions of a declared dataset: one per data change, DOIs and tags that never move,
a crash at any step finished by the next run, the same bytes after any later version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from spanda_assets.lib.publish.datacite import validate_metadata
from spanda_assets.lib.publish.datasets import parse_datasets
from spanda_assets.lib.publish.doi import OfflineProvider
from spanda_assets.lib.publish.export import file_sha256
from spanda_assets.lib.publish.versions import (
    PublishError,
    VersionStore,
    landing_url,
    publish_dataset,
    withdraw_version,
)
from spanda_assets.lib.writes.expiry import expire

SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("course_id", pa.int64()),
        pa.field("body", pa.string()),
    ]
)

DECLARATION = """
publisher: {name: Test institution}
datasets:
  - id: posts
    title: Test posts
    description: Posts for the publication tests.
    creators: [{name: Test institution}]
    subjects: [learning analytics]
    licence: {id: CC-BY-4.0, url: https://creativecommons.org/licenses/by/4.0/legalcode}
    dua: {id: dua-1, title: Test agreement, url: https://example.org/dua-1}
    table: gold.posts
    columns:
      post_id: pseudonymous post key
      course_id: course
      body: de-identified text
"""


def _rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "post_id": [f"ps_{i:05d}" for i in range(start, start + n)],
            "course_id": [i % 5 for i in range(start, start + n)],
            "body": [f"post {i}" for i in range(start, start + n)],
        },
        schema=SCHEMA,
    )


class Crash(Exception):
    pass


def _world(catalog: Any, tmp_path: Path) -> tuple[Any, Any, OfflineProvider, VersionStore]:
    catalog.create_namespace("gold")
    table = catalog.create_table(("gold", "posts"), schema=SCHEMA)
    (dataset,) = parse_datasets(DECLARATION)
    provider = OfflineProvider(tmp_path / "doi", "10.99999")
    return table, dataset, provider, VersionStore(tmp_path / "publish")


def _publish(catalog: Any, dataset: Any, provider: Any, store: Any, **kw: Any) -> Any:
    return publish_dataset(catalog, dataset, provider, store, today=dt.date(2026, 11, 30), **kw)


def test_a_version_per_data_change_with_linked_dois(catalog: Any, tmp_path: Path) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    assert _publish(catalog, dataset, provider, store).action == "empty"  # no snapshot
    table.append(_rows(0, 0))
    if table.current_snapshot() is not None:  # a snapshot without rows: still nothing
        assert _publish(catalog, dataset, provider, store).action == "empty"
        assert not store.load("posts").versions

    table.append(_rows(0, 100))
    first = _publish(catalog, dataset, provider, store)
    assert first.action == "published" and first.version is not None
    v1 = first.version
    assert (v1.version, v1.doi, v1.concept_doi) == (
        1,
        "10.99999/spanda.posts.v1",
        "10.99999/spanda.posts",
    )
    assert v1.rows == 100 and v1.status == "published"
    # the snapshot is tagged, the DOIs are findable and resolve to the landing pages
    table.refresh()
    assert table.metadata.refs["publish/posts/v1"].snapshot_id == v1.snapshot_id
    rec = provider.resolve(v1.doi)
    assert rec is not None and rec.state == "findable" and rec.url == landing_url("posts", 1)
    concept = provider.resolve(v1.concept_doi)
    assert concept is not None and concept.state == "findable"
    validate_metadata(v1.metadata)
    sha = {d["format"]: d["sha256"] for d in v1.distributions}
    assert set(sha) == {"parquet", "csv"}
    assert v1.metadata["version"] == "1"

    # nothing new: nothing made
    again = _publish(catalog, dataset, provider, store)
    assert again.action == "unchanged" and len(store.load("posts").versions) == 1

    table.append(_rows(100, 20))
    v2 = _publish(catalog, dataset, provider, store).version
    assert v2 is not None and v2.version == 2 and v2.rows == 120
    relations = {
        (r["relationType"], r["relatedIdentifier"]) for r in v2.metadata["relatedIdentifiers"]
    }
    assert ("IsNewVersionOf", v1.doi) in relations and ("IsVersionOf", v1.concept_doi) in relations
    state = store.load("posts")
    old = state.versions[0]
    assert ("IsPreviousVersionOf", v2.doi) in {
        (r["relationType"], r["relatedIdentifier"]) for r in old.metadata["relatedIdentifiers"]
    }
    concept = provider.resolve(v1.concept_doi)
    assert concept is not None
    has = {
        r["relatedIdentifier"]
        for r in concept.attributes["relatedIdentifiers"]
        if r["relationType"] == "HasVersion"
    }
    assert has == {v1.doi, v2.doi}
    # version 1's files are untouched by version 2
    v1_dir = store.directory("posts", 1)
    assert {d["format"]: file_sha256(v1_dir / d["file_name"]) for d in old.distributions} == sha


def test_a_new_snapshot_with_the_same_data_is_no_new_version(catalog: Any, tmp_path: Path) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 30))
    assert _publish(catalog, dataset, provider, store).action == "published"
    # a rewrite with the same rows in another order: a new snapshot, the same data
    table.overwrite(_rows(0, 30).take(list(reversed(range(30)))))
    out = _publish(catalog, dataset, provider, store)
    assert out.action == "unchanged" and "same data" in out.note
    state = store.load("posts")
    assert len(state.versions) == 1 and not store.directory("posts", 2).exists()
    # the check is remembered: the next run does not read the table again
    assert _publish(catalog, dataset, provider, store).note == "checked before: no new data"


@pytest.mark.parametrize("step", ["pending", "tag", "files", "doi", "previous"])
def test_a_crash_at_any_step_is_finished_by_the_next_run(
    catalog: Any, tmp_path: Path, step: str
) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 40))
    v1 = _publish(catalog, dataset, provider, store).version
    assert v1 is not None
    table.append(_rows(40, 10))
    crashed_snapshot = table.current_snapshot().snapshot_id

    def crash(name: str) -> None:
        if name == step:
            raise Crash(name)

    with pytest.raises(Crash):
        _publish(catalog, dataset, provider, store, on_step=crash)
    pending = store.load("posts").pending
    assert pending is not None and pending.snapshot_id == crashed_snapshot
    # the table moves on, and expiry runs, before the next run: the pending version
    # keeps its snapshot (tagged from the start) and its number
    table.append(_rows(50, 10))
    table.refresh()
    expire(table, older_than=None, orphan_grace=dt.timedelta(0))
    resumed = _publish(catalog, dataset, provider, store)
    if step == "pending":
        # the one window before the tag: the snapshot expired, no file or DOI exists,
        # so the number is given up and the next run starts anew
        assert resumed.action == "unchanged" and "expired" in resumed.note
        assert provider.resolve("10.99999/spanda.posts.v2") is None
        nxt = _publish(catalog, dataset, provider, store)
        assert nxt.version is not None and nxt.version.version == 3 and nxt.version.rows == 60
        state = store.load("posts")
        assert [v.status for v in state.versions] == ["published", "withdrawn", "published"]
        return
    assert resumed.action == "resumed" and resumed.version is not None
    assert resumed.version.version == 2 and resumed.version.rows == 50
    assert resumed.version.snapshot_id == crashed_snapshot
    assert resumed.version.doi == "10.99999/spanda.posts.v2"
    old = store.load("posts").versions[0]
    assert ("IsPreviousVersionOf", "10.99999/spanda.posts.v2") in {
        (r["relationType"], r["relatedIdentifier"]) for r in old.metadata["relatedIdentifiers"]
    }
    # and the run after it publishes the new rows as version 3
    nxt = _publish(catalog, dataset, provider, store)
    assert nxt.version is not None and nxt.version.version == 3 and nxt.version.rows == 60
    state = store.load("posts")
    assert [v.status for v in state.versions] == ["published"] * 3
    assert sorted(p.name for p in (tmp_path / "publish" / "posts").iterdir()) == [
        ".lock",
        "v1",
        "v2",
        "v3",
        "versions.json",
    ]


def test_a_withdrawn_version_never_gives_its_number_or_shows_again(
    catalog: Any, tmp_path: Path
) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 20))
    v1 = _publish(catalog, dataset, provider, store).version
    table.append(_rows(20, 5))

    def crash(name: str) -> None:
        if name == "files":
            raise Crash(name)

    with pytest.raises(Crash):
        _publish(catalog, dataset, provider, store, on_step=crash)
    # an erasure withdraws the pending version (its tag is already there) and v1
    assert withdraw_version("publish/posts/v2", "erasure e-1", store)
    assert withdraw_version("publish/posts/v1", "erasure e-1", store)
    assert not withdraw_version("publish/posts/v9", "erasure e-1", store)
    state = store.load("posts")
    assert [v.status for v in state.versions] == ["withdrawn", "withdrawn"]
    assert state.concept_stale and not store.directory("posts", 1).exists()
    assert not list((tmp_path / "publish" / "posts").glob(".v*.tmp"))
    table.append(_rows(25, 5))
    v3 = _publish(catalog, dataset, provider, store).version
    assert v1 is not None and v3 is not None and v3.version == 3
    assert ("IsNewVersionOf", v1.doi) not in {
        (r["relationType"], r["relatedIdentifier"]) for r in v3.metadata["relatedIdentifiers"]
    }
    concept = provider.resolve(v3.concept_doi)
    assert concept is not None
    has = {
        r["relatedIdentifier"]
        for r in concept.attributes["relatedIdentifiers"]
        if r["relationType"] == "HasVersion"
    }
    assert has == {v3.doi} and not store.load("posts").concept_stale
    # the withdrawn version's DOI still resolves (to its tombstone), out of the index
    hidden = provider.resolve(v1.doi)
    assert hidden is not None and hidden.state == "registered"
    assert hidden.url is not None and hidden.url.endswith("/datasets/posts/versions/1")
    pending = provider.resolve("10.99999/spanda.posts.v2")
    assert pending is None or pending.state != "findable"


def test_an_older_version_keeps_the_record_it_was_released_under(
    catalog: Any, tmp_path: Path
) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 10))
    v1 = _publish(catalog, dataset, provider, store).version
    assert v1 is not None
    (changed,) = parse_datasets(DECLARATION.replace("Test posts", "Renamed posts"))
    table.append(_rows(10, 10))
    v2 = _publish(catalog, changed, provider, store).version
    assert v2 is not None and v2.metadata["titles"][0]["title"] == "Renamed posts"
    old = store.load("posts").versions[0]
    assert old.metadata["titles"][0]["title"] == "Test posts"


def test_expiry_keeps_every_published_snapshot(catalog: Any, tmp_path: Path) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 10))
    v1 = _publish(catalog, dataset, provider, store).version
    for i in range(3):
        table.append(_rows(10 + i * 10, 10))
    assert v1 is not None
    table.refresh()
    expire(table, older_than=None, orphan_grace=dt.timedelta(0))
    table.refresh()
    assert table.snapshot_by_id(v1.snapshot_id) is not None
    assert table.scan(snapshot_id=v1.snapshot_id).to_arrow().num_rows == 10


def test_a_tag_someone_moved_stops_publication(catalog: Any, tmp_path: Path) -> None:
    table, dataset, provider, store = _world(catalog, tmp_path)
    table.append(_rows(0, 10))
    other = table.current_snapshot().snapshot_id
    table.append(_rows(10, 10))
    table.manage_snapshots().create_tag(snapshot_id=other, tag_name="publish/posts/v1").commit()
    with pytest.raises(PublishError, match="tag never moves"):
        _publish(catalog, dataset, provider, store)
    assert provider.resolve("10.99999/spanda.posts.v1") is None  # no DOI for it
