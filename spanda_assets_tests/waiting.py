"""Waiting on the real daemon: poll until something holds, or fail with the daemon's log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from spanda_assets.defs.extract.sensors import IN_FLIGHT


def wait_until(what: str, predicate: Callable[[], Any], timeout: float, log: Path) -> Any:
    """The first truthy value of `predicate`, polled every 3 s; after `timeout` seconds an
    AssertionError naming `what`, with the end of the daemon's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(3)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}\n--- daemon log ---\n{tail}"
    )


def settled(log: Path, timeout: float, quiet_s: float = 20.0) -> None:
    """Wait until no run is in flight and none starts for `quiet_s` (over a sensor tick):
    a table's main read before that may still move with a run that is finishing."""
    with dg.DagsterInstance.get() as instance:

        def quiet() -> bool:
            runs = len(instance.get_run_records())
            if instance.get_run_records(filters=IN_FLIGHT):
                return False
            time.sleep(quiet_s)
            return (
                not instance.get_run_records(filters=IN_FLIGHT)
                and len(instance.get_run_records()) == runs
            )

        wait_until("the platform to settle", quiet, timeout, log)
