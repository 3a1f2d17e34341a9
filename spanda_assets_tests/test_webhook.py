"""The Label Studio webhook receiver's own behaviour: the shared secret, what it ignores,
malformed requests, a webserver that cannot launch. Its launch through the real Dagster
webserver is tested in test_ui."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest

from spanda_assets.api.webhook import SECRET_HEADER, make_server
from spanda_assets_tests.servers import free_port

SECRET = "unit-test-secret-42"


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    launched: list[str] = []

    def launch(action: str) -> str:
        if action == "ANNOTATIONS_DELETED":
            raise ConnectionError("webserver down")
        launched.append(action)
        return f"run-{len(launched)}"

    server = make_server("127.0.0.1", free_port(), SECRET, launch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", launched
    finally:
        server.shutdown()
        server.server_close()


def test_only_a_signed_annotation_event_launches_a_pull(receiver: tuple[str, list[str]]) -> None:
    base, launched = receiver
    url = f"{base}/label-studio"
    event = {"action": "ANNOTATION_CREATED"}
    assert httpx.post(url, json=event).status_code == 401
    assert httpx.post(url, json=event, headers={SECRET_HEADER: "wrong"}).status_code == 401
    assert (
        httpx.post(f"{base}/other", json=event, headers={SECRET_HEADER: SECRET}).status_code == 404
    )
    ignored = httpx.post(url, json={"action": "PROJECT_UPDATED"}, headers={SECRET_HEADER: SECRET})
    assert ignored.status_code == 200 and "PROJECT_UPDATED" not in ignored.text
    assert launched == []
    ok = httpx.post(url, json=event, headers={SECRET_HEADER: SECRET})
    assert ok.status_code == 202 and ok.json() == {"job": "pull_annotations", "run_id": "run-1"}
    assert launched == ["ANNOTATION_CREATED"]


def test_a_webserver_that_cannot_launch_answers_503_for_label_studio_to_retry(
    receiver: tuple[str, list[str]],
) -> None:
    base, _ = receiver
    answer = httpx.post(
        f"{base}/label-studio",
        json={"action": "ANNOTATIONS_DELETED"},
        headers={SECRET_HEADER: SECRET},
    )
    assert answer.status_code == 503 and "down" not in answer.text


@pytest.mark.parametrize("length", ["-5", "lots", str(2 << 20)])
def test_malformed_lengths_and_bodies_are_refused(
    receiver: tuple[str, list[str]], length: str
) -> None:
    base, launched = receiver
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(
            f"POST /label-studio HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n"
            f"Content-Length: {length}\r\n\r\n{{}}".encode()
        )
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.0 400") or reply.startswith("HTTP/1.1 400"), reply
    not_json = httpx.post(f"{base}/label-studio", content=b"[1,", headers={SECRET_HEADER: SECRET})
    assert not_json.status_code == 400
    assert launched == []


def test_no_secret_no_receiver() -> None:
    with pytest.raises(ValueError, match="SPANDA_LABELS_WEBHOOK_SECRET"):
        make_server("127.0.0.1", free_port(), "", lambda action: "")
