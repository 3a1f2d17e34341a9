"""The code location: loads, is complete, and loads fast (no heavy imports at load time)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from spanda_assets.definitions import defs
from spanda_assets.lib.sources import load_sources

ROOT = Path(__file__).resolve().parent.parent


def test_every_configured_table_has_a_documented_bronze_asset() -> None:
    d = defs()
    graph = d.resolve_asset_graph()
    for source in load_sources():
        key = dg.AssetKey(["bronze", source.name])
        node = graph.get(key)
        assert node.group_name == "bronze"
        assert node.kinds == {"iceberg", "sqlserver"}
        assert node.owners == ["team:data-engineering"]
        assert source.qualified in (node.description or "")
        assert node.pools == {f"extract_{source.name}"}
        assert node.metadata["cursor"] == source.cursor


def test_schedule_sensor_and_job() -> None:
    d = defs()
    job = d.resolve_job_def("extract_bronze")
    assert {k.path[0] for k in job.asset_layer.selected_asset_keys} == {"bronze"}
    schedule = d.resolve_schedule_def("hourly_extract")
    assert schedule.cron_schedule == "0 * * * *"
    assert d.resolve_sensor_def("bronze_new_source_rows").minimum_interval_seconds == 60


def test_instance_config_limits_each_extract_pool_to_one() -> None:
    import yaml

    conf = yaml.safe_load((ROOT / "spanda_assets/config/dagster.yaml").read_text())
    assert conf["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}


def test_definitions_load_without_heavy_libraries() -> None:
    """Loading the code location must stay fast: heavy libraries load only inside assets."""
    code = (
        "import json, sys, time; t = time.perf_counter();"
        "from spanda_assets.definitions import defs; defs();"
        "heavy = ['pyiceberg', 'great_expectations', 'evidently', 'mlflow', 'connectorx',"
        " 'sklearn'];"
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


def test_workspace_file_agrees_with_the_project_declaration() -> None:
    """pyproject's [tool.dg] declares the code location; workspace.yaml, for Dagster's
    commands that need a file, must name the same module and location."""
    import tomllib

    import yaml

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert "dagster" not in project, "declare the code location once, in [tool.dg]"
    dg_project = project["dg"]["project"]
    ws = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    (entry,) = ws["load_from"]
    assert entry["python_module"]["location_name"] == dg_project["code_location_name"]
    module = entry["python_module"]["module_name"]
    assert module == f"{dg_project['root_module']}.definitions"
    assert dg_project["defs_module"] == f"{dg_project['root_module']}.defs"
