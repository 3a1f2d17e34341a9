"""Alerts: one per state transition, delivered to a webhook, Slack and e-mail on 127.0.0.1,
retried with backoff, never dropped, never carrying a secret."""

from __future__ import annotations

import json
from typing import Any

import dagster as dg
import pytest

from spanda_assets.defs.alerts.sensors import AlertState, spanda_alerts
from spanda_assets.lib import alerts as lib
from spanda_assets.resources import AlertDestinationsResource
from spanda_assets_tests.receivers import http_receiver, smtp_receiver


def _alert(**kw: Any) -> lib.Alert:
    base = {
        "id": "check:x:1:failed",
        "kind": "check",
        "status": lib.FAILED,
        "severity": "ERROR",
        "asset": "silver/forum_posts",
        "check": "residual_pii",
        "summary": "Check residual_pii on silver/forum_posts failed.",
        "failing": {"found_email": 2, "example_keys": {"EMAIL": ["ps_1"]}},
        "run_id": "r1",
        "ui_url": "http://127.0.0.1:3000/assets/silver/forum_posts?view=checks",
    }
    return lib.Alert(**{**base, **kw})


def test_transitions_alert_once_and_resolve_once() -> None:
    assert lib.transition(None, "passed") is None  # a healthy start says nothing
    assert lib.transition(None, "failed") == lib.FAILED
    assert lib.transition("passed", "failed") == lib.FAILED
    assert lib.transition("failed", "failed") is None
    assert lib.transition("failed", "passed") == lib.RESOLVED
    assert lib.transition("passed", "passed") is None
    bad = ("failed", "warn")
    assert lib.transition("failed", "warn", failing_states=bad) is None
    assert lib.transition("warn", "passed", failing_states=bad) == lib.RESOLVED


def test_all_three_destinations_receive_the_alert() -> None:
    with http_receiver() as hook, http_receiver() as slack, smtp_receiver() as mail:
        env = {
            lib.ENV_WEBHOOK: hook.url,
            lib.ENV_SLACK: slack.url,
            lib.ENV_SMTP_HOST: mail.host,
            lib.ENV_SMTP_PORT: str(mail.port),
            lib.ENV_SMTP_FROM: "spanda@localhost",
            lib.ENV_SMTP_TO: "a@localhost, b@localhost",
        }
        destinations = {d.name: d for d in lib.destinations_from_env(env)}
        outbox = [lib.Delivery(_alert(), name) for name in destinations]
        result = lib.flush(outbox, destinations, pause=lambda s: None)
        assert len(result.delivered) == 3 and result.outbox == []
        (body,) = hook.bodies()
        assert body["asset"] == "silver/forum_posts" and body["check"] == "residual_pii"
        assert body["severity"] == "ERROR" and body["status"] == "failed"
        assert body["failing"]["found_email"] == 2 and body["run_id"] == "r1"
        assert body["ui_url"].endswith("view=checks")
        (posted,) = slack.bodies()
        assert "residual_pii" in posted["text"] and posted["blocks"][0]["type"] == "section"
        assert "<http://127.0.0.1:3000" in posted["blocks"][0]["text"]["text"]
        (message,) = mail.messages
        assert message["To"] == "a@localhost, b@localhost"
        assert message["Subject"] == "[Spanda ERROR] check: silver/forum_posts / residual_pii"
        assert "found_email" in message.get_payload()


def test_undeliverable_alerts_are_kept_with_backoff_and_never_name_the_secret() -> None:
    secret_url = "http://127.0.0.1:9/hooks/T000/B000/secret-token-value"
    destinations = {d.name: d for d in lib.destinations_from_env({lib.ENV_SLACK: secret_url})}
    pauses: list[float] = []
    outbox = [lib.Delivery(_alert(), "slack")]
    first = lib.flush(outbox, destinations, now=1000.0, pause=pauses.append)
    assert first.delivered == [] and len(first.outbox) == 1
    assert pauses == [0.2, 0.4]  # three tries now, with a short backoff
    (item,) = first.outbox
    assert item.attempts == 1 and item.next_try == 1000.0 + 30
    assert "secret-token-value" not in item.last_error and "slack" in item.last_error
    # not due yet: not tried
    waiting = lib.flush(first.outbox, destinations, now=1010.0, pause=pauses.append)
    assert waiting.waiting == first.outbox and len(pauses) == 2
    # due again: tried, still failing, the wait doubles
    again = lib.flush(first.outbox, destinations, now=1031.0, pause=pauses.append)
    assert again.outbox[0].attempts == 2 and again.outbox[0].next_try == 1031.0 + 60
    assert lib.backoff(20) == lib.MAX_BACKOFF_S
    # it survives a round trip through the sensor cursor
    state = AlertState(outbox=again.outbox)
    restored = AlertState.from_cursor(state.to_cursor())
    assert restored.outbox[0].alert == _alert() and restored.outbox[0].attempts == 2
    assert "secret-token-value" not in state.to_cursor()


def test_smtp_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="SPANDA_ALERT_SMTP_TO"):
        lib.destinations_from_env({lib.ENV_SMTP_HOST: "127.0.0.1"})


# ----------------------------------------------------------------------------- the sensor

AUDITED = dg.AssetKey(["silver", "toy"])


@dg.asset(
    key=AUDITED,
    check_specs=[dg.AssetCheckSpec("residual_pii", asset=AUDITED, blocking=True)],
    output_required=False,
)
def toy(context) -> Any:  # type: ignore[no-untyped-def]  # (Dagster reads the annotation)
    passed = context.run.tags.get("leak") != "1"
    yield dg.AssetCheckResult(
        check_name="residual_pii", passed=passed, metadata={"found_email": 0 if passed else 3}
    )
    if passed:
        yield dg.MaterializeResult()


@dg.asset
def broken() -> None:
    raise ValueError("the source is down")


DEFS = dg.Definitions(
    assets=[toy, broken],
    sensors=[spanda_alerts],
    resources={"alerts": AlertDestinationsResource()},
)


def _tick(instance: dg.DagsterInstance, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        repository_def=DEFS.get_repository_def(),
        resources={"alerts": AlertDestinationsResource()},
    )
    result = spanda_alerts(context)
    assert isinstance(result, dg.SensorResult)
    return result


def test_the_sensor_alerts_per_transition(monkeypatch: pytest.MonkeyPatch) -> None:
    with http_receiver() as hook, dg.instance_for_test() as instance:
        monkeypatch.setenv(lib.ENV_WEBHOOK, hook.url)
        repo = DEFS.get_repository_def()
        cursor = _tick(instance, None).cursor  # first tick: nothing to say
        assert hook.bodies() == []

        def run(leak: bool) -> None:
            dg.materialize(
                [toy], instance=instance, raise_on_error=False, tags={"leak": "1" if leak else "0"}
            )

        run(leak=True)  # the audit fails: the run fails too, only the check alerts
        cursor = _tick(instance, cursor).cursor
        (alert,) = hook.bodies()
        assert (alert["status"], alert["asset"], alert["check"]) == (
            "failed",
            "silver/toy",
            "residual_pii",
        )
        assert alert["failing"]["found_email"] == 3
        run(leak=True)  # the same failure again
        cursor = _tick(instance, cursor).cursor
        cursor = _tick(instance, cursor).cursor
        assert len(hook.bodies()) == 1
        run(leak=False)
        cursor = _tick(instance, cursor).cursor
        assert [a["status"] for a in hook.bodies()] == ["failed", "resolved"]

        # a run that fails for another reason alerts as a run
        job = repo.get_implicit_job_def_for_assets([dg.AssetKey("broken")])
        assert job is not None
        job.execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("broken")], raise_on_error=False
        )
        cursor = _tick(instance, cursor).cursor
        assert [a["kind"] for a in hook.bodies()] == ["check", "check", "run"]

        # the receiver goes down: the alert is kept, shown on the asset, and sent later
        hook.refuse = True
        run(leak=True)
        refused = _tick(instance, cursor)
        assert len(hook.bodies()) == 3
        (shown,) = refused.asset_events
        assert shown.asset_key == AUDITED and "HTTP 503" in shown.metadata["delivery_error"].value
        state = AlertState.from_cursor(refused.cursor)
        assert len(state.outbox) == 1
        hook.refuse = False
        for item in state.outbox:
            item.next_try = 0  # the backoff has passed
        delivered = _tick(instance, state.to_cursor())
        assert json.loads(delivered.cursor or "{}")["outbox"] == []
        assert [a["status"] for a in hook.bodies()][-1] == "failed"


def test_a_destination_that_raises_anything_does_not_stop_the_others() -> None:
    """A garbled answer or a malformed URL is that destination's failure alone."""
    sent: list[str] = []

    def garbled(alert: lib.Alert) -> None:
        raise RuntimeError("BadStatusLine from a broken proxy")

    destinations = {
        "webhook": lib.Destination("webhook", garbled),
        "slack": lib.Destination("slack", lambda a: sent.append(a.id)),
    }
    outbox = [lib.Delivery(_alert(), name) for name in destinations]
    result = lib.flush(outbox, destinations, pause=lambda s: None)
    assert sent == [_alert().id] and len(result.delivered) == 1
    (kept,) = result.outbox
    assert kept.destination == "webhook" and kept.last_error == "RuntimeError"
    # a URL Python cannot even parse is a delivery error, not a crash of the sensor
    bad = {d.name: d for d in lib.destinations_from_env({lib.ENV_WEBHOOK: "not a url"})}
    assert lib.flush([lib.Delivery(_alert(), "webhook")], bad, pause=lambda s: None).failed
