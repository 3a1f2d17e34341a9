"""The `spanda` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from click.testing import CliRunner

from spanda_assets.cli import main
from spanda_assets.lib.bi.refresh import default_path, read_pins
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.model import registry
from spanda_assets.lib.writes import row_count


def test_seed_then_append(spanda_home: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["seed", "--size", "tiny", "--posts", "300"])
    assert out.exit_code == 0, out.output
    assert "ForumPosts" in out.output and "300" in out.output
    assert (spanda_home / "operational.db").is_file()
    again = runner.invoke(main, ["seed", "--size", "tiny", "--posts", "300", "--append"])
    assert again.exit_code == 0 and "appended to" in again.output


def test_seed_rejects_bad_sizes(spanda_home: Path) -> None:
    out = CliRunner().invoke(main, ["seed", "--students", "0"])
    assert out.exit_code == 2 and "--students must be at least 1" in out.output


def test_extract_unknown_table_is_named(spanda_home: Path) -> None:
    out = CliRunner().invoke(main, ["extract", "posts"])
    assert out.exit_code == 2
    assert "unknown table(s) ['posts']" in out.output and "forum_posts" in out.output


def test_extract_without_database_fails_clearly(spanda_home: Path) -> None:
    out = CliRunner().invoke(main, ["extract", "students"])
    assert out.exit_code == 1
    assert "no operational database" in out.output


def test_demo_no_ui_end_to_end(spanda_home: Path) -> None:
    """The real entry point with `make demo`'s defaults: seed, materialize (checks too), exit."""
    env = {**os.environ, "SPANDA_HOME": str(spanda_home)}
    exe = Path(sys.executable).with_name("spanda")
    proc = subprocess.run(
        [str(exe), "demo", "--no-ui"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all assets materialized" in proc.stdout
    gold = next(line for line in proc.stdout.splitlines() if "gold/validated_posts" in line)
    validated = int(gold.split("+")[1].split()[0])
    assert validated > 0 and f"rows={validated:>9}" in gold
    # the demo data has a few blank posts: the quarantine shows them with the rule
    assert int(gold.split("quarantined=")[1]) > 0
    tables = subprocess.run(
        [str(exe), "tables"], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    rows = {r["table"]: r for r in json.loads(tables.stdout)}
    assert rows["bronze.forum_posts"]["rows"] == 10_000
    assert rows["bronze.students"]["watermark"]
    # Demo instructors annotated the first batch of tasks; their labels are published.
    made = int(proc.stdout.split("demo instructors made ")[1].split()[0])
    assert made >= 600  # every pushed task once (the demo pushes 600), an overlap share twice
    catalog = open_catalog(CatalogConfig.from_env())
    labeled = catalog.load_table(("gold", "labeled_posts"))
    assert 0 < row_count(labeled) <= 600
    # ... and the model trained on them passed its gates on the embedded MLflow store
    assert registry.tracking_uri() == f"sqlite:///{spanda_home / 'mlflow' / 'mlflow.db'}"
    champion = registry.champion(registry.client())
    assert champion is not None, proc.stdout[-3000:]
    assert f"champion=v{champion.version}" in proc.stdout
    predictions = catalog.load_table(("gold", "post_predictions"))
    assert 0 < row_count(predictions) <= validated
    # the dashboards' file holds the predictions too: pinned to their main snapshot
    pins = read_pins(default_path(spanda_home))
    scored = predictions.current_snapshot()
    assert scored is not None and pins["gold.post_predictions"] == scored.snapshot_id
    # Runs are recorded in DAGSTER_HOME under SPANDA_HOME, so the UI shows them.
    os.environ["DAGSTER_HOME"] = str(spanda_home / "dagster")
    try:
        with dg.DagsterInstance.get() as instance:
            assert instance.get_latest_materialization_event(dg.AssetKey(["bronze", "forum_posts"]))
    finally:
        del os.environ["DAGSTER_HOME"]


def test_the_cli_starts_without_dagster() -> None:
    """`spanda --help`, `validate`, `seed` and `tables` must not pay for Dagster and the
    definitions: only the commands that run the graph import them."""
    code = (
        "import sys, json; import spanda_assets.cli;"
        "print(json.dumps([m for m in ('dagster', 'pyiceberg', 'pandera', 'great_expectations',"
        " 'spanda_assets.definitions') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
