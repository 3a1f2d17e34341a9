"""`spanda sql QUERY [--as-of SNAPSHOT_ID|TIMESTAMP] [--format table|csv|json] [--token T]`:
one read-only SELECT over the lakehouse's silver and gold tables (bronze for stewards)
with DuckDB (lib/sql.py, docs/sql.md).

Rows go to stdout as they stream; notes (what --as-of picked) to stderr. A refused or
failing query prints `error: ...` on stderr and exits 1; a platform that cannot answer
(catalog, policy, audit log, extension) exits 2, as every other command does.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    from spanda_assets.lib.sql import AsOf

ENV_TOKEN = "SPANDA_TOKEN"


def _as_of(ctx: click.Context, param: click.Parameter, value: str | None) -> AsOf | None:
    if value is None:
        return None
    from spanda_assets.lib.sql import AsOf

    try:
        return AsOf.parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command("sql")
@click.argument("query")
@click.option(
    "--as-of",
    "as_of",
    metavar="SNAPSHOT_ID|TIMESTAMP",
    callback=_as_of,
    help="Read the tables as they were: at a snapshot id (of the one table that has it), "
    "or at an ISO 8601 time (UTC unless it says), each table at what main held then.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table: aligned text (long cells cut); csv: header and rows; json: an array of objects.",
)
@click.option(
    "--token",
    envvar=ENV_TOKEN,
    show_envvar=True,
    default=None,
    help="An API token (spanda access token create): the access policy decides each table "
    "the query names with its holder's role; bronze needs a steward's.",
)
def sql_cmd(query: str, as_of: AsOf | None, fmt: str, token: str | None) -> None:
    """Run one read-only SELECT over the lakehouse tables (QUERY, or - to read stdin).

    Tables are named <namespace>.<table>, e.g. gold.validated_posts; readers see what
    was published (main), never an unpublished audit branch.
    """
    from spanda_assets.lib.access import Unauthenticated
    from spanda_assets.lib.sql import SqlError, run_query

    text = sys.stdin.read() if query == "-" else query
    try:
        result = run_query(text, as_of=as_of, token=token)
    except (SqlError, Unauthenticated) as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        raise SystemExit(1) from None
    except SpandaError as exc:
        fail(exc)
        return
    with result:
        for note in result.notes:
            click.echo(f"as of {as_of.describe() if as_of else 'now'}: {note}", err=True)
        try:
            result.write(fmt, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has seen enough
            # Python would complain again when it flushes stdout at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(0) from None
        except SqlError as exc:  # failed while the rows streamed (a bad cast deep down)
            sys.stdout.flush()
            click.secho(f"error: {exc}", fg="red", err=True)
            raise SystemExit(1) from None
