"""`spanda bi refresh` and `spanda bi superset --url URL`: BI over the lakehouse.

`refresh` writes the DuckDB file BI tools read (lib/bi/refresh.py): views over the
exposed tables, pinned to the snapshots main holds now. `superset` refreshes it, then
creates or updates Spanda's database, datasets, charts and dashboard in a Superset
server through its REST API (lib/bi/superset.py); run it again after every publication
and it updates what it made, never duplicating it. Docs: docs/bi.md, decision 0034.

Superset's credentials come from SPANDA_SUPERSET_USERNAME and SPANDA_SUPERSET_PASSWORD
only (an option would show in the process list); they are never printed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    from spanda_assets.lib.bi.refresh import Refreshed

NAMESPACE_HELP = "Namespace to expose (repeat for several): gold (default) or silver; never bronze."


@main.group("bi")
def bi() -> None:
    """Business intelligence over the lakehouse: the DuckDB file, Superset's dashboard."""


VIEWS_OPTION = click.option(
    "--views",
    is_flag=True,
    help="Zero-copy views over the tables' files instead of copies of main's rows. A "
    "connection that may read a table's directory can read every file in it, rows an "
    "audit branch holds back and erased rows of old snapshots included: for one trusted "
    "analyst on this host, never a shared Superset. Object storage is always copied.",
)


def _refresh(path: Path | None, namespaces: tuple[str, ...], views: bool) -> Refreshed:
    from spanda_assets.lib.bi.refresh import DEFAULT_NAMESPACES, refresh

    result = refresh(path=path, namespaces=namespaces or DEFAULT_NAMESPACES, copy=not views)
    click.echo(f"{result.path}: {len(result.tables)} table(s) in {result.seconds:.1f} s")
    for table in result.tables:
        pin = table.snapshot_id if table.snapshot_id is not None else "nothing published yet"
        click.echo(f"  {table.qualified:<32} {table.mode:<5} snapshot {pin}")
    return result


@bi.command("refresh")
@click.option("--path", type=click.Path(path_type=Path), help="Default SPANDA_HOME/bi/.")
@click.option("--namespace", "namespaces", multiple=True, help=NAMESPACE_HELP)
@VIEWS_OPTION
def refresh_cmd(path: Path | None, namespaces: tuple[str, ...], views: bool) -> None:
    """Write the DuckDB file BI tools read: each exposed table at main's snapshot."""
    try:
        _refresh(path, namespaces, views)
    except SpandaError as exc:
        fail(exc)


@bi.command("superset")
@click.option(
    "--url",
    envvar="SPANDA_SUPERSET_URL",
    show_envvar=True,
    required=True,
    help="Superset's base URL, e.g. http://127.0.0.1:8088.",
)
@click.option(
    "--path", type=click.Path(path_type=Path), help="The BI file (default SPANDA_HOME/bi/)."
)
@click.option("--namespace", "namespaces", multiple=True, help=NAMESPACE_HELP)
@VIEWS_OPTION
@click.option("--no-refresh", is_flag=True, help="Use the BI file as it is.")
def superset_cmd(
    url: str, path: Path | None, namespaces: tuple[str, ...], views: bool, no_refresh: bool
) -> None:
    """Create or update Spanda's dashboard in Superset (idempotent)."""
    from spanda_assets.lib.bi.refresh import default_path
    from spanda_assets.lib.bi.superset import (
        ENV_PASSWORD,
        ENV_USERNAME,
        SupersetClient,
        build_dashboard,
    )

    username = os.environ.get(ENV_USERNAME)
    password = os.environ.get(ENV_PASSWORD)
    if not username or not password:
        fail(SpandaError(f"set {ENV_USERNAME} and {ENV_PASSWORD} (Superset's credentials)"))
        return
    try:
        bi_file = path or default_path()
        if not no_refresh:
            bi_file = _refresh(path, namespaces, views).path
        elif not bi_file.is_file():
            raise SpandaError(f"{bi_file} does not exist: run `spanda bi refresh` first")
        with SupersetClient(url, username, password) as client:
            built = build_dashboard(client, bi_file, log=click.echo)
    except SpandaError as exc:
        fail(exc)
        return
    created = sum(1 for c in built.changes if c.startswith("created"))
    updated = len(built.changes) - created
    click.echo(f"{created} object(s) created, {updated} updated; dashboard {built.dashboard_url}")
