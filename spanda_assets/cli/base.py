"""What every `spanda` command shares: the group, failures, Dagster's home, running the graph."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spanda_assets import settings

if TYPE_CHECKING:
    import dagster as dg

# Dagster and the definitions load only in the commands that run the graph: `spanda
# validate`, `seed`, `tables` and `--help` start in a fraction of a second
# (test_cli.test_the_cli_starts_without_dagster).

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# The instance template (copied into DAGSTER_HOME). Kept out of the project root, where
# Dagster would warn that a dagster.yaml there is not the instance's.
DAGSTER_YAML = Path(__file__).resolve().parent.parent / "config" / "dagster.yaml"


def fail(exc: Exception) -> None:
    click.secho(f"error: {exc}", fg="red", err=True)
    raise SystemExit(2)


def prepare_dagster_home() -> Path:
    """DAGSTER_HOME under SPANDA_HOME (unless set), holding the project's dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or settings.ensure_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if DAGSTER_YAML.is_file() and not target.exists():
        shutil.copyfile(DAGSTER_YAML, target)
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return home


@click.group()
@click.version_option(package_name="spanda")
def main() -> None:
    """Spanda: the EdTech data platform (lakehouse, de-identification, validated datasets)."""


def _load_defs() -> dg.Definitions:
    from spanda_assets.definitions import defs

    return defs()


# What each kind of asset calls the rows it added, for the one-line summary.
ADDED_KEYS = ("rows_added", "rows_written", "rows_validated", "posts_scored")


def materialize(
    selection: list[str] | None = None,
    run_config: dict[str, Any] | None = None,
    job_name: str = "materialize_platform",
) -> bool:
    """Materialize assets through the Dagster instance, so runs show in the UI."""
    import dagster as dg

    prepare_dagster_home()
    definitions = _load_defs()
    job = definitions.resolve_job_def(job_name)
    asset_selection = None
    if selection:
        asset_selection = [dg.AssetKey.from_user_string(s) for s in selection]
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=asset_selection,
            run_config={
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
                **(run_config or {}),
            },
            raise_on_error=False,
            tags={"spanda/trigger": "cli"},
        )
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            mat = event.step_materialization_data.materialization
            md = {k: v.value for k, v in mat.metadata.items()}
            rows = md.get("dagster/row_count", "?")
            click.echo(
                f"  {mat.asset_key.to_user_string():<32} rows={rows!s:>9}"
                f"  +{next((md[k] for k in ADDED_KEYS if k in md), 0)}"
                f" ~{md.get('rows_updated', 0)}"
                + (f"  quarantined={md['quarantine_total']}" if "quarantine_total" in md else "")
                + (f"  watermark={md['watermark_after']}" if "watermark_after" in md else "")
                + (f"  erased={md['rows_erased']}" if md.get("rows_erased") else "")
                + (f"  champion=v{md['model_version']}" if md.get("promoted_to_champion") else "")
                + (f"  F1={md['f1']}" if "f1" in md else "")
                + (f"  {md['outcome']} doi={md['doi']}" if md.get("doi") else "")
            )
        elif event.event_type_value == "STEP_FAILURE" and event.step_failure_data:
            err = event.step_failure_data.error
            message = err.cause.message if err and err.cause else (err.message if err else "")
            click.secho(f"  {event.step_key} failed: {message.strip()}", fg="red", err=True)
    return bool(result.success)


def materialize_submissions() -> bool:
    """Validate, and ingest if valid, every submission in the inbox: one partition each,
    as the inbox sensor does when the daemon runs. True if all were ingested."""
    import dagster as dg

    from spanda_assets.defs.submissions.assets import SUBMISSIONS
    from spanda_assets.lib.submissions.inbox import list_submissions

    prepare_dagster_home()
    job = _load_defs().resolve_job_def("process_submission")
    all_ingested = True
    with dg.DagsterInstance.get() as instance:
        for item in list_submissions():
            instance.add_dynamic_partitions(SUBMISSIONS.name or "submissions", [item.key])
            result = job.execute_in_process(
                instance=instance,
                partition_key=item.key,
                raise_on_error=False,
                tags={"spanda/trigger": "cli"},
                run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
            )
            verdict = "ingested" if result.success else "rejected: see its validation report"
            click.echo(f"  submission {item.key:<28} {verdict}")
            all_ingested = all_ingested and result.success
    return all_ingested
