"""Commands over the data: seed the demo DB, extract, list tables, validate, erase, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    pass

# Dagster and the definitions load only in the commands that run the graph: `spanda
# validate`, `seed`, `tables` and `--help` start in a fraction of a second
# (test_cli.test_the_cli_starts_without_dagster).

from spanda_assets.cli.base import (
    PROJECT_ROOT,
    fail,
    main,
    materialize,
    materialize_submissions,
    prepare_dagster_home,
)


@main.command()
@click.option(
    "--url", default=None, help="SQLAlchemy URL (default: SPANDA_SOURCE_URL or demo SQLite)."
)
@click.option(
    "--size",
    type=click.Choice(["tiny", "small", "medium", "large"]),
    default="small",
    show_default=True,
    help="Preset sizes: tiny 1k posts, small 10k, medium 1M, large 10M.",
)
@click.option("--students", type=int, default=None)
@click.option("--courses", type=int, default=None)
@click.option("--posts", type=int, default=None)
@click.option("--results", type=int, default=None)
@click.option("--seed", "seed_value", type=int, default=42, show_default=True)
@click.option("--append", is_flag=True, help="Add a later batch of new and changed rows.")
@click.option(
    "--drift",
    is_flag=True,
    help=(
        "With --append: make the batch's new forum posts clearly shifted (posted at night, "
        "longer, in two courses, more often urgent), for the drift checks to flag."
    ),
)
def seed(
    url: str | None,
    size: str,
    students: int | None,
    courses: int | None,
    posts: int | None,
    results: int | None,
    seed_value: int,
    append: bool,
    drift: bool,
) -> None:
    """Create the demo operational database (or append a batch to it)."""
    if drift and not append:
        raise click.UsageError("--drift only applies with --append: it shifts the appended batch")
    from spanda_assets.lib.seed import SeedSizes
    from spanda_assets.lib.seed import seed as run_seed

    sizes = SeedSizes.preset(size)
    overrides = {
        k: v
        for k, v in {
            "students": students,
            "courses": courses,
            "posts": posts,
            "results": results,
        }.items()
        if v is not None
    }
    for k, v in overrides.items():
        if v < (1 if k in ("students", "courses") else 0):
            fail(ValueError(f"--{k} must be at least {1 if k in ('students', 'courses') else 0}"))
    sizes = replace(sizes, **overrides)
    target = url or settings.source_url()
    started = time.perf_counter()
    try:
        report = run_seed(
            target,
            sizes,
            seed=seed_value,
            append=append,
            drift=drift,
            ground_truth=settings.ground_truth_dir(),
            progress=lambda m: click.echo(f"  {m}"),
        )
    except (SpandaError, ValueError) as exc:
        fail(exc)
        return
    from spanda_assets.lib.errors import redact_url

    verb = (
        "appended a shifted batch (--drift) to" if drift else "appended to" if append else "seeded"
    )
    click.echo(f"{verb} {redact_url(report.url)} in {time.perf_counter() - started:.1f}s")
    for table, n in report.rows.items():
        click.echo(f"  {table:<18} {n:>10,}")
    click.echo(f"ground truth: {report.ground_truth}")


@main.command()
@click.argument("tables", nargs=-1)
@click.option(
    "--full-refresh", is_flag=True, help="Drop bronze history and reload from the source."
)
def extract(tables: tuple[str, ...], full_refresh: bool) -> None:
    """Extract source tables into bronze (all configured tables if none are named)."""
    from spanda_assets.lib.sources import load_sources

    try:
        sources = {s.name: s for s in load_sources()}
    except SpandaError as exc:
        fail(exc)
        return
    unknown = [t for t in tables if t not in sources]
    if unknown:
        fail(SpandaError(f"unknown table(s) {unknown}; configured: {sorted(sources)}"))
    names = list(tables) or sorted(sources)
    keys = [f"bronze/{n}" for n in names]
    config = {"ops": {f"bronze__{n}": {"config": {"full_refresh": full_refresh}} for n in names}}
    ok = materialize(keys, run_config=config)
    if not ok:
        raise SystemExit(1)


@main.command()
def tables() -> None:
    """List bronze tables with their row counts and watermarks."""
    from spanda_assets.lib.lakehouse import CatalogConfig, load_table_or_none, open_catalog
    from spanda_assets.lib.sources import load_sources
    from spanda_assets.lib.watermark import read_watermark
    from spanda_assets.lib.writes import row_count

    catalog = open_catalog(CatalogConfig.from_env())
    rows = []
    for s in load_sources():
        t = load_table_or_none(catalog, "bronze", s.name)
        snap = t.current_snapshot() if t is not None else None
        wm = read_watermark(t) if t is not None else None
        rows.append(
            {
                "table": f"bronze.{s.name}",
                "rows": row_count(t) if t is not None else None,
                "watermark": wm.display() if wm else None,
                "snapshot": snap.snapshot_id if snap else None,
            }
        )
    click.echo(json.dumps(rows, indent=2))


@main.command("validate")
@click.argument("path", type=click.Path(exists=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=(
        "The steward's config: reclassify or ignore issues, change limits (default: "
        "SPANDA_VALIDATOR_CONFIG). A submission's own .spanda-validator.yaml may only make "
        "the rules stricter."
    ),
)
def validate_cmd(path: Path, as_json: bool, config_path: Path | None) -> None:
    """Validate a dataset submission (folder or .zip); exit 1 on any error."""
    from spanda_assets.lib.submissions.validate import validate

    if not path.exists():
        fail(SpandaError(f"{path}: no such file or folder"))
    if path.is_file() and path.suffix != ".zip":
        fail(SpandaError(f"{path}: a submission is a folder or a .zip archive"))
    try:
        report = validate(path, config_path)
    except (ValueError, OSError) as exc:
        fail(SpandaError(str(exc)))
        return
    click.echo(report.to_json() if as_json else report.to_text())
    if not report.valid:
        raise SystemExit(1)


@main.command()
@click.option("--student-id", type=int, required=True, help="The student's operational id.")
@click.option("--reason", default="erasure request", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="The receipt as JSON.")
def erase(student_id: int, reason: str, as_json: bool) -> None:
    """Erase a student's rows from every table past bronze now, history included.

    Registers the request in bronze.erasure_requests (no later run brings the
    student back), deletes their silver and gold rows, expires each touched
    table's history and deletes the files that held them, then checks that
    nothing readable is left. Bronze keeps the legal record.
    """
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy.erasure import erase_student
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.receipts import issued, publish_status_lists

    try:
        catalog = open_catalog(CatalogConfig.from_env())
        receipt = erase_student(
            catalog,
            student_id,
            Pseudonymizer(load_key()),
            reason=reason,
            orphan_grace=settings.orphan_grace(),
        )
    except SpandaError as exc:
        fail(exc)
        return
    if issued(catalog) is not None:
        # the student's receipts of given consent are revoked now, not at the next run
        try:
            publish_status_lists(catalog, load_signer())
        except SpandaError as exc:
            click.secho(
                f"warning: the consent revocation list was not updated ({exc}); run "
                "`spanda consent status-list --publish` where the institution key is set",
                fg="yellow",
                err=True,
            )
    click.echo(json.dumps(receipt.to_json(), indent=2) if as_json else receipt.text())


DEMO_LABEL_BATCH = 600


def _demo_annotations() -> None:
    """Play instructors on the pushed tasks (from the generator's ground truth), then
    resolve their labels into gold.labeled_posts: the demo's labeled set."""
    from spanda_assets.lib.labeling.demo import annotate_as_demo

    added = annotate_as_demo()
    click.echo(f"demo instructors made {added} annotation(s); resolving the labeled set ...")
    if not materialize(["gold/labeled_posts"]):
        click.secho("gold/labeled_posts failed; see the run in the Dagster UI", fg="red")
        raise SystemExit(1)


@main.command()
@click.option(
    "--no-ui", is_flag=True, help="Seed and materialize, then exit without serving the UI."
)
@click.option("--size", type=click.Choice(["tiny", "small", "medium", "large"]), default="small")
@click.option("--reseed", is_flag=True, help="Recreate the demo database even if it exists.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
@click.option(
    "--api-port",
    default=8000,
    show_default=True,
    type=int,
    help="Port of the HTTP API (landing pages, downloads) beside the UI; 0: none.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    no_ui: bool,
    size: str,
    reseed: bool,
    host: str,
    port: int,
    api_port: int,
) -> None:
    """Seed the demo database, materialize the whole graph, serve the Dagster UI (and the
    HTTP API of the published datasets)."""
    # The demo uses a generated pseudonym key kept under SPANDA_HOME/secrets.
    os.environ.setdefault("SPANDA_DEMO", "1")
    # The demo's instructors label three batches' worth at once: the model's gates need
    # a few hundred labels (with 200, about 25 are urgent: too few to learn from).
    os.environ.setdefault("SPANDA_LABEL_BATCH", str(DEMO_LABEL_BATCH))
    # Libraries' progress bars (Evidently's metric calculation, MLflow's artifact
    # downloads) are noise in a terminal that reports runs; tqdm and MLflow honour these.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    home = settings.ensure_home()
    click.echo(f"SPANDA_HOME={home}")
    db = home / "operational.db"
    if os.environ.get(settings.ENV_SOURCE_URL) is None and (reseed or not db.exists()):
        ctx.invoke(seed, size=size)
    click.echo("materializing the asset graph ...")
    if not materialize():
        click.secho("some assets failed; see above (and the run in the Dagster UI)", fg="red")
        raise SystemExit(1)
    click.echo("all assets materialized")
    if not os.environ.get("LABEL_STUDIO_URL"):
        _demo_annotations()
        click.echo("training post_urgency on the labeled set, then scoring posts ...")
        if not materialize(job_name="train_model"):
            click.secho("the model was not promoted; see its checks in the Dagster UI", fg="red")
            raise SystemExit(1)
    click.echo("publishing the declared datasets (a DOI per version) ...")
    if not materialize(job_name="publish_datasets"):
        click.secho("publication failed; see the publish assets in the Dagster UI", fg="red")
        raise SystemExit(1)
    # bi/lakehouse_file ran with the chain, before the model scored: bring the
    # dashboards' file up to the predictions (under the daemon it follows gold by itself)
    if not materialize(["bi/lakehouse_file"]):
        click.secho("the BI file failed; see bi/lakehouse_file in the Dagster UI", fg="red")
        raise SystemExit(1)
    inbox = home / "inbox"
    if not inbox.exists():
        from spanda_assets.lib.submissions.sample import write_oneroster

        write_oneroster(inbox / "example_district_2026")
        click.echo(f"sample submission placed in {inbox}")
    click.echo("processing the submissions inbox ...")
    if not materialize_submissions():
        click.secho(
            "a submission was rejected: its report is under SPANDA_HOME/reports", fg="yellow"
        )
    if no_ui:
        return
    dagster_home = prepare_dagster_home()
    click.echo(f"Dagster UI on http://{host}:{port} (DAGSTER_HOME={dagster_home}); Ctrl-C stops it")
    # `dg dev` (dagster-dg-cli) is Dagster's current local server: the webserver and the
    # daemon, for the project [tool.dg] declares in pyproject.toml.
    venv = Path(sys.executable).parent.parent
    cmd = [
        str(Path(sys.executable).with_name("dg")),
        "dev",
        "--target-path",
        str(PROJECT_ROOT),
        "-h",
        host,
        "-p",
        str(port),
    ]
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    api = _demo_api(host, api_port) if api_port else None
    try:
        code = subprocess.call(cmd, cwd=PROJECT_ROOT, env=env)
    finally:
        if api is not None and api.poll() is None:
            api.terminate()
            try:
                api.wait(timeout=15)
            except subprocess.TimeoutExpired:
                api.kill()
    raise SystemExit(code)


def _demo_api(host: str, port: int) -> subprocess.Popen[bytes] | None:
    """`spanda serve` beside the UI, with a demo researcher's token printed once, so the
    published datasets can be browsed and downloaded as a researcher would."""
    import socket

    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            click.secho(f"port {port} is taken: the HTTP API is not started", fg="yellow")
            return None
    from spanda_assets.lib.access import TokenStore, access_dir
    from spanda_assets.lib.publish.datasets import load_datasets

    declared = load_datasets()
    purposes = tuple(sorted({p for d in declared for p in d.access.purposes}))
    duas = tuple(sorted({d.dua.id for d in declared}))
    token, _ = TokenStore(access_dir()).create(
        principal="demo-researcher",
        role="researcher",
        institution=declared[0].publisher.name,
        purposes=purposes,
        duas=duas,
    )
    spanda = str(Path(sys.executable).with_name("spanda"))
    env = {**os.environ, "SPANDA_PUBLIC_URL": f"http://{host}:{port}"}
    proc = subprocess.Popen([spanda, "serve", "--host", host, "--port", str(port)], env=env)
    base = f"http://{host}:{port}"
    click.echo(f"HTTP API on {base}/datasets (OpenAPI: {base}/docs)")
    click.echo(
        f"a demo researcher's token (purposes {', '.join(purposes)}):\n  TOKEN={token}\n"
        f'  curl -H "Authorization: Bearer $TOKEN" -H "X-Purpose: research" '
        f'"{base}/datasets/validated_posts/versions/1/data?format=csv" | head'
    )
    return proc
