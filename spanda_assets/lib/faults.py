"""Crash injection for the crash-safety tests.

`SPANDA_FAULT=<point>:<n>` kills the process with SIGKILL the n-th time the
extract passes `<point>` (before_commit, after_commit, after_batch_commit). A
SIGKILL runs no cleanup, exactly like an OOM kill or a pulled plug, so the test
proves that whatever state is left, the next run recovers from it. Unset, this
costs one dictionary lookup per commit.
"""

from __future__ import annotations

import os
import signal

ENV_FAULT = "SPANDA_FAULT"
_hits: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get(ENV_FAULT)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
