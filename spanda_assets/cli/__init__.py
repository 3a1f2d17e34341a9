"""The `spanda` command: seed the demo database, run the graph, serve the UI.

Each command is a thin layer over `lib/` and the Dagster definitions, so what
the CLI does is what a scheduled run does.
"""

from spanda_assets.cli import (  # the commands register themselves
    access,
    bi,
    config,
    consent,
    data,
    labels,
    model,
    publish,
    sql,
)
from spanda_assets.cli.base import main

__all__ = ["access", "bi", "config", "consent", "data", "labels", "main", "model", "publish", "sql"]

if __name__ == "__main__":
    main()
