"""Alerts: what changed state, and its delivery to webhooks, Slack and e-mail.

Open-source Dagster sends no notification when an asset check fails. The
alert sensor (defs/alerts/) turns state transitions into `Alert`s: a check
that starts failing, a run that fails for another reason than a failed check,
an asset that misses its freshness window, and each one's recovery. This
module holds no Dagster code: it decides transitions from plain states and
delivers alerts.

Delivery is at least once. An alert that cannot be delivered stays in the
outbox (kept in the sensor's cursor) and is retried with exponential backoff;
it is never dropped. Secrets (webhook URLs, the SMTP password) come from the
environment and never appear in a log line or in the alert itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import smtplib
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

log = logging.getLogger(__name__)

ENV_WEBHOOK = "SPANDA_ALERT_WEBHOOK_URL"
ENV_SLACK = "SPANDA_ALERT_SLACK_WEBHOOK_URL"
ENV_SMTP_HOST = "SPANDA_ALERT_SMTP_HOST"
ENV_SMTP_PORT = "SPANDA_ALERT_SMTP_PORT"
ENV_SMTP_FROM = "SPANDA_ALERT_SMTP_FROM"
ENV_SMTP_TO = "SPANDA_ALERT_SMTP_TO"
ENV_SMTP_USER = "SPANDA_ALERT_SMTP_USER"
ENV_SMTP_PASSWORD = "SPANDA_ALERT_SMTP_PASSWORD"
ENV_UI_URL = "SPANDA_UI_URL"

FAILED = "failed"
RESOLVED = "resolved"
TIMEOUT_S = 5.0
MAX_BACKOFF_S = 3600.0


@dataclass(frozen=True)
class Alert:
    """One state transition, as every destination receives it."""

    id: str  # unique per transition: the dedupe key of at-least-once delivery
    kind: str  # "check", "run" or "freshness"
    status: str  # "failed" or "resolved"
    severity: str  # "ERROR" or "WARN"
    asset: str | None
    check: str | None
    summary: str
    failing: Mapping[str, Any] = field(default_factory=dict)  # counts and keys, never values
    run_id: str | None = None
    ui_url: str | None = None
    at: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Alert:
        return cls(**doc)

    def title(self) -> str:
        what = f"{self.asset} / {self.check}" if self.check else (self.asset or "run")
        icon = "RESOLVED" if self.status == RESOLVED else self.severity
        return f"[Spanda {icon}] {self.kind}: {what}"


# --------------------------------------------------------------------------- transitions


def transition(
    previous: str | None, current: str | None, *, failing_states: Iterable[str] = (FAILED,)
) -> str | None:
    """FAILED when a state becomes failing, RESOLVED when a failing state recovers, else None.

    A state seen for the first time alerts only if it is failing: a healthy
    platform that starts its sensor sends nothing.
    """
    bad = set(failing_states)
    if current is None or current == previous:
        return None
    if current in bad and previous not in bad:
        return FAILED
    if previous in bad and current not in bad:
        return RESOLVED
    return None


# --------------------------------------------------------------------------- destinations


class DeliveryError(Exception):
    """A destination refused or could not be reached; the message names no secret."""


@dataclass(frozen=True)
class Destination:
    name: str  # shown in logs and the UI: "webhook", "slack", "email"
    send: Callable[[Alert], None] = field(repr=False, compare=False)


def _post_json(url: str, doc: Mapping[str, Any], label: str) -> None:
    data = json.dumps(doc, default=str).encode()
    try:
        req = urllib.request.Request(
            url, data=data, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            if resp.status >= 300:
                raise DeliveryError(f"{label} answered HTTP {resp.status}")
    except urllib.error.HTTPError as exc:
        raise DeliveryError(f"{label} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{label} unreachable ({type(reason).__name__})") from None
    except Exception as exc:  # a malformed URL, a garbled answer: never the URL itself
        raise DeliveryError(f"{label} failed ({type(exc).__name__})") from None


def webhook(url: str) -> Destination:
    """A JSON POST of the alert as it is (asset, check, severity, status, failing values,
    run id, UI link)."""
    return Destination("webhook", lambda a: _post_json(url, a.to_json(), "webhook"))


def slack_payload(alert: Alert) -> dict[str, Any]:
    """Slack's incoming-webhook format: a text fallback and blocks."""
    lines = [f"*{alert.title()}*", alert.summary]
    if alert.failing:
        shown = json.dumps(alert.failing, default=str)[:1500]
        lines.append(f"```{shown}```")
    if alert.ui_url:
        lines.append(f"<{alert.ui_url}|Open in Dagster>")
    return {
        "text": f"{alert.title()}: {alert.summary}",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def slack(url: str) -> Destination:
    return Destination("slack", lambda a: _post_json(url, slack_payload(a), "slack webhook"))


def email(
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    user: str | None = None,
    password: str | None = None,
) -> Destination:
    def send(alert: Alert) -> None:
        msg = EmailMessage()
        msg["Subject"] = alert.title()
        msg["From"] = sender
        msg["To"] = ", ".join(recipients)
        body = [alert.summary, ""]
        if alert.failing:
            body += ["Failing:", json.dumps(alert.failing, indent=2, default=str), ""]
        if alert.run_id:
            body.append(f"Run: {alert.run_id}")
        if alert.ui_url:
            body.append(f"Dagster UI: {alert.ui_url}")
        msg.set_content("\n".join(body))
        msg["X-Spanda-Alert-Id"] = alert.id
        try:
            with smtplib.SMTP(host, port, timeout=TIMEOUT_S) as smtp:
                if user and password:
                    smtp.starttls()
                    smtp.login(user, password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"SMTP server unreachable or refused ({type(exc).__name__})"
            ) from None

    return Destination(f"email to {len(recipients)} recipient(s)", send)


def destinations_from_env(env: Mapping[str, str] | None = None) -> list[Destination]:
    """Every destination the environment configures (none: alerts are only logged)."""
    env = os.environ if env is None else env
    out: list[Destination] = []
    if env.get(ENV_WEBHOOK):
        out.append(webhook(env[ENV_WEBHOOK]))
    if env.get(ENV_SLACK):
        out.append(slack(env[ENV_SLACK]))
    if env.get(ENV_SMTP_HOST):
        to = [t.strip() for t in env.get(ENV_SMTP_TO, "").split(",") if t.strip()]
        if not to or not env.get(ENV_SMTP_FROM):
            raise ValueError(
                f"{ENV_SMTP_HOST} is set: set {ENV_SMTP_FROM} and {ENV_SMTP_TO} (comma-separated) "
                "too"
            )
        port = int(env.get(ENV_SMTP_PORT) or 25)
        out.append(
            email(
                env[ENV_SMTP_HOST],
                port,
                env[ENV_SMTP_FROM],
                to,
                env.get(ENV_SMTP_USER),
                env.get(ENV_SMTP_PASSWORD),
            )
        )
    return out


# --------------------------------------------------------------------------- outbox


@dataclass
class Delivery:
    """One alert still owed to one destination."""

    alert: Alert
    destination: str
    attempts: int = 0
    next_try: float = 0.0  # epoch seconds
    last_error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert.to_json(),
            "destination": self.destination,
            "attempts": self.attempts,
            "next_try": self.next_try,
            "last_error": self.last_error,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Delivery:
        return cls(
            alert=Alert.from_json(doc["alert"]),
            destination=doc["destination"],
            attempts=int(doc.get("attempts", 0)),
            next_try=float(doc.get("next_try", 0.0)),
            last_error=str(doc.get("last_error", "")),
        )


def backoff(attempts: int, base: float = 30.0) -> float:
    """Seconds to wait after `attempts` failed tries: 30 s, 60 s, 2 min, ... at most 1 h."""
    return float(min(MAX_BACKOFF_S, base * 2 ** max(0, attempts - 1)))


@dataclass
class FlushResult:
    delivered: list[Delivery] = field(default_factory=list)
    failed: list[Delivery] = field(default_factory=list)  # tried now, still owed
    waiting: list[Delivery] = field(default_factory=list)  # not due yet

    @property
    def outbox(self) -> list[Delivery]:
        return self.failed + self.waiting


def flush(
    outbox: list[Delivery],
    destinations: Mapping[str, Destination],
    *,
    now: float | None = None,
    tries_now: int = 3,
    pause: Callable[[float], None] = time.sleep,
) -> FlushResult:
    """Try every delivery that is due: up to `tries_now` times with a short backoff, then
    leave it in the outbox for a later tick with a longer one."""
    now = time.time() if now is None else now
    result = FlushResult()
    for item in outbox:
        dest = destinations.get(item.destination)
        if item.next_try > now:
            result.waiting.append(item)
            continue
        if dest is None:  # the destination was removed from the configuration: keep it
            item.last_error = f"{item.destination} is not configured any more"
            item.attempts += 1
            item.next_try = now + backoff(item.attempts)
            result.failed.append(item)
            continue
        for attempt in range(tries_now):
            try:
                dest.send(item.alert)
            except Exception as exc:  # one destination's fault never stops the others
                item.last_error = str(exc) if isinstance(exc, DeliveryError) else type(exc).__name__
                if attempt + 1 < tries_now:
                    pause(0.2 * 2**attempt)
                continue
            result.delivered.append(item)
            break
        else:
            item.attempts += 1
            item.next_try = now + backoff(item.attempts)
            result.failed.append(item)
            log.warning(
                "alert %s to %s not delivered (%s); retry in %.0f s",
                item.alert.id,
                item.destination,
                item.last_error,
                item.next_try - now,
            )
    return result


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
