"""One sensor turns check results, failed runs and freshness misses into alerts.

Every tick it reads the latest evaluation of every asset check, the runs that
finished since the last tick, and every asset's freshness state, and compares
them with the states it saw before (kept in its cursor). Only a transition
alerts: a check that starts failing alerts once, however many ticks or runs
see it fail again, and its first pass afterwards sends a "resolved". A run
that failed only because a blocking check failed is covered by that check's
alert and sends no second one. Deliveries that fail stay in the cursor's
outbox, are retried with backoff, and show in the UI (tick log, and an
observation on the asset concerned) until they go through.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.lib import alerts as lib
from spanda_assets.resources import AlertDestinationsResource

CHECK_FAILED_ERROR = "DagsterAssetCheckFailedError"
# Metadata that is presentation, not a failing value.
_SKIPPED_METADATA = {"quality_history", "column_policy", "what_now"}


@dataclass
class AlertState:
    checks: dict[str, str] = field(default_factory=dict)  # check key -> passed|failed|warn
    freshness: dict[str, str] = field(default_factory=dict)  # asset key -> PASS|WARN|FAIL|...
    runs: dict[str, str] = field(default_factory=dict)  # asset (or job:<name>) -> failed
    runs_after: float | None = None  # update time of the newest run already looked at
    outbox: list[lib.Delivery] = field(default_factory=list)

    @classmethod
    def from_cursor(cls, cursor: str | None) -> AlertState:
        if not cursor:
            return cls()
        doc = json.loads(cursor)
        return cls(
            checks=doc.get("checks", {}),
            freshness=doc.get("freshness", {}),
            runs=doc.get("runs", {}),
            runs_after=doc.get("runs_after"),
            outbox=[lib.Delivery.from_json(d) for d in doc.get("outbox", [])],
        )

    def to_cursor(self) -> str:
        return json.dumps(
            {
                "checks": self.checks,
                "freshness": self.freshness,
                "runs": self.runs,
                "runs_after": self.runs_after,
                "outbox": [d.to_json() for d in self.outbox],
            },
            sort_keys=True,
        )


def _ui() -> str:
    return os.environ.get(lib.ENV_UI_URL, "http://127.0.0.1:3000").rstrip("/")


def _plain(metadata: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (metadata or {}).items():
        if k in _SKIPPED_METADATA or k.startswith("dagster/"):
            continue
        value = getattr(v, "value", v)
        out[k] = value if isinstance(value, int | float | str | bool | list | dict) else str(value)
    return out


def check_alerts(
    instance: dg.DagsterInstance, check_keys: list[Any], state: AlertState
) -> list[lib.Alert]:
    # Dagster's own module, not public API: imported at the tick, so a move in an upgrade
    # fails this sensor's ticks (and alerts on them), not the whole code location's load.
    from dagster._core.storage.asset_check_execution_record import (
        AssetCheckExecutionRecordStatus,
    )

    out: list[lib.Alert] = []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    for key, record in latest.items():
        if record.status == AssetCheckExecutionRecordStatus.PLANNED or record.event is None:
            continue  # still running, or never evaluated
        evaluation = record.event.dagster_event.asset_check_evaluation_data  # type: ignore[union-attr]
        severity = evaluation.severity.value
        current = "passed" if evaluation.passed else ("failed" if severity == "ERROR" else "warn")
        name = key.to_user_string()
        change = lib.transition(state.checks.get(name), current, failing_states=("failed", "warn"))
        state.checks[name] = current
        if change is None:
            continue
        asset = key.asset_key.to_user_string()
        verdict = "failed" if change == lib.FAILED else "passes again"
        out.append(
            lib.Alert(
                id=f"check:{name}:{record.id}:{change}",
                kind="check",
                status=change,
                severity=severity,
                asset=asset,
                check=key.name,
                summary=f"Check {key.name} on {asset} {verdict} (run {record.run_id[:8]}).",
                failing=_plain(evaluation.metadata) if change == lib.FAILED else {},
                run_id=record.run_id,
                ui_url=f"{_ui()}/assets/{'/'.join(key.asset_key.path)}?view=checks",
                at=lib.now_iso(),
            )
        )
    return out


def _run_targets(run: Any) -> list[str]:
    """What a run's outcome is about: each asset it materializes, or its job."""
    keys = sorted(k.to_user_string() for k in (run.asset_selection or ()))
    return keys or [f"job:{run.job_name}"]


def _failed_only_by_checks(instance: dg.DagsterInstance, run_id: str) -> bool:
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    names = {
        e.dagster_event.step_failure_data.error.cls_name
        for e in failures
        if e.dagster_event is not None
        and e.dagster_event.step_failure_data is not None
        and e.dagster_event.step_failure_data.error is not None
    }
    return bool(names) and names == {CHECK_FAILED_ERROR}


def run_alerts(instance: dg.DagsterInstance, state: AlertState, now: float) -> list[lib.Alert]:
    if state.runs_after is None:  # first tick: history is not news
        state.runs_after = now
        return []
    out: list[lib.Alert] = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS],
            updated_after=dt.datetime.fromtimestamp(state.runs_after, dt.UTC),
        ),
        ascending=True,
    )
    for record in records:
        run = record.dagster_run
        updated = record.update_timestamp.timestamp()
        state.runs_after = max(state.runs_after, updated)
        targets = _run_targets(run)
        failed = run.status == dg.DagsterRunStatus.FAILURE
        if failed and _failed_only_by_checks(instance, run.run_id):
            continue  # the failed check alerts
        if failed:
            news = [t for t in targets if state.runs.get(t) != "failed"]
            state.runs.update(dict.fromkeys(targets, "failed"))
            change = lib.FAILED if news else None
        else:
            news = [t for t in targets if state.runs.pop(t, None) == "failed"]
            change = lib.RESOLVED if news else None
        if change is None:
            continue
        what = ", ".join(news)
        out.append(
            lib.Alert(
                id=f"run:{run.run_id}:{change}",
                kind="run",
                status=change,
                severity="ERROR",
                asset=news[0] if len(news) == 1 and not news[0].startswith("job:") else None,
                check=None,
                summary=(
                    f"Run {run.run_id[:8]} failed ({what})."
                    if failed
                    else f"Run {run.run_id[:8]} succeeded after a failure ({what})."
                ),
                run_id=run.run_id,
                ui_url=f"{_ui()}/runs/{run.run_id}",
                at=lib.now_iso(),
            )
        )
    return out


def freshness_alerts(
    instance: dg.DagsterInstance, asset_keys: list[dg.AssetKey], state: AlertState
) -> list[lib.Alert]:
    out: list[lib.Alert] = []
    for key, record in instance.get_freshness_state_records(asset_keys).items():
        name = key.to_user_string()
        current = record.freshness_state.value
        change = lib.transition(state.freshness.get(name), current, failing_states=("FAIL",))
        state.freshness[name] = current
        if change is None:
            continue
        out.append(
            lib.Alert(
                id=f"freshness:{name}:{record.updated_at.timestamp():.0f}:{change}",
                kind="freshness",
                status=change,
                severity="ERROR",
                asset=name,
                check=None,
                summary=(
                    f"{name} missed its freshness window: its data is older than its policy allows."
                    if change == lib.FAILED
                    else f"{name} is fresh again."
                ),
                ui_url=f"{_ui()}/assets/{'/'.join(key.path)}",
                at=lib.now_iso(),
            )
        )
    return out


@dg.sensor(
    name="spanda_alerts",
    minimum_interval_seconds=settings.sensor_interval(30),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Notifies the configured destinations (SPANDA_ALERT_WEBHOOK_URL, "
        "SPANDA_ALERT_SLACK_WEBHOOK_URL, SPANDA_ALERT_SMTP_*) when an asset check starts "
        "failing or passes again, a run fails for another reason, or an asset misses its "
        "freshness window. One alert per transition; undelivered alerts are retried with "
        "backoff and shown here and on the asset until delivered."
    ),
)
def spanda_alerts(
    context: dg.SensorEvaluationContext, alerts: AlertDestinationsResource
) -> dg.SensorResult:
    state = AlertState.from_cursor(context.cursor)
    graph = context.repository_def.asset_graph  # type: ignore[union-attr]
    instance = context.instance
    now = time.time()
    new = [
        *check_alerts(instance, list(graph.asset_check_keys), state),
        *run_alerts(instance, state, now),
        *freshness_alerts(instance, list(graph.get_all_asset_keys()), state),
    ]
    destinations = {d.name: d for d in alerts.destinations()}
    for alert in new:
        context.log.info(f"alert {alert.status}: {alert.summary}")
        state.outbox.extend(lib.Delivery(alert, name) for name in destinations)
    result = lib.flush(state.outbox, destinations, now=now)
    state.outbox = result.outbox
    events: list[dg.AssetObservation] = []
    for item in result.failed:
        context.log.error(
            f"alert {item.alert.id} not delivered to {item.destination} after "
            f"{item.attempts} tick(s): {item.last_error}; kept and retried"
        )
        if item.attempts == 1 and item.alert.asset and item.alert.kind != "run":
            events.append(
                dg.AssetObservation(
                    asset_key=dg.AssetKey.from_user_string(item.alert.asset),
                    metadata={
                        "undelivered_alert": item.alert.title(),
                        "destination": item.destination,
                        "delivery_error": item.last_error,
                        "alert_id": item.alert.id,
                    },
                )
            )
    for item in result.delivered:
        context.log.info(f"alert {item.alert.id} delivered to {item.destination}")
    return dg.SensorResult(asset_events=events, cursor=state.to_cursor())
