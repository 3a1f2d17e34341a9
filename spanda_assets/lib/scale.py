"""Run a pure batch function here or on a Ray cluster: the one place that decides.

The per-row stages (de-identification, the gold row rules, model scoring) read their
input in Arrow batches and commit to Iceberg. Between the two sits a pure function
of one batch (Arrow in, Arrow out, no I/O): that is what fans out. A stage asks
`runner(label)` for a `Runner` and maps its function over its batches with
`Runner.map`; the results come back in the order of the batches, whatever ran them,
so the driver writes exactly what it would have written alone and the tables are
byte for byte the same (docs/decisions/0033). The driver keeps every Iceberg
commit: workers hold no catalog credentials and a commit stays one atomic step.

`SPANDA_EXECUTOR` picks the executor: unset (or `in_process`) maps in this process,
`ray` sends each batch to a Ray task on the cluster `RAY_ADDRESS` names (a GCS
address `host:port`, or `ray://host:10001` through the Ray client). Values shared
by every batch (the column policy and pseudonym key, the model) go to the object
store once per map. At most `window` batches are in flight, so the driver's memory
stays bounded by the window, not by the table.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")

CONNECT_TIMEOUT = 5.0  # seconds to reach the head before saying RAY_ADDRESS is wrong
# Environment the pure functions read on a worker (detector options): the driver's
# values travel with the job, so a worker detects what the driver would.
WORKER_ENV = ("SPANDA_NER", "SPANDA_NER_MODEL", "SPANDA_PHONE_REGIONS")
_lock = threading.Lock()
# The address this process's Ray driver is connected to (one connection per process).
_state: dict[str, str] = {}


@dataclass
class FanOut:
    """What a stage's fan-out did, for its run metadata."""

    executor: str = settings.EXECUTOR_IN_PROCESS
    tasks: int = 0  # batches mapped (Ray tasks when executor is "ray")
    workers: set[int] = field(default_factory=set)  # Ray worker process ids that ran them

    def metadata(self) -> dict[str, Any]:
        return {
            "executor": self.executor,
            "fanout_tasks": self.tasks,
            "fanout_workers": len(self.workers),
        }

    def add(self, other: FanOut) -> None:
        self.tasks += other.tasks
        self.workers |= other.workers
        if other.executor != settings.EXECUTOR_IN_PROCESS:
            self.executor = other.executor


def ray_address() -> str:
    """RAY_ADDRESS, required with SPANDA_EXECUTOR=ray."""
    address = (os.environ.get(settings.ENV_RAY_ADDRESS) or "").strip()
    if not address:
        raise ConfigError(
            f"{settings.ENV_EXECUTOR}=ray needs {settings.ENV_RAY_ADDRESS}: set it to the head "
            "node's GCS address (<host>:<port>, e.g. 127.0.0.1:6379 for `ray start --head`) "
            f"or to ray://<host>:10001 (Ray client), or unset {settings.ENV_EXECUTOR} to compute "
            "in process"
        )
    return address


def _host_port(address: str) -> tuple[str, int] | None:
    """The TCP endpoint an address names (None for `auto`, which Ray resolves itself)."""
    if address == "auto":
        return None
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if not parts.hostname or parts.port is None:
        raise ConfigError(
            f"{settings.ENV_RAY_ADDRESS}={address!r} is not a Ray address: expected "
            "<host>:<port> (the head's GCS port) or ray://<host>:<port> (the Ray client port)"
        )
    return parts.hostname, parts.port


def connect(address: str | None = None) -> str:
    """Connect this process to the Ray cluster (once; later calls reuse the connection).

    The head is probed first with a plain TCP connection: `ray.init` on a wrong address
    waits a long time and then fails with an error about its internals, while a person
    needs to hear which variable to fix.
    """
    address = address or ray_address()
    with _lock:
        if _state.get("address") == address:
            return address
        endpoint = _host_port(address)
        if endpoint is not None:
            try:
                socket.create_connection(endpoint, timeout=CONNECT_TIMEOUT).close()
            except OSError as exc:
                raise ConfigError(
                    f"{settings.ENV_EXECUTOR}=ray but no Ray head answers at "
                    f"{settings.ENV_RAY_ADDRESS}={address!r} ({exc.strerror or exc}): start the "
                    "cluster (`ray start --head`) or set RAY_ADDRESS to its GCS address "
                    f"<host>:<port> (or ray://<host>:10001), or unset {settings.ENV_EXECUTOR} to "
                    "compute in process"
                ) from None
        import ray  # noqa: PLC0415 - ~1 s, and only with SPANDA_EXECUTOR=ray

        if ray.is_initialized():
            ray.shutdown()  # connected elsewhere (another RAY_ADDRESS): follow the setting
        env = {k: os.environ[k] for k in WORKER_ENV if os.environ.get(k)}
        try:
            ray.init(
                address=address,
                runtime_env={"env_vars": env} if env else None,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=False,
            )
        except (ConnectionError, RuntimeError) as exc:
            raise ConfigError(
                f"{settings.ENV_EXECUTOR}=ray: cannot join the Ray cluster at "
                f"{settings.ENV_RAY_ADDRESS}={address!r}: {exc}. Check that RAY_ADDRESS is "
                "the head's GCS address (or ray://<host>:10001) and that this machine runs the "
                "same Ray and Python versions"
            ) from None
        _state["address"] = address
        return address


def disconnect() -> None:
    """Leave the Ray cluster (tests and benchmarks, before they stop their cluster)."""
    with _lock:
        if _state.pop("address", None) is not None:
            import ray  # noqa: PLC0415 - only with SPANDA_EXECUTOR=ray

            ray.shutdown()


def _call(fn: Callable[..., R], item: Any, *shared: Any) -> tuple[R, int]:
    """A Ray task's body: the stage's function, and the worker process that ran it."""
    return fn(item, *shared), os.getpid()


class Runner:
    """Maps a stage's pure batch function over its batches, in process or on Ray."""

    def __init__(
        self, label: str, executor: str = settings.EXECUTOR_IN_PROCESS, window: int = 4
    ) -> None:
        self.label = label
        self.executor = executor
        self.window = max(1, window)
        self.stats = FanOut(executor=executor)
        if executor == settings.EXECUTOR_RAY:
            connect()

    def map(self, fn: Callable[..., R], items: Iterable[Any], *shared: Any) -> Iterator[R]:
        """`fn(item, *shared)` for each item, yielded in the order of `items`.

        `fn` must be a pure function importable by the workers (a module-level
        function of spanda_assets): its result depends on its arguments only.
        """
        if self.executor != settings.EXECUTOR_RAY:
            for item in items:
                self.stats.tasks += 1
                yield fn(item, *shared)
            return
        yield from self._map_ray(fn, items, shared)

    def _map_ray(self, fn: Callable[..., R], items: Iterable[Any], shared: tuple[Any, ...]) -> Any:
        import ray  # noqa: PLC0415 - only with SPANDA_EXECUTOR=ray

        refs = [ray.put(value) for value in shared]  # once per map, not once per batch
        task = ray.remote(_call).options(name=f"spanda:{self.label}", max_retries=2)
        pending: deque[Any] = deque()

        def done() -> Any:
            result, pid = ray.get(pending.popleft())
            self.stats.workers.add(int(pid))
            return result

        for item in items:
            pending.append(task.remote(fn, item, *refs))
            self.stats.tasks += 1
            if len(pending) >= self.window:
                yield done()
        while pending:
            yield done()


def runner(label: str) -> Runner:
    """The runner SPANDA_EXECUTOR selects for a stage named `label` (e.g. silver.forum_posts).

    Fails here, before the stage reads anything, on a wrong executor name, a missing
    RAY_ADDRESS or a head that does not answer.
    """
    executor = settings.executor()
    window = 4
    if executor == settings.EXECUTOR_RAY:
        connect()
        import ray  # noqa: PLC0415 - only with SPANDA_EXECUTOR=ray

        window = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    return Runner(label, executor, window)
