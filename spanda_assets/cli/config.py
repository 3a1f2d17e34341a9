"""`spanda config env-example | table` and `spanda bootstrap`: the configuration registry
(settings.VARIABLES) rendered for operators, and what a fresh deployment creates once.

The docker stack's bootstrap service runs `spanda bootstrap`; docker/.env.example and the
README's Configuration table are this module's output (test_docker_stack keeps them so).
"""

from __future__ import annotations

import click

from spanda_assets import settings
from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError


@main.group("config")
def config() -> None:
    """The environment variables the platform reads (one registry: spanda_assets/settings.py)."""


@config.command("env-example")
def env_example() -> None:
    """Print docker/.env.example: `spanda config env-example > docker/.env.example`."""
    click.echo(settings.env_example(), nl=False)


@config.command("table")
def table() -> None:
    """Print the README's Configuration table (Markdown), one table per group."""
    click.echo(settings.readme_table(), nl=False)


@main.command()
def bootstrap() -> None:
    """Create what the first run expects, so that other readers see it before that run:
    the lakehouse namespaces (Dremio, Superset and SQL clients list them), the Label
    Studio project when LABEL_STUDIO_URL is set, and the MLflow experiment. Safe to run
    again: each step keeps what exists."""
    from spanda_assets.lib.labeling.backend import open_annotations, server_configured
    from spanda_assets.lib.lakehouse import (
        NAMESPACES,
        CatalogConfig,
        ensure_namespace,
        open_catalog,
    )
    from spanda_assets.lib.model import registry

    try:
        lake = CatalogConfig.from_env()
        catalog = open_catalog(lake)
        for namespace in NAMESPACES:
            ensure_namespace(catalog, namespace)
        click.echo(f"lakehouse: namespaces {', '.join(NAMESPACES)} in {lake.describe()['catalog']}")
        _, info = open_annotations()
        if server_configured():
            click.echo(
                f"label studio: project {info['label_studio_project']} at "
                f"{info['label_studio_url']}"
            )
        else:
            click.echo(f"label studio: not configured; local store {info['annotations_file']}")
        experiment = registry.experiment_id(registry.client())
        click.echo(
            f"mlflow: experiment {registry.EXPERIMENT} ({experiment}) at {registry.redacted_uri()}"
        )
    except SpandaError as exc:
        fail(exc)
