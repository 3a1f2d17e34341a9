"""`spanda search`, `spanda datasets` and `spanda serve`: find and serve what Spanda published.

* `search QUERY [--facet k=v]... [--json]`: the search index over published versions'
  metadata (BM25, facets, snippets). `--json` prints exactly what the HTTP API's
  `GET /search` returns for the same query.
* `datasets [--json]`: every declared dataset, its latest version and DOIs.
* `serve [--host 127.0.0.1] [--port 8000]`: the HTTP API (`spanda_assets/api`).

`search` and `datasets` read metadata only: no value of any row is shown.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError

BOLD, NORMAL = "\x1b[1m", "\x1b[22m"


def _facets(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    from spanda_assets.lib.publish.search import FacetSyntaxError, parse_facet_pairs

    try:
        return parse_facet_pairs(pairs)
    except FacetSyntaxError as exc:
        raise click.BadParameter(str(exc), param_hint="--facet") from exc


@main.command("search")
@click.argument("query", required=False, default="")
@click.option(
    "--facet",
    "facet",
    multiple=True,
    metavar="KEY=VALUE",
    help="Keep hits with this facet value (subject, licence, grade_level, year); repeat it: "
    "values of one facet are alternatives, different facets must all match.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0, 10_000))
@click.option("--all-versions", is_flag=True, help="Every version, not only the latest.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def search(
    query: str, facet: tuple[str, ...], limit: int, offset: int, all_versions: bool, as_json: bool
) -> None:
    """Search published datasets' metadata (a blank query lists them, newest first)."""
    from spanda_assets.lib.publish.search import SearchIndex, default_path

    facets = _facets(facet)
    if not default_path().exists():
        fail(
            SpandaError(
                f"no search index at {default_path()} yet: nothing was published here; run "
                "the publish_datasets job (spanda demo does) or wait for the daily run"
            )
        )
    try:
        with SearchIndex.open_default() as index:
            results = index.search(
                query, facets, limit=limit, offset=offset, latest_only=not all_versions
            )
    except (SpandaError, sqlite3.DatabaseError) as exc:
        fail(SpandaError(f"the search index at {default_path()} cannot be read: {exc}"))
        return
    if as_json:
        click.echo(results.to_json(indent=2))
        return
    shown = f"{offset + 1}-{offset + len(results.hits)}" if results.hits else "0"
    click.echo(f"{results.total} match(es); showing {shown}")
    for hit in results.hits:
        click.secho(f"\n{hit.title}", bold=True)
        click.echo(f"  doi:{hit.doi}  version {hit.version}  ({hit.dataset_id})")
        click.echo(f"  {', '.join(hit.licences)} · {hit.publisher} · {hit.year or ''}")
        for snippet in hit.snippets:
            # bold on a terminal; click.echo drops the ANSI codes when piped
            click.echo(f"  {snippet.field}: {snippet.marked(BOLD, NORMAL)}")
    for name, counts in results.facets.items():
        if counts:
            values = ", ".join(f"{c.value} ({c.count})" for c in counts[:8])
            click.echo(f"\n{name}: {values}")


@main.command("datasets")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def datasets(as_json: bool) -> None:
    """Every declared dataset: its table, latest version, DOIs and files."""
    from spanda_assets.lib.publish.datasets import load_datasets
    from spanda_assets.lib.publish.versions import VersionStore, publish_root

    store = VersionStore(publish_root())
    rows: list[dict[str, Any]] = []
    try:
        declared = load_datasets()
        states = {d.id: store.load(d.id) for d in declared}
    except SpandaError as exc:
        fail(exc)
        return
    for d in declared:
        state = states[d.id]
        latest = state.latest
        rows.append(
            {
                "id": d.id,
                "title": d.title,
                "table": d.table,
                "concept_doi": state.versions[0].concept_doi if state.versions else None,
                "versions": len(state.published),
                "latest_version": latest.version if latest else None,
                "latest_doi": latest.doi if latest else None,
                "rows": latest.rows if latest else None,
                "files": [
                    {k: f[k] for k in ("file_name", "size", "sha256")}
                    for f in (latest.distributions if latest else [])
                ],
                "pending": state.pending is not None,
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        head = (
            f"v{r['latest_version']} doi:{r['latest_doi']} ({r['rows']} rows)"
            if r["latest_version"]
            else "not published yet"
        )
        click.echo(f"{r['id']:<24} {r['table']:<28} {head}")
        if r["pending"]:
            click.secho("  a version is pending: the next publish run finishes it", fg="yellow")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
def serve(host: str, port: int) -> None:
    """Serve the HTTP API: landing pages, downloads, search, OAI-PMH, exports.

    The access policy is validated first: a policy that does not validate stops the
    server before it listens. Links in pages use SPANDA_PUBLIC_URL (by default this
    host and port).
    """
    import os

    import uvicorn

    from spanda_assets.api.app import create_app
    from spanda_assets.lib.publish.versions import ENV_PUBLIC_URL

    os.environ.setdefault(ENV_PUBLIC_URL, f"http://{host}:{port}")
    try:
        app = create_app()
    except SpandaError as exc:
        fail(exc)
        return
    click.echo(f"Spanda API on http://{host}:{port} (OpenAPI: /openapi.json)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)
