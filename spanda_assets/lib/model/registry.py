"""MLflow: where runs are tracked, and who holds the `champion` alias of `post_urgency`.

The tracking URI comes from MLFLOW_TRACKING_URI (a server in production); with
nothing set, a SQLite store and an artifact directory under SPANDA_HOME/mlflow.
Credentials for a server come from MLflow's own variables
(MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN) and are never
repeated here: `redacted_uri` is what logs and metadata show.

Every move of the alias (promotion after the gates, `spanda model promote`,
`spanda model rollback`) is recorded on the registered model as a tag
`spanda.alias.<UTC time>` holding who moved it, from which version to which, and
why; `alias_history` reads them back in order. Rollback returns to the version
that held the alias before the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

MODEL_NAME = "post_urgency"
CHAMPION = "champion"
EXPERIMENT = "post_urgency"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"
ALIAS_TAG = "spanda.alias."
STATUS_TAG = "spanda.status"  # champion | candidate | blocked | retired
BLOCKED_BY_TAG = "spanda.blocked_by"
STALE_TAG = "spanda.stale_since"
STALE_POSTS_TAG = "spanda.stale_posts"
HISTORY_KEPT = 50


class RegistryError(SpandaError):
    """MLflow cannot be reached, or the registry does not hold what was asked for."""


def mlflow_home() -> Any:
    return settings.spanda_home() / "mlflow"


def tracking_uri() -> str:
    return os.environ.get(ENV_TRACKING_URI) or f"sqlite:///{mlflow_home() / 'mlflow.db'}"


def redacted_uri(uri: str | None = None) -> str:
    """The tracking URI without user or password, for logs, metadata and errors."""
    uri = uri or tracking_uri()
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    return uri.split("?", 1)[0]  # a query string may carry a token


def _quiet() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The SQLite store's migrations print on first use; the model's logs say what matters.
    import logging

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def _credentials_to_env(uri: str) -> str:
    """A tracking URI with `user:password@` is split: the credentials go to MLflow's own
    MLFLOW_TRACKING_USERNAME/PASSWORD (unless set), the URI keeps the host. MLflow puts
    the URI it calls into its error messages; without this, they would carry the
    password into logs and the UI."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    if parts.username:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username))
    if parts.password:
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def client() -> MlflowClient:
    """A client on the configured tracking URI (also made mlflow's current one)."""
    _quiet()
    import mlflow

    configured = ENV_TRACKING_URI in os.environ
    uri = _credentials_to_env(tracking_uri())
    if uri.startswith("sqlite:///"):
        mlflow_home().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if not configured:
        # mlflow copies the URI into the environment, where every later call (and every
        # child process) would take it for the user's setting and keep using this
        # SPANDA_HOME's store after SPANDA_HOME changed. The default stays a default.
        os.environ.pop(ENV_TRACKING_URI, None)
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(c: MlflowClient) -> str:
    """The experiment's id, created on first use (its artifacts under SPANDA_HOME when the
    store is the embedded one; a server decides its own artifact location)."""
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return str(exp.experiment_id)
    location = None
    if tracking_uri().startswith("sqlite:///"):
        location = (mlflow_home() / "artifacts").as_uri()
    try:
        return str(c.create_experiment(EXPERIMENT, artifact_location=location))
    except Exception:  # created concurrently by another run
        exp = c.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return str(exp.experiment_id)


_USERINFO = re.compile(r"//[^/@\s]+@")
_QUERY_SECRET = re.compile(r"(?i)([?&](token|key|secret|password|sig)[^=]*=)[^&\s]+")


def scrub(text: str) -> str:
    """`text` without URL credentials or secret-looking query values."""
    return _QUERY_SECRET.sub(r"\1***", _USERINFO.sub("//", text))


def wrap(action: str, exc: Exception) -> RegistryError:
    """A registry failure naming the server (without credentials) and what to do."""
    first = str(exc).splitlines()[0][:300] if str(exc) else ""
    return RegistryError(
        f"MLflow at {redacted_uri()} failed to {action}: {type(exc).__name__}: "
        f"{scrub(first)}. Check that the tracking server is up and {ENV_TRACKING_URI} "
        "points at it"
    )


def champion(c: MlflowClient) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(MODEL_NAME, CHAMPION)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise wrap("read the champion alias", exc) from exc


@dataclass(frozen=True)
class AliasMove:
    at: str
    from_version: str | None
    to_version: str
    by: str
    reason: str


def alias_history(c: MlflowClient) -> list[AliasMove]:
    try:
        model = c.get_registered_model(MODEL_NAME)
    except Exception:
        return []
    moves = []
    for key, value in model.tags.items():
        if key.startswith(ALIAS_TAG):
            d = json.loads(value)
            moves.append(
                AliasMove(key[len(ALIAS_TAG) :], d.get("from"), d["to"], d["by"], d["reason"])
            )
    return sorted(moves, key=lambda m: m.at)


def move_champion(
    c: MlflowClient, version: str, by: str, reason: str, force: bool = False
) -> AliasMove:
    """Point `champion` at `version` and record the move (the record first: a crash
    between the two leaves a record of a move that did not happen, which `status`
    shows, never a move without a record).

    A version that did not pass its gates (blocked), was never judged (pending) or
    trained on a withdrawn student's posts (stale) is refused unless `force`: the
    alias promises a model that passed every blocking check.
    """
    current = champion(c)
    try:
        mv = c.get_model_version(MODEL_NAME, version)
    except Exception as exc:
        raise RegistryError(f"{MODEL_NAME} has no version {version}") from exc
    status = mv.tags.get(STATUS_TAG, "pending")
    refusal = None
    if status in ("blocked", "pending", "blocked_before_training"):
        why = mv.tags.get(BLOCKED_BY_TAG, "")
        refusal = f"v{version} is {status}" + (f" (by {why})" if why else "")
    elif mv.tags.get(STALE_TAG):
        refusal = f"v{version} is stale: it trained on posts of students who withdrew consent"
    if refusal and not force:
        raise RegistryError(
            f"{refusal}; the champion must have passed every blocking check. Pass --force "
            "to move the alias anyway (the move is recorded as forced)"
        )
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if refusal:
        reason = f"FORCED ({refusal}): {reason}"
    move = AliasMove(at, current.version if current else None, str(version), by, reason)
    c.set_registered_model_tag(
        MODEL_NAME,
        ALIAS_TAG + at,
        json.dumps(
            {"from": move.from_version, "to": move.to_version, "by": by, "reason": reason[:500]}
        ),
    )
    c.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
    if current is not None and current.version != str(version):
        c.set_model_version_tag(MODEL_NAME, current.version, STATUS_TAG, "retired")
    c.set_model_version_tag(MODEL_NAME, str(version), STATUS_TAG, CHAMPION)
    _trim_history(c)
    return move


def _trim_history(c: MlflowClient) -> None:
    moves = alias_history(c)
    for old in moves[: max(0, len(moves) - HISTORY_KEPT)]:
        c.delete_registered_model_tag(MODEL_NAME, ALIAS_TAG + old.at)


def rollback(c: MlflowClient, by: str, reason: str, force: bool = False) -> AliasMove:
    """Give the alias back to the champion before the current one.

    Walks the recorded moves back from the current champion, skipping rollbacks
    themselves (a second rollback goes further back, it does not undo the first)
    and versions that may not hold the alias (blocked, stale) unless `force`.
    """
    current = champion(c)
    if current is None:
        raise RegistryError(f"{MODEL_NAME} has no champion: nothing to roll back")
    earlier: list[str] = []
    for move in reversed(alias_history(c)):
        if move.reason.startswith("rollback"):
            continue
        if move.from_version and move.from_version not in earlier:
            earlier.append(move.from_version)
    for version in earlier:
        if version == current.version:
            continue
        mv = c.get_model_version(MODEL_NAME, version)
        if not force and (
            mv.tags.get(STATUS_TAG) in ("blocked", "pending") or mv.tags.get(STALE_TAG)
        ):
            continue
        return move_champion(
            c, version, by, f"rollback from v{current.version}: {reason}", force=force
        )
    raise RegistryError(
        f"no earlier champion of {MODEL_NAME} that may hold the alias is recorded before "
        f"v{current.version}; use `spanda model promote VERSION`"
    )


def whoami() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
