"""`spanda labels`: move annotations in and out of the annotation store as Label Studio JSON."""

from __future__ import annotations

from pathlib import Path

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError


@main.group()
def labels() -> None:
    """The labeled set's annotations, in Label Studio's JSON export format.

    The store is the configured annotation tool: the Label Studio project when
    LABEL_STUDIO_URL is set, else the local store under SPANDA_HOME
    (labels/annotations.json). Export from one and import into the other to move
    annotations between them.
    """


@labels.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def labels_export(file: Path) -> None:
    """Write every task, annotated or not, with its post key, text and annotations to FILE."""
    from spanda_assets.lib.labeling.backend import open_annotations

    try:
        store, tool = open_annotations()
        count = store.export(file)
    except (SpandaError, OSError) as exc:
        fail(exc)
    click.echo(f"{count} tasks from {_where(tool)} written to {file}")


@labels.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def labels_import(file: Path) -> None:
    """Merge FILE (a Label Studio JSON export) into the store, keyed by data.post_key.

    The whole file is checked first: on any error nothing is written, and each problem
    is named by task, line and field. Importing the same file twice adds nothing.
    """
    from spanda_assets.lib.labeling.backend import open_annotations

    try:
        store, tool = open_annotations()
        result = store.import_file(file)
    except (SpandaError, OSError) as exc:
        fail(exc)
    click.echo(
        f"{file}: {result.tasks_added} new tasks, {result.annotations_added} new annotations, "
        f"{result.annotations_already_present} already in {_where(tool)}"
    )


def _where(tool: dict[str, str]) -> str:
    if "label_studio_url" in tool:
        return f"Label Studio project {tool['label_studio_project']} at {tool['label_studio_url']}"
    return tool["annotations_file"]


@labels.command("webhook")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
def labels_webhook(host: str, port: int) -> None:
    """Receive Label Studio's webhook and launch `pull_annotations` for annotation events.

    Point the project's webhook at http://HOST:PORT/label-studio with the header
    X-Spanda-Webhook-Secret set to SPANDA_LABELS_WEBHOOK_SECRET. Runs are launched on
    the Dagster webserver at SPANDA_DAGSTER_URL (default http://127.0.0.1:3000).
    """
    from spanda_assets.api.webhook import serve

    click.echo(f"Label Studio webhook on http://{host}:{port}/label-studio; Ctrl-C stops it")
    try:
        serve(host, port)
    except ValueError as exc:
        fail(exc)
    except KeyboardInterrupt:
        pass
