"""Label Studio's webhook, received: the push alternative to the `annotations_changed` sensor.

Label Studio POSTs a JSON event for each annotation created, updated or deleted.
The receiver checks a shared secret in a header (configured on the webhook in
Label Studio, `SPANDA_LABELS_WEBHOOK_SECRET` here; compared in constant time, never
echoed), and for an annotation event launches the `pull_annotations` job through
the Dagster webserver's GraphQL API. Other events are acknowledged and ignored.

Nothing is read from the event but its action: the job reads the annotations from
Label Studio itself, after its own watermark, so a forged or replayed event can at
most cause one run that finds nothing new, and a lost event is caught by the next
one or by the sensor.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from dagster_graphql import DagsterGraphQLClient

log = logging.getLogger(__name__)

ENV_SECRET = "SPANDA_LABELS_WEBHOOK_SECRET"
ENV_DAGSTER_URL = "SPANDA_DAGSTER_URL"
SECRET_HEADER = "X-Spanda-Webhook-Secret"
PATH = "/label-studio"
JOB = "pull_annotations"
ANNOTATION_ACTIONS = frozenset(
    {
        "ANNOTATION_CREATED",
        "ANNOTATIONS_CREATED",
        "ANNOTATION_UPDATED",
        "ANNOTATIONS_DELETED",
        "TASKS_DELETED",
    }
)
MAX_BODY = 1 << 20  # Label Studio's events are small; anything larger is refused

Launcher = Callable[[str], str]  # action -> run id


def graphql_launcher(dagster_url: str) -> Launcher:
    """Launch `pull_annotations` on the webserver at `dagster_url` (e.g. the UI's URL)."""
    url = urlparse(dagster_url)
    client = DagsterGraphQLClient(
        url.hostname or "127.0.0.1",
        port_number=url.port,
        use_https=url.scheme == "https",
        path_prefix=url.path.rstrip("/"),
        timeout=30,
    )

    def launch(action: str) -> str:
        return client.submit_job_execution(JOB, tags={"spanda/trigger": f"webhook:{action}"})

    return launch


def make_server(host: str, port: int, secret: str, launch: Launcher) -> ThreadingHTTPServer:
    """An HTTP server for the webhook (not started). Refuses to run without a secret."""
    if not secret:
        raise ValueError(f"{ENV_SECRET} is not set: the webhook needs a shared secret")
    expected = secret.encode()

    class Handler(BaseHTTPRequestHandler):
        server_version = "spanda-labels-webhook"
        timeout = 10  # seconds a client may take to send its request: slow ones are cut off

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

        def _answer(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if urlparse(self.path).path != PATH:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"POST events to {PATH}"})
                return
            given = (self.headers.get(SECRET_HEADER) or "").encode()
            if not hmac.compare_digest(given, expected):
                self._answer(
                    HTTPStatus.UNAUTHORIZED, {"error": f"missing or wrong {SECRET_HEADER}"}
                )
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": f"Content-Length 0..{MAX_BODY}"})
                return
            try:
                event = json.loads(self.rfile.read(length) or b"{}")
                action = str(event.get("action", ""))
            except (ValueError, AttributeError):
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "the body is not a JSON object"})
                return
            if action not in ANNOTATION_ACTIONS:
                self._answer(HTTPStatus.OK, {"ignored": True})  # nothing of the event echoed
                return
            try:
                run_id = launch(action)
            except Exception as exc:  # the webserver is down or refused: Label Studio retries
                log.warning("could not launch %s: %s", JOB, type(exc).__name__)
                self._answer(HTTPStatus.SERVICE_UNAVAILABLE, {"error": f"could not launch {JOB}"})
                return
            self._answer(HTTPStatus.ACCEPTED, {"job": JOB, "run_id": run_id})

    return ThreadingHTTPServer((host, port), Handler)


def serve(host: str, port: int) -> None:
    """Run the receiver until interrupted, from the environment's settings."""
    secret = os.environ.get(ENV_SECRET, "")
    dagster_url = os.environ.get(ENV_DAGSTER_URL) or "http://127.0.0.1:3000"
    server = make_server(host, port, secret, graphql_launcher(dagster_url))
    try:
        server.serve_forever()
    finally:
        server.server_close()
