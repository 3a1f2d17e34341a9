"""`spanda labels`: move annotations in and out of the annotation store as Label Studio JSON."""

from __future__ import annotations

from pathlib import Path

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError


@main.group()
def labels() -> None:
    """The labeled set's annotations, in Label Studio's JSON export format.

    The store is the local one under SPANDA_HOME (labels/annotations.json).
    """


@labels.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def labels_export(file: Path) -> None:
    """Write every task, annotated or not, with its post key, text and annotations to FILE."""
    from spanda_assets.lib.labeling.store import AnnotationStore

    store = AnnotationStore()
    try:
        count = store.export(file)
    except (SpandaError, OSError) as exc:
        fail(exc)
    click.echo(f"{count} tasks from {store.path} written to {file}")


@labels.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def labels_import(file: Path) -> None:
    """Merge FILE (a Label Studio JSON export) into the store, keyed by data.post_key.

    The whole file is checked first: on any error nothing is written, and each problem
    is named by task, line and field. Importing the same file twice adds nothing.
    """
    from spanda_assets.lib.labeling.store import AnnotationStore

    store = AnnotationStore()
    try:
        result = store.import_file(file)
    except (SpandaError, OSError) as exc:
        fail(exc)
    click.echo(
        f"{file}: {result.tasks_added} new tasks, {result.annotations_added} new annotations, "
        f"{result.annotations_already_present} already in {store.path}"
    )
