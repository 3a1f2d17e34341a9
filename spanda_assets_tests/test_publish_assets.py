"""The publish assets on the real chain: the demo's gold tables become versioned datasets
with DOIs; nothing new makes nothing; new gold rows make version 2; the checks read what
was published back from the provider."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.exports import latest_export
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.publish.datasets import load_datasets
from spanda_assets.lib.publish.doi import provider_from_env
from spanda_assets.lib.publish.export import file_sha256
from spanda_assets.lib.publish.search import SearchIndex
from spanda_assets.lib.publish.versions import VersionStore, publish_root
from spanda_assets.lib.writes import MAIN
from spanda_assets_tests.conftest import append_batch
from spanda_assets_tests.test_erasure import _student_in_gold
from spanda_assets_tests.test_privacy_e2e import run_all, subject_of


@pytest.fixture
def demo_env(tiny_source: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SPANDA_DEMO", "1")
    return tiny_source


def _publish(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs().resolve_job_def("publish_datasets")
    return job.execute_in_process(instance=instance, raise_on_error=False)


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
    out = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        out[mat.asset_key.path[-1]] = {k: v.value for k, v in mat.metadata.items()}
    return out


def test_gold_tables_become_versioned_datasets_with_dois(demo_env: str, spanda_home: Path) -> None:
    catalog = open_catalog(CatalogConfig.from_env())
    with dg.instance_for_test() as instance:
        assert run_all(instance).success
        first = _publish(instance)
        assert first.success
        md = _materializations(first)
        # the validated tables exist after the chain: each is version 1 with its DOI
        for name in ("validated_posts", "validated_enrollments", "validated_assessments"):
            assert md[name]["outcome"] == "published", md[name]
            assert md[name]["version"] == 1
            assert md[name]["doi"] == f"10.99999/spanda.{name}.v1"
        # the labeled set and predictions come with annotations and a model: not yet
        assert md["labeled_posts"]["outcome"] in ("no_table", "empty")
        checks = {
            (c.asset_key.path[-1], c.check_name): c for c in first.get_asset_check_evaluations()
        }
        assert checks[("validated_posts", "metadata_valid")].passed
        assert checks[("validated_posts", "doi_resolvable")].passed
        assert checks[("validated_posts", "landing_page_jsonld")].passed

        store = VersionStore(publish_root())
        v1 = store.load("validated_posts").latest
        assert v1 is not None
        gold = catalog.load_table(("gold", "validated_posts"))
        assert v1.snapshot_id == gold.snapshot_by_name(MAIN).snapshot_id
        assert gold.metadata.refs["publish/validated_posts/v1"].snapshot_id == v1.snapshot_id
        files = store.directory("validated_posts", 1)
        parquet = pq.read_table(files / "validated_posts-v1.parquet")
        assert parquet.num_rows == v1.rows == gold.scan(snapshot_id=v1.snapshot_id).count()
        (declared,) = [d for d in load_datasets() if d.id == "validated_posts"]
        assert parquet.schema.names == list(declared.columns)
        v1_sha = {d["file_name"]: d["sha256"] for d in v1.distributions}
        # the record names the exact snapshot and the files' digests
        assert any(
            str(v1.snapshot_id) in a["alternateIdentifier"]
            for a in v1.metadata["alternateIdentifiers"]
        )
        technical = " ".join(d["description"] for d in v1.metadata["descriptions"])
        assert all(sha in technical for sha in v1_sha.values())
        derived = {
            r["relatedIdentifier"]
            for r in v1.metadata["relatedIdentifiers"]
            if r["relationType"] == "IsDerivedFrom"
        }
        assert any("silver.forum_posts" in d for d in derived), derived

        # the index holds every version, and `spanda search` finds them
        assert checks[("search_index", "every_version_indexed")].passed
        assert md["search_index"]["versions_published"] == 3
        _search_finds_the_datasets()

        # nothing new: nothing made
        again = _materializations(_publish(instance))
        assert again["validated_posts"]["outcome"] == "unchanged"
        assert len(store.load("validated_posts").versions) == 1

        # new posts reach gold: version 2; version 1's bytes stay what they were
        append_batch(demo_env, spanda_home, seed_value=9)
        assert run_all(instance).success
        second = _materializations(_publish(instance))
        assert second["validated_posts"]["outcome"] == "published"
        assert second["validated_posts"]["version"] == 2
        for name, sha in v1_sha.items():
            assert file_sha256(files / name) == sha
        provider = provider_from_env()
        concept = provider.resolve("10.99999/spanda.validated_posts")
        assert concept is not None and concept.state == "findable"
        versions = [
            r["relatedIdentifier"]
            for r in concept.attributes["relatedIdentifiers"]
            if r["relationType"] == "HasVersion"
        ]
        assert versions == [
            "10.99999/spanda.validated_posts.v1",
            "10.99999/spanda.validated_posts.v2",
        ]
        record = json.loads(store.path("validated_posts").read_text())
        assert [v["status"] for v in record["versions"]] == ["published", "published"]

        # an erasure request outranks the DOI's promise: every version holding the
        # student is withdrawn (tag, files), the erasure completes, the next version
        # leaves the student out
        student = _student_in_gold(demo_env)
        out = CliRunner().invoke(main, ["erase", "--student-id", str(student), "--json"])
        assert out.exit_code == 0, out.output
        receipt = json.loads(out.output)
        assert receipt["rows_remaining"] == 0
        withdrawn = [w for w in receipt["published_versions_withdrawn"] if "validated_posts" in w]
        assert "gold.validated_posts@publish/validated_posts/v1" in withdrawn
        # the exports read gold too: removed at once, not at the next export run
        assert {e.split("/")[0] for e in receipt["exports_removed"]} == {"oneroster", "xapi"}
        assert latest_export("xapi") is None and latest_export("oneroster") is None
        state = store.load("validated_posts")
        assert {v.version for v in state.versions if v.status == "withdrawn"} >= {1}
        assert not files.exists()
        gold = catalog.load_table(("gold", "validated_posts"))
        assert "publish/validated_posts/v1" not in gold.metadata.refs
        run3 = _publish(instance)
        third = _materializations(run3)["validated_posts"]
        assert third["outcome"] == "published" and third["version"] == 3
        checks3 = {
            (c.asset_key.path[-1], c.check_name): c for c in run3.get_asset_check_evaluations()
        }
        # the concept lists v3 alone, and the index holds no withdrawn version
        assert checks3[("validated_posts", "doi_resolvable")].passed
        assert checks3[("search_index", "every_version_indexed")].passed
        # the withdrawn version's DOI resolves (to its tombstone) but is no longer findable
        hidden = provider.resolve("10.99999/spanda.validated_posts.v1")
        assert hidden is not None and hidden.state == "registered"
        # and the next export run wrote the exports again, without the student
        assert latest_export("xapi") is not None
        with SearchIndex.open_default() as index:
            dois = {h.doi for h in index.search("", latest_only=False, limit=100).hits}
        assert "10.99999/spanda.validated_posts.v3" in dois
        assert not dois & {
            "10.99999/spanda.validated_posts.v1",
            "10.99999/spanda.validated_posts.v2",
        }
        v3 = store.load("validated_posts").latest
        assert v3 is not None
        subject = subject_of(student)
        v3_rows = pq.read_table(
            store.directory("validated_posts", 3) / "validated_posts-v3.parquet"
        )
        assert subject not in set(v3_rows["subject_id"].to_pylist())


def _search_finds_the_datasets() -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["search", "forum posts", "--json"])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)
    assert found["hits"][0]["dataset_id"] == "validated_posts"
    assert found["hits"][0]["doi"] == "10.99999/spanda.validated_posts.v1"
    # the same answer the index gives any other caller (the HTTP API's GET /search)
    with SearchIndex.open_default() as index:
        assert found == index.search("forum posts").to_dict()
    # facets narrow; an unknown value narrows to nothing
    licence = found["hits"][0]["licences"][0]
    narrowed = json.loads(
        runner.invoke(main, ["search", "", "--facet", f"licence={licence}", "--json"]).output
    )
    assert narrowed["total"] >= 1
    assert all(licence in h["licences"] for h in narrowed["hits"])
    none = json.loads(runner.invoke(main, ["search", "--facet", "year=1900", "--json"]).output)
    assert none["total"] == 0
    bad = runner.invoke(main, ["search", "x", "--facet", "licence"])
    assert bad.exit_code == 2 and "key=value" in bad.output
    text = runner.invoke(main, ["search", "enrollments"]).output
    assert (
        "validated_enrollments" in text and "doi:10.99999/spanda.validated_enrollments.v1" in text
    )
    listed = json.loads(runner.invoke(main, ["datasets", "--json"]).output)
    by_id = {d["id"]: d for d in listed}
    assert by_id["validated_posts"]["latest_version"] == 1
    assert by_id["labeled_posts"]["latest_version"] is None
