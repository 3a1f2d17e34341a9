"""The code location: loads, is complete, and loads fast (no heavy imports at load time)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from croniter import croniter  # Dagster's own cron dependency

from spanda_assets import settings
from spanda_assets.definitions import defs
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.sources import load_sources

ROOT = Path(__file__).resolve().parent.parent


def test_every_configured_table_gets_an_asset_a_pool_and_its_triggers() -> None:
    """Adding a table to sources.yaml is all it takes: an asset that documents its source,
    a pool of its own (two extracts of one table never overlap, two tables never wait for
    each other), and a place in the hourly job and in the sensor's selection."""
    d = defs()
    graph = d.resolve_asset_graph()
    sources = load_sources()
    job_keys = d.resolve_job_def("extract_bronze").asset_layer.selected_asset_keys
    sensor = d.resolve_sensor_def("bronze_new_source_rows")
    sensed = sensor.asset_selection.resolve(graph)  # type: ignore[union-attr]
    pools: dict[str, str] = {}
    for source in sources:
        key = dg.AssetKey(["bronze", source.name])
        node = graph.get(key)
        assert source.qualified in (node.description or "")
        assert key in job_keys and key in sensed
        (pool,) = node.pools
        assert pool not in pools, f"{source.name} shares a pool with {pools.get(pool)}"
        pools[pool] = source.name
    assert set(job_keys) == {dg.AssetKey(["bronze", s.name]) for s in sources}


def test_the_source_is_polled_within_a_minute_and_extracted_at_least_hourly() -> None:
    d = defs()
    assert d.resolve_sensor_def("bronze_new_source_rows").minimum_interval_seconds <= 60

    schedule = d.resolve_schedule_def("hourly_extract")
    ticks = croniter(str(schedule.cron_schedule), dt.datetime(2026, 1, 1, 0, 30))
    times = [ticks.get_next(dt.datetime) for _ in range(25)]
    assert max(b - a for a, b in itertools.pairwise(times)) <= dt.timedelta(hours=1)


def test_the_instance_config_gives_each_pool_one_slot(tmp_path: Path) -> None:
    """Read by Dagster itself, not by this test: the instance built from the packaged
    dagster.yaml allows one step at a time in any pool."""
    shutil.copyfile(ROOT / "spanda_assets/config/dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        config = instance.get_concurrency_config()
        assert config.pool_config.default_pool_limit == 1
        assert str(config.pool_config.pool_granularity).lower().endswith("op")


def test_definitions_load_without_heavy_libraries() -> None:
    """Loading the code location must stay fast: heavy libraries load only inside assets."""
    code = (
        "import json, sys, time; t = time.perf_counter();"
        "from spanda_assets.definitions import defs; defs();"
        "heavy = ['pyiceberg', 'great_expectations', 'evidently', 'mlflow', 'connectorx',"
        " 'pandera', 'faker', 'sklearn'];"
        "print(json.dumps({'seconds': time.perf_counter() - t,"
        " 'loaded': [m for m in heavy if m in sys.modules]}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["loaded"] == []
    # ~2-3 s here (benchmarks/ingest.py prints it); a generous bound catches a heavy import
    assert report["seconds"] < 15, report


def test_workspace_file_agrees_with_the_project_declaration() -> None:
    """pyproject's [tool.dg] declares the code location; workspace.yaml, for Dagster's
    commands that need a file, must name the same module and location."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert "dagster" not in project, "declare the code location once, in [tool.dg]"
    dg_project = project["dg"]["project"]
    ws = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (entry,) = ws["load_from"]
    assert entry["python_module"]["location_name"] == dg_project["code_location_name"]
    module = entry["python_module"]["module_name"]
    assert module == f"{dg_project['root_module']}.definitions"
    assert dg_project["defs_module"] == f"{dg_project['root_module']}.defs"


def test_the_nightly_crons_are_settings_and_a_bad_one_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.cron(settings.ENV_TRAIN_CRON, settings.DEFAULT_TRAIN_CRON) == "0 3 * * *"
    monkeypatch.setenv(settings.ENV_PUBLISH_CRON, " 15 6 * * 1-5 ")
    assert settings.cron(settings.ENV_PUBLISH_CRON, "0 5 * * *") == "15 6 * * 1-5"
    for bad in ("every night", "0 3 * *", "0 25 * * *", "0 3 * * * *"):
        monkeypatch.setenv(settings.ENV_TRAIN_CRON, bad)
        with pytest.raises(ConfigError, match=r"SPANDA_TRAIN_CRON=.*five-field cron"):
            settings.cron(settings.ENV_TRAIN_CRON, settings.DEFAULT_TRAIN_CRON)
