"""Scale-out on Ray (SPANDA_EXECUTOR=ray): the same tables as in process, computed on a cluster.

A one-node Ray head (ray_cluster.py, loopback only) serves the module. The tiny demo
source goes through the whole chain twice, from the same seed and the same secrets:
once in process, once with SPANDA_EXECUTOR=ray, where de-identification, the gold
row rules and scoring send each batch to a Ray task while this process commits to
Iceberg. Every silver and gold table, the quarantine and the predictions must hold
exactly the same rows (content hash of the sorted rows), the runs must say where
they computed, and the cluster must have run the tasks they counted.

Also: dagster-ray's `ray_executor` is the code location's executor only with
SPANDA_EXECUTOR=ray, and every wrong setting is a clear error naming what to set.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_tasks

from spanda_assets import settings
from spanda_assets.definitions import defs
from spanda_assets.lib import scale
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.labeling.demo import annotate_as_demo
from spanda_assets.lib.lakehouse import CatalogConfig, load_table_or_none, open_catalog
from spanda_assets.lib.writes import MAIN, scan
from spanda_assets_tests.conftest import chain_checks, isolate, seed_tiny
from spanda_assets_tests.ray_cluster import REPO, RayCluster, materialize_platform, ray_head
from spanda_assets_tests.servers import free_port

PSEUDONYM_KEY = "5e" * 32  # the same key in both worlds: the same pseudonyms
FANNED_OUT = ("silver/forum_posts", "gold/validated_posts", "gold/post_predictions")
# Columns that say when or from which snapshot a row was made, not what it holds.
PER_RUN = {"post_predictions": ("scored_at", "gold_snapshot_id")}
LABELED = dg.AssetKey(["gold", "labeled_posts"])


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    # Ray jobs (dagster-ray's steps) load the job from this test package
    env = os.environ | {"PYTHONPATH": str(REPO)}
    with ray_head(cpus=2, env=env) as head:
        yield head
        scale.disconnect()  # before the head goes


def _secrets(home: Path, shared: Path) -> None:
    """The demo's generated secrets (wallet master key, institution key) of `shared`:
    both worlds derive the same DIDs, so the same subject pseudonyms."""
    copied = 0
    for rel in ("wallet/master.key", "secrets/institution.key"):
        if (shared / rel).is_file():
            settings.create_private_file(home / rel, (shared / rel).read_bytes())
            copied += 1
    assert copied, "the first world made no demo secrets"


def _world(
    factory: pytest.TempPathFactory, name: str, shared: Path | None, **env: str
) -> tuple[Path, dict[str, list[dict[str, Any]]]]:
    """A home where the tiny seed went through the whole chain (bronze to predictions,
    with the demo's simulated annotations), and each asset's materialization metadata."""
    home = factory.mktemp(name) / "home"
    home.mkdir()
    meta: dict[str, list[dict[str, Any]]] = {}
    with pytest.MonkeyPatch.context() as mp:
        isolate(
            mp,
            home,
            SPANDA_DEMO="1",
            SPANDA_PSEUDONYM_KEY=PSEUDONYM_KEY,
            SPANDA_LABEL_BATCH="600",
            **env,
        )
        if shared is not None:
            _secrets(home, shared)
        seed_tiny(home)
        with dg.instance_for_test() as instance:
            runs = [_run(instance, "materialize_platform")]
            added = annotate_as_demo()
            assert added > 0
            runs.append(_run(instance, "materialize_platform", [LABELED]))
            runs.append(_run(instance, "train_model"))
            # a re-run of the fanned-out stages with nothing new: nothing written twice
            again = _run(
                instance, "materialize_platform", [dg.AssetKey(a.split("/")) for a in FANNED_OUT]
            )
        for prefix, result in [*(("", r) for r in runs), ("rerun:", again)]:
            for event in result.get_asset_materialization_events():
                materialization = event.materialization
                key = prefix + materialization.asset_key.to_user_string()
                meta.setdefault(key, []).append(
                    {k: v.value for k, v in materialization.metadata.items()}
                )
    return home, meta


def _run(
    instance: dg.DagsterInstance, job: str, selection: list[dg.AssetKey] | None = None
) -> dg.ExecuteInProcessResult:
    result = (
        defs()
        .resolve_job_def(job)
        .execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    )
    failures = [str(e.step_failure_data.error) for e in result.get_step_failure_events()]
    assert result.success, failures
    checks = chain_checks(result)
    assert all(c.passed for c in checks if c.severity == dg.AssetCheckSeverity.ERROR), [
        (c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed
    ]
    return result


@pytest.fixture(scope="module")
def worlds(
    cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, list[dict[str, Any]]]]]:
    started = time.monotonic()
    local = _world(tmp_path_factory, "in_process", None)
    on_ray = _world(
        tmp_path_factory,
        "on_ray",
        local[0],
        SPANDA_EXECUTOR="ray",
        RAY_ADDRESS=cluster.address,
    )
    print(f"two chains in {time.monotonic() - started:.0f} s")
    return {"in_process": local, "ray": on_ray}


def _catalog(home: Path) -> Any:
    return open_catalog(
        CatalogConfig(
            uri=f"sqlite:///{home / 'catalog.db'}", warehouse=(home / "warehouse").as_uri()
        )
    )


def _fingerprint(table: Any, drop: tuple[str, ...]) -> tuple[int, str]:
    """(rows, SHA-256 of the schema and the sorted rows) of a table's main snapshot."""
    rows: pa.Table = scan(table, MAIN).to_arrow()
    rows = rows.drop_columns([c for c in drop if c in rows.column_names])
    digest = hashlib.sha256(str(rows.schema).encode())
    for row in sorted(repr(tuple(r.values())) for r in rows.to_pylist()):
        digest.update(row.encode())
    return rows.num_rows, digest.hexdigest()


def _tables(home: Path) -> dict[str, tuple[int, str]]:
    catalog = _catalog(home)
    out = {}
    silver = {n for _, n in catalog.list_tables("silver")}
    for name in sorted(
        silver & {"students", "courses", "enrollments", "forum_posts", "assessment_results"}
    ):
        out[f"silver.{name}"] = _fingerprint(catalog.load_table(("silver", name)), ())
    for name in (
        "validated_posts",
        "validated_enrollments",
        "validated_assessments",
        "quarantine",
        "post_predictions",
    ):
        table = catalog.load_table(("gold", name))
        out[f"gold.{name}"] = _fingerprint(table, PER_RUN.get(name, ()))
    return out


@pytest.mark.integration
def test_the_chain_on_ray_writes_the_same_tables_as_in_process(
    worlds: dict[str, tuple[Path, dict[str, list[dict[str, Any]]]]],
) -> None:
    local, on_ray = _tables(worlds["in_process"][0]), _tables(worlds["ray"][0])
    assert len(local) == 10, sorted(local)
    assert local["silver.forum_posts"][0] > 0 and local["gold.post_predictions"][0] > 0
    assert local["gold.validated_posts"][0] > 0
    for name, (rows, digest) in local.items():
        assert on_ray[name] == (rows, digest), (name, rows, on_ray[name][0])


@pytest.mark.integration
def test_a_rerun_on_ray_writes_nothing_twice(
    worlds: dict[str, tuple[Path, dict[str, list[dict[str, Any]]]]],
) -> None:
    """Idempotent as in process: with no new input, each stage maps no batch and writes
    no row (the tables' hashes above are taken after this re-run)."""
    meta = worlds["ray"][1]
    (silver,) = meta["rerun:silver/forum_posts"]
    assert silver["rows_written"] == 0 and silver["rows_read_from_bronze"] == 0
    (gold,) = meta["rerun:gold/validated_posts"]
    assert gold["rows_validated"] == 0 and gold["rows_read_from_silver"] == 0
    (scored,) = meta["rerun:gold/post_predictions"]
    assert scored["posts_scored"] == 0
    for rerun in (silver, gold, scored):
        assert rerun["executor"] == "ray" and rerun["fanout_tasks"] == 0


@pytest.mark.integration
def test_the_runs_say_where_they_computed_and_ray_ran_their_tasks(
    worlds: dict[str, tuple[Path, dict[str, list[dict[str, Any]]]]], cluster: RayCluster
) -> None:
    for asset in FANNED_OUT:
        local = worlds["in_process"][1][asset][-1]
        assert local["executor"] == "in_process" and local["fanout_workers"] == 0, asset
        assert local["fanout_tasks"] >= 1, asset

        on_ray = worlds["ray"][1][asset][-1]
        assert on_ray["executor"] == "ray", asset
        assert on_ray["fanout_tasks"] == local["fanout_tasks"], asset  # the same batches
        assert on_ray["fanout_workers"] >= 1, asset

        # ... and the cluster ran them: as many finished tasks of the stage as it counted
        stage = asset.replace("/", ".")
        tasks = list_tasks(
            address=cluster.dashboard_url,
            filters=[("name", "=", f"spanda:{stage}")],
            limit=1000,
            raise_on_missing_output=False,
        )
        finished = [t for t in tasks if t.state == "FINISHED"]
        total = sum(m["fanout_tasks"] for m in worlds["ray"][1][asset])
        assert len(finished) == total, (asset, len(finished), total)
        assert all(t.worker_pid != os.getpid() for t in finished)


@pytest.mark.integration
def test_dagster_rays_executor_runs_each_step_as_a_ray_job(
    cluster: RayCluster,
    tiny_source: str,
    catalog: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A launched run (not execute_in_process) with SPANDA_EXECUTOR=ray: every step is a
    Ray job submitted by dagster-ray; inside it, silver fans out and commits."""
    monkeypatch.setenv("SPANDA_DEMO", "1")
    monkeypatch.setenv("SPANDA_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    names = ["forum_posts", "students", "courses", "consent_events"]
    keys = [dg.AssetKey(["bronze", n]) for n in [*names, "data_subjects"]]
    silver = dg.AssetKey(["silver", "forum_posts"])
    dagster_home = tmp_path / "dagster"  # on disk: the steps' processes open it too
    dagster_home.mkdir()
    with (
        dg.instance_for_test(temp_dir=str(dagster_home)) as instance,
        dg.execute_job(
            dg.reconstructable(materialize_platform),
            instance=instance,
            asset_selection=[*keys, silver],
        ) as result,
    ):
        assert result.success, [str(e.message) for e in result.get_step_failure_events()]
        run_id = result.run_id
        (done,) = [
            e.materialization
            for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == silver
        ]
    assert done.metadata["executor"].value == "ray"
    tasks: Any = done.metadata["fanout_tasks"].value
    assert tasks >= 1
    assert scan(catalog.load_table(("silver", "forum_posts")), MAIN).count() > 0

    client = JobSubmissionClient(cluster.dashboard_url)
    deadline = time.monotonic() + 60
    while True:  # a step's process may still be exiting when the run has finished
        steps = {
            (j.metadata or {}).get("dagster/op"): j.status
            for j in client.list_jobs()
            if (j.metadata or {}).get("dagster/run-id") == run_id
        }
        if all(s.is_terminal() for s in steps.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert "silver__forum_posts" in steps and "bronze__forum_posts" in steps, steps
    assert set(steps.values()) == {JobStatus.SUCCEEDED}, steps


# ----------------------------------------------------------- configuration, no cluster


def test_in_process_is_the_default_and_adds_no_executor() -> None:
    assert settings.executor() == "in_process"
    runner = scale.runner("silver.forum_posts")
    out = list(runner.map(lambda t, n: t.num_rows + n, [pa.table({"a": [1, 2]})] * 3, 1))
    assert out == [3, 3, 3]
    assert runner.stats.metadata() == {
        "executor": "in_process",
        "fanout_tasks": 3,
        "fanout_workers": 0,
    }
    assert defs().executor is None  # Dagster's default executor, as before


def test_an_unknown_executor_is_refused_with_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPANDA_EXECUTOR", "dask")
    for attempt in (settings.executor, lambda: scale.runner("silver.forum_posts"), defs):
        with pytest.raises(Exception) as err:  # the code location wraps it
            attempt()
        msg = _config_error(err.value)
        assert "SPANDA_EXECUTOR='dask' is not an executor" in msg
        assert "'ray'" in msg and "RAY_ADDRESS" in msg and "unset it" in msg


def test_ray_without_an_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_EXECUTOR", "ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for attempt in (lambda: scale.runner("gold.validated_posts"), defs):
        with pytest.raises(Exception) as err:  # the code location wraps it
            attempt()
        msg = _config_error(err.value)
        assert "SPANDA_EXECUTOR=ray needs RAY_ADDRESS" in msg and "ray start --head" in msg


def _config_error(error: BaseException) -> str:
    """The ConfigError behind `error` (loading the code location wraps it), as text."""
    seen: BaseException | None = error
    while seen is not None and not isinstance(seen, ConfigError):
        seen = seen.__cause__ or seen.__context__
    assert seen is not None, f"no ConfigError behind {error!r}"
    return str(seen)


@pytest.mark.parametrize("address", ["nonsense", "ray://", "10.0.0.1"])
def test_a_malformed_address_is_refused(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv("SPANDA_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ConfigError, match="is not a Ray address") as err:
        scale.runner("silver.forum_posts")
    assert f"RAY_ADDRESS={address!r}" in str(err.value)


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_unreachable_head_is_a_clear_error_at_once(
    monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    address = f"{scheme}127.0.0.1:{free_port()}"
    monkeypatch.setenv("SPANDA_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        scale.runner("gold.post_predictions")
    assert time.monotonic() - started < scale.CONNECT_TIMEOUT + 2
    msg = str(err.value)
    assert f"no Ray head answers at RAY_ADDRESS={address!r}" in msg
    assert "ray start --head" in msg and "unset SPANDA_EXECUTOR" in msg


def test_a_stage_with_a_bad_executor_fails_before_writing(
    monkeypatch: pytest.MonkeyPatch, tiny_source: str, catalog: Any
) -> None:
    """The code location refuses to load with a wrong setting (above); a step process
    whose own environment is wrong fails at the stage's start, having written nothing."""
    monkeypatch.setenv("SPANDA_DEMO", "1")
    job = defs().resolve_job_def("materialize_platform")
    bronze = ["forum_posts", "students", "courses", "consent_events", "data_subjects"]
    with dg.instance_for_test() as instance:
        keys = [dg.AssetKey(["bronze", n]) for n in bronze]
        assert job.execute_in_process(instance=instance, asset_selection=keys).success
        monkeypatch.setenv("SPANDA_EXECUTOR", "raay")
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["silver", "forum_posts"])],
            raise_on_error=False,
        )
    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert "SPANDA_EXECUTOR='raay' is not an executor" in str(failure.step_failure_data.error)
    assert load_table_or_none(catalog, "silver", "forum_posts") is None


def test_with_ray_the_code_location_runs_steps_as_ray_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SPANDA_EXECUTOR", "ray")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6390")
    monkeypatch.setenv("SPANDA_PSEUDONYM_KEY", PSEUDONYM_KEY)
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", "id:secret")
    loaded = defs()
    executor = loaded.resolve_job_def("materialize_platform").executor_def
    assert executor is loaded.executor and executor.name == "spanda_ray_executor"
    schema: Any = executor.config_schema  # the values it was configured with
    ray_config = schema.resolve_config({}).value["config"]["ray"]
    assert ray_config["address"] == "127.0.0.1:6390"
    passed = set(ray_config["env_vars"])
    assert {"SPANDA_EXECUTOR", "SPANDA_HOME", "RAY_ADDRESS"} <= passed
    assert not passed & {"SPANDA_PSEUDONYM_KEY", "SPANDA_CATALOG_CREDENTIAL"}
