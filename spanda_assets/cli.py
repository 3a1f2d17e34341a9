"""The `spanda` command: seed the demo database, run the graph, serve the UI.

Each command is a thin layer over `lib/` and the Dagster definitions, so what
the CLI does is what a scheduled run does.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    import dagster as dg

# Dagster and the definitions load only in the commands that run the graph: `spanda
# validate`, `seed`, `tables` and `--help` start in a fraction of a second
# (test_cli.test_the_cli_starts_without_dagster).

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The instance template (copied into DAGSTER_HOME). Kept out of the project root, where
# Dagster would warn that a dagster.yaml there is not the instance's.
DAGSTER_YAML = Path(__file__).resolve().parent / "config" / "dagster.yaml"


def _fail(exc: Exception) -> None:
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
def seed(
    url: str | None,
    size: str,
    students: int | None,
    courses: int | None,
    posts: int | None,
    results: int | None,
    seed_value: int,
    append: bool,
) -> None:
    """Create the demo operational database (or append a batch to it)."""
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
            _fail(ValueError(f"--{k} must be at least {1 if k in ('students', 'courses') else 0}"))
    sizes = replace(sizes, **overrides)
    target = url or settings.source_url()
    started = time.perf_counter()
    try:
        report = run_seed(
            target,
            sizes,
            seed=seed_value,
            append=append,
            ground_truth=settings.ground_truth_dir(),
            progress=lambda m: click.echo(f"  {m}"),
        )
    except (SpandaError, ValueError) as exc:
        _fail(exc)
        return
    from spanda_assets.lib.errors import redact_url

    verb = "appended to" if append else "seeded"
    click.echo(f"{verb} {redact_url(report.url)} in {time.perf_counter() - started:.1f}s")
    for table, n in report.rows.items():
        click.echo(f"  {table:<18} {n:>10,}")
    click.echo(f"ground truth: {report.ground_truth}")


def _load_defs() -> dg.Definitions:
    from spanda_assets.definitions import defs

    return defs()


def materialize(
    selection: list[str] | None = None, run_config: dict[str, Any] | None = None
) -> bool:
    """Materialize assets through the Dagster instance, so runs show in the UI."""
    import dagster as dg

    prepare_dagster_home()
    definitions = _load_defs()
    job = definitions.resolve_job_def("materialize_platform")
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
                f"  +{md.get('rows_added', md.get('rows_written', md.get('rows_validated', 0)))}"
                f" ~{md.get('rows_updated', 0)}"
                + (f"  quarantined={md['quarantine_total']}" if "quarantine_total" in md else "")
                + (f"  watermark={md['watermark_after']}" if "watermark_after" in md else "")
                + (f"  erased={md['rows_erased']}" if md.get("rows_erased") else "")
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
        _fail(exc)
        return
    unknown = [t for t in tables if t not in sources]
    if unknown:
        _fail(SpandaError(f"unknown table(s) {unknown}; configured: {sorted(sources)}"))
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
    from spanda_assets.lib.submissions.validator import validate

    if not path.exists():
        _fail(SpandaError(f"{path}: no such file or folder"))
    if path.is_file() and path.suffix != ".zip":
        _fail(SpandaError(f"{path}: a submission is a folder or a .zip archive"))
    try:
        report = validate(path, config_path)
    except (ValueError, OSError) as exc:
        _fail(SpandaError(str(exc)))
        return
    click.echo(report.to_json() if as_json else report.to_text())
    if not report.valid:
        raise SystemExit(1)


@main.group()
def consent() -> None:
    """Consent receipts: W3C Verifiable Credentials signed with eddsa-jcs-2022."""


@consent.command("issue")
@click.argument("student_id", type=int)
@click.option("--purpose", type=click.Choice(["research", "model_training"]), default="research")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def consent_issue(student_id: int, purpose: str, out_path: Path | None) -> None:
    """Issue a signed consent receipt for a student's current consent state.

    Signed with the institution's key (SPANDA_INSTITUTION_KEY or
    SPANDA_INSTITUTION_KEY_FILE; a generated one in the demo). The receipt names
    its entry in the institution's revocation list (SPANDA_STATUS_LIST_URL), which
    is published again now and on every consent change.
    """
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy import status, vc
    from spanda_assets.lib.privacy.consent import latest_states, record, validate_events
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.receipts import publish_status_lists, register_receipt
    from spanda_assets.lib.privacy.subjects import did_of
    from spanda_assets.lib.writes import eq_filter

    try:
        signer = load_signer()
        catalog = open_catalog(CatalogConfig.from_env())
        subject_did = did_of(catalog, student_id)
        events = (
            catalog.load_table(("bronze", "consent_events"))
            .scan(row_filter=eq_filter("student_id", student_id))
            .to_arrow()
        )
        valid, _ = validate_events(events, {student_id})
        state = latest_states(valid).get((student_id, purpose))
        if state is None:
            raise SpandaError(f"student {student_id} has no valid consent event for {purpose!r}")
        row = next(r for r in valid.to_pylist() if r["consent_event_id"] == state.event_id)
        receipt_id, list_url = vc.new_credential_id(), settings.status_list_url()
        index = register_receipt(
            catalog,
            receipt_id=receipt_id,
            list_url=list_url,
            student_id=student_id,
            purpose=purpose,
            consent_event_id=state.event_id,
            state=state.state,
        )
        receipt = vc.sign(
            vc.consent_receipt(
                issuer_did=signer.did,
                subject_did=subject_did,
                record=record(
                    record_id=f"consent-event-{state.event_id}",
                    subject=subject_did,
                    purpose=purpose,
                    state=state.state,
                    time=row["recorded_at"].isoformat(),
                    collection_method=row["collection_method"],
                    notice_version=row["notice_version"],
                ),
                valid_from=dt.datetime.now(dt.UTC),
                credential_id=receipt_id,
                status=status.entry(list_url, index),
            ),
            signer.key,
            signer.did,
        )
        publish_status_lists(catalog, signer)
    except SpandaError as exc:
        _fail(exc)
        return
    text = json.dumps(receipt, indent=2, sort_keys=True)
    if out_path:
        out_path.write_text(text + "\n", encoding="utf-8")
        click.echo(f"receipt for {subject_did} ({purpose}: {state.state}) written to {out_path}")
    else:
        click.echo(text)


@consent.command("verify")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def consent_verify(path: Path) -> None:
    """Verify a consent receipt: its integrity, that the institution issued it, that its
    subject is registered, and that it is not revoked. Says why one fails.

    The institution is SPANDA_INSTITUTION_DID (or the DID of the institution's
    key); the subject must be in bronze.data_subjects; revocation is read from the
    status list the platform published under the receipt's statusListCredential.

    \b
    Exit codes:
      0  valid
      1  tampered: the signature does not match the content, or the proof is malformed
      2  the file cannot be read, or the platform is not set up to verify
      3  wrong issuer: not signed by the institution's key
      4  unknown subject: not a registered data subject
      5  revoked: the consent it states was withdrawn (or the student erased) since
      6  status unknown: no revocation entry, or no valid published list to check it
    """
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy.institution import institution_did
    from spanda_assets.lib.privacy.receipts import status_list
    from spanda_assets.lib.privacy.subjects import is_registered
    from spanda_assets.lib.privacy.trust import check_receipt

    if not path.is_file():
        _fail(SpandaError(f"{path}: no such file"))
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        _fail(SpandaError(f"{path}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"))
        return
    except UnicodeDecodeError as exc:
        _fail(SpandaError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return
    try:
        anchor = institution_did()
        catalog = open_catalog(CatalogConfig.from_env())
        finding = check_receipt(
            document,
            institution_did=anchor,
            is_registered=lambda did: is_registered(catalog, did),
            find_list=lambda url: status_list(catalog, url),
        )
    except SpandaError as exc:
        _fail(exc)
        return
    if finding.ok:
        click.secho(f"valid: {finding.reason}", fg="green")
        click.echo(
            f"  issuer:  {finding.issuer} (the institution)\n"
            f"  subject: {finding.subject} (registered)\n"
            f"  status:  {finding.status}"
        )
        return
    click.secho(f"invalid ({finding.verdict.label}): {finding.reason}", fg="red", err=True)
    raise SystemExit(int(finding.verdict))


@consent.command("keygen")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="New key file (refused if it exists).",
)
def consent_keygen(out_path: Path) -> None:
    """Create the institution's Ed25519 signing key in a new file (mode 0600 from its first
    byte) and print its DID, the trust anchor verifiers set as SPANDA_INSTITUTION_DID."""
    from spanda_assets.lib.privacy.institution import keygen

    try:
        did = keygen(out_path)
    except SpandaError as exc:
        _fail(exc)
        return
    click.echo(f"institution key written to {out_path} (mode 0600); keep it in a secret store")
    click.echo(f"{settings.ENV_INSTITUTION_DID}={did}")


@consent.command("status-list")
@click.option("--url", default=None, help="The list's URL (default: SPANDA_STATUS_LIST_URL).")
@click.option("--publish", is_flag=True, help="Rebuild and sign every list first.")
def consent_status_list(url: str | None, publish: bool) -> None:
    """Print the signed revocation list (a W3C Bitstring Status List credential) the platform
    published, to serve at its URL."""
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.privacy.institution import load_signer
    from spanda_assets.lib.privacy.receipts import publish_status_lists, status_list

    target = url or settings.status_list_url()
    try:
        catalog = open_catalog(CatalogConfig.from_env())
        if publish:
            publish_status_lists(catalog, load_signer())
        found = status_list(catalog, target)
        if found is None:
            raise SpandaError(f"no status list published under {target} (no receipt issued yet)")
    except SpandaError as exc:
        _fail(exc)
        return
    click.echo(json.dumps(found, indent=2, sort_keys=True))


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
        _fail(exc)
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


@main.command()
@click.option(
    "--no-ui", is_flag=True, help="Seed and materialize, then exit without serving the UI."
)
@click.option("--size", type=click.Choice(["tiny", "small", "medium", "large"]), default="small")
@click.option("--reseed", is_flag=True, help="Recreate the demo database even if it exists.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=3000, show_default=True, type=int)
@click.pass_context
def demo(ctx: click.Context, no_ui: bool, size: str, reseed: bool, host: str, port: int) -> None:
    """Seed the demo database, materialize the whole graph, serve the Dagster UI."""
    # The demo uses a generated pseudonym key kept under SPANDA_HOME/secrets.
    os.environ.setdefault("SPANDA_DEMO", "1")
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
    inbox = home / "inbox"
    if not inbox.exists():
        from spanda_assets.lib.submissions.sample import write_oneroster

        write_oneroster(inbox / "example-district-2026")
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
    raise SystemExit(subprocess.call(cmd, cwd=PROJECT_ROOT, env=env))


if __name__ == "__main__":
    main()
