"""`spanda serve` on a free loopback port for a benchmark, stopped afterwards.

The download and search benchmarks time the real server over HTTP; both start it here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx


@contextlib.contextmanager
def spanda_serve(env: dict[str, str], timeout: float = 60) -> Iterator[tuple[int, str]]:
    """(pid, base URL) of a `spanda serve` answering /health, with `env` (its
    SPANDA_PUBLIC_URL set to where it listens); its process group is stopped on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "spanda"), "serve", "--port", str(port)],
        env=env | {"SPANDA_PUBLIC_URL": base},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"spanda serve did not start in {timeout:.0f} s")
            time.sleep(0.2)
        yield proc.pid, base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
