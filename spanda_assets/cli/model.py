"""`spanda model`: the registered urgency model, its champion, and its lineage.

* `status`: the champion (version, F1, when promoted), the stale flag after a consent
  withdrawal and its retraining deadline, the last versions and what blocked them.
* `promote VERSION` / `rollback`: move the `champion` alias by hand; every move is
  recorded on the registered model (who, from, to, why) and shown by `status`.
* `lineage [--version V]`: rebuild the exact training frame of a version from the
  Iceberg snapshot it names and compare its digest with the one logged at training.
"""

from __future__ import annotations

import json
from typing import Any

import click

from spanda_assets.cli.base import fail, main
from spanda_assets.lib.errors import SpandaError


@main.group()
def model() -> None:
    """The `post_urgency` model in MLflow (MLFLOW_TRACKING_URI; default SPANDA_HOME/mlflow)."""


def _client() -> object:
    from spanda_assets.lib.model import registry

    return registry.client()


@model.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def model_status(as_json: bool) -> None:
    """The champion, whether it is stale, and the recent versions."""
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.consent import champion_staleness
    from spanda_assets.lib.model.registry import MODEL_NAME

    try:
        c = registry.client()
        champ = registry.champion(c)
        catalog = open_catalog(CatalogConfig.from_env())
        from spanda_assets.defs.labeling.assets import _departed

        stale = champion_staleness(c, _departed(catalog)).metadata() if champ else {}
        versions = sorted(
            c.search_model_versions(f"name='{MODEL_NAME}'"), key=lambda v: -int(v.version)
        )[:10]
        history = registry.alias_history(c)
    except SpandaError as exc:
        fail(exc)
    doc: dict[str, Any] = {
        "tracking_uri": registry.redacted_uri(),
        "model": MODEL_NAME,
        "champion": champ.version if champ else None,
        "champion_f1": champ.tags.get("spanda.f1") if champ else None,
        **({"stale": stale} if stale else {}),
        "versions": [
            {
                "version": v.version,
                "status": v.tags.get(registry.STATUS_TAG, ""),
                "f1": v.tags.get("spanda.f1", ""),
                "blocked_by": v.tags.get(registry.BLOCKED_BY_TAG, ""),
                "labeled_snapshot_id": v.tags.get("spanda.labeled_snapshot_id", ""),
            }
            for v in versions
        ],
        "alias_moves": [m.__dict__ for m in history[-10:]],
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{MODEL_NAME} on {doc['tracking_uri']}")
    if champ is None:
        click.echo("  no champion yet: no version has passed every blocking check")
    else:
        click.echo(f"  champion: v{champ.version} (held-out F1 {doc['champion_f1']})")
        if stale.get("stale"):
            click.secho(
                f"  STALE since {stale['stale_since']}: trained on "
                f"{stale['departed_training_posts']} post(s) of students who withdrew consent "
                f"or were erased; retrain by {stale['retrain_deadline']}"
                + (" (OVERDUE)" if stale.get("overdue") else ""),
                fg="red",
            )
    for v in doc["versions"]:
        blocked = f"  blocked by {v['blocked_by']}" if v["blocked_by"] else ""
        click.echo(f"  v{v['version']:<4} {v['status']:<10} F1 {v['f1'] or '-':<7}{blocked}")
    for m in doc["alias_moves"]:
        click.echo(
            f"  {m['at']}  v{m['from_version'] or '-'} -> v{m['to_version']}"
            f"  by {m['by']}: {m['reason']}"
        )


@model.command("promote")
@click.argument("version")
@click.option("--reason", default="promoted by hand", show_default=True)
@click.option(
    "--force",
    is_flag=True,
    help="Also a version that is blocked, pending or stale (recorded as forced).",
)
def model_promote(version: str, reason: str, force: bool) -> None:
    """Give `champion` to VERSION (recorded with who and why)."""
    from spanda_assets.lib.model import registry

    try:
        move = registry.move_champion(
            registry.client(), version, registry.whoami(), reason, force=force
        )
    except SpandaError as exc:
        fail(exc)
    click.echo(
        f"champion: v{move.from_version or '-'} -> v{move.to_version} (recorded at {move.at})"
    )


@model.command("rollback")
@click.option("--reason", default="rolled back by hand", show_default=True)
@click.option("--force", is_flag=True, help="Also to a blocked or stale earlier champion.")
def model_rollback(reason: str, force: bool) -> None:
    """Give `champion` back to the champion before the current one (a second rollback
    goes further back)."""
    from spanda_assets.lib.model import registry

    try:
        move = registry.rollback(registry.client(), registry.whoami(), reason, force=force)
    except SpandaError as exc:
        fail(exc)
    click.echo(f"champion: v{move.from_version} -> v{move.to_version} (recorded at {move.at})")


@model.command("lineage")
@click.option("--version", default=None, help="A model version (default: the champion).")
def model_lineage(version: str | None) -> None:
    """Rebuild a version's training frame from its Iceberg snapshot and check its digest."""
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.model import registry
    from spanda_assets.lib.model.frame import read_frame

    try:
        c = registry.client()
        mv = c.get_model_version(registry.MODEL_NAME, version) if version else registry.champion(c)
        if mv is None:
            raise registry.RegistryError("no champion yet: name a version with --version")
        snap = mv.tags.get("spanda.labeled_snapshot_id")
        logged = mv.tags.get("spanda.frame_digest")
        if not snap or not logged:
            raise registry.RegistryError(f"v{mv.version} carries no lineage tags")
        frame = read_frame(open_catalog(CatalogConfig.from_env()), int(snap))
    except SpandaError as exc:
        fail(exc)
    assert mv is not None
    click.echo(f"{registry.MODEL_NAME} v{mv.version}")
    for tag in (
        "spanda.labeled_snapshot_id",
        "spanda.validated_snapshot_id",
        "spanda.label_config_hash",
        "spanda.code_version",
        "spanda.frame_rows",
    ):
        click.echo(f"  {tag.removeprefix('spanda.'):<22} {mv.tags.get(tag, '')}")
    click.echo(f"  {'logged digest':<22} {logged}")
    click.echo(f"  {'rebuilt digest':<22} {frame.digest}  ({frame.table.num_rows} rows)")
    if frame.digest != logged:
        click.secho("  MISMATCH: the snapshot no longer gives the frame the model saw", fg="red")
        raise SystemExit(1)
    click.echo("  match: the training frame is reproduced exactly")
