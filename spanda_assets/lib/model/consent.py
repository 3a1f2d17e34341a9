"""Consent reaches the model: a champion trained on posts of a student who has since
withdrawn `model_training` consent (or was erased) is stale until a model trained
without them takes the alias.

The posts a version trained on are the pseudonymous keys logged with its run
(`training_keys.json`; keys only, no text). `departed` is the labeled set's own
decision of which posts left for good (lib/labeling/departed.py), so the model and
the labeled set agree on who left. The first time staleness is seen it is stamped
on the version (`spanda.stale_since`); the retraining deadline counts from there
(SPANDA_MODEL_RETRAIN_HOURS, default 24).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spanda_assets.lib.model import registry
from spanda_assets.lib.model.train import TRAINING_KEYS

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from spanda_assets.lib.labeling.departed import Departed

ENV_RETRAIN_HOURS = "SPANDA_MODEL_RETRAIN_HOURS"
DEFAULT_RETRAIN_HOURS = 24


def retrain_deadline() -> dt.timedelta:
    raw = os.environ.get(ENV_RETRAIN_HOURS, "")
    try:
        hours = float(raw) if raw else DEFAULT_RETRAIN_HOURS
    except ValueError:
        from spanda_assets.lib.errors import ConfigError

        raise ConfigError(f"{ENV_RETRAIN_HOURS}={raw!r}: expected a number of hours") from None
    return dt.timedelta(hours=hours)


@dataclass(frozen=True)
class Staleness:
    version: str | None
    stale: bool
    departed_posts: int = 0
    since: dt.datetime | None = None
    deadline: dt.datetime | None = None

    @property
    def overdue(self) -> bool:
        return self.stale and self.deadline is not None and dt.datetime.now(dt.UTC) > self.deadline

    def metadata(self) -> dict[str, Any]:
        return {
            "champion_version": self.version or "",
            "stale": self.stale,
            "departed_training_posts": self.departed_posts,
            "stale_since": self.since.isoformat() if self.since else "",
            "retrain_deadline": self.deadline.isoformat() if self.deadline else "",
            "overdue": self.overdue,
        }


def training_keys(c: MlflowClient, run_id: str) -> set[str]:
    """The post keys a run trained on, cached under SPANDA_HOME/mlflow/cache by run id."""
    cache = registry.mlflow_home() / "cache" / f"{run_id}.json"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        path = c.download_artifacts(run_id, TRAINING_KEYS, str(cache.parent / f".{run_id}"))
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(Path(path).read_bytes())
        tmp.replace(cache)
    return set(json.loads(cache.read_text()))


def champion_staleness(c: MlflowClient, departed: Departed, champ: Any = None) -> Staleness:
    """Is the champion (or `champ`, the champion a caller already read) trained on a
    departed student's posts? Stamps `stale_since` once."""
    champ = champ if champ is not None else registry.champion(c)
    if champ is None:
        return Staleness(None, False)
    run_id = champ.tags.get("spanda.run_id") or champ.run_id
    gone = departed(training_keys(c, run_id)) if run_id else set()
    if not gone:
        return Staleness(champ.version, False)
    since_raw = champ.tags.get(registry.STALE_TAG)
    if since_raw:
        since = dt.datetime.fromisoformat(since_raw)
    else:
        since = dt.datetime.now(dt.UTC)
        c.set_model_version_tag(
            registry.MODEL_NAME, champ.version, registry.STALE_TAG, since.isoformat()
        )
        c.set_model_version_tag(
            registry.MODEL_NAME, champ.version, registry.STALE_POSTS_TAG, str(len(gone))
        )
    return Staleness(champ.version, True, len(gone), since, since + retrain_deadline())
