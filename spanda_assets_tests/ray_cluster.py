"""A local Ray cluster (one head, loopback only) for the Ray tests and the scale benchmark.

`ray start --head --block` runs in the foreground in its own process group, with every
port it opens chosen free beforehand and bound to 127.0.0.1, and its session files in
its own temporary directory. It is stopped by signalling that process group (never
`ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from spanda_assets.definitions import defs
from spanda_assets_tests.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RayCluster:
    pid: int  # the `ray start` process, leader of the cluster's process group
    gcs_port: int
    dashboard_port: int
    client_port: int
    cpus: int
    temp_dir: Path

    @property
    def address(self) -> str:
        """What RAY_ADDRESS is set to: the head's GCS address."""
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


def _ray_bin() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the cluster's process group (`ray start --block` stops its components),
    then SIGKILL to whatever of the group is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@contextlib.contextmanager
def ray_head(
    cpus: int = 2, timeout: float = 120, env: dict[str, str] | None = None
) -> Iterator[RayCluster]:
    """A running one-node Ray cluster with `cpus` worker CPUs; stopped on exit.

    `env`: the environment of the head (and so of its workers); the caller's by default.
    """
    # A short path: Ray's Unix sockets live under it (108 bytes at most).
    temp_dir = Path(tempfile.mkdtemp(prefix="rayt", dir="/tmp"))
    ports = {
        "--port": free_port(),
        "--dashboard-port": free_port(),
        "--ray-client-server-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--metrics-export-port": free_port(),
    }
    low = min(free_port(), 64000)
    while any(low <= port <= low + 200 for port in ports.values()):
        low = min(free_port(), 64000)
    args = [
        _ray_bin(),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        f"--num-cpus={cpus}",
        "--disable-usage-stats",
        "--include-dashboard=true",
        f"--temp-dir={temp_dir}",
        # workers listen on a small range of their own
        f"--min-worker-port={low}",
        f"--max-worker-port={low + 200}",
        *[f"{flag}={port}" for flag, port in ports.items()],
    ]
    run_env = dict(env if env is not None else os.environ)
    # as in an activated venv: a step's Ray job starts with `dagster api execute_step`
    bin_dir = str(Path(sys.executable).parent)
    run_env["PATH"] = os.pathsep.join([bin_dir, run_env.get("PATH", "")])
    run_env["TMPDIR"] = str(temp_dir)  # what workers unpack (model files) goes with the cluster
    run_env.update(RAY_USAGE_STATS_ENABLED="0", RAY_DISABLE_DOCKER_CPU_WARNING="1")
    log = (temp_dir / "head.log").open("wb")
    proc = subprocess.Popen(
        args, env=run_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    cluster = RayCluster(
        pid=proc.pid,
        gcs_port=ports["--port"],
        dashboard_port=ports["--dashboard-port"],
        client_port=ports["--ray-client-server-port"],
        cpus=cpus,
        temp_dir=temp_dir,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:  # the job server (dashboard) answers last
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{cluster.dashboard_url}/api/version", timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Ray head did not start in {timeout:.0f} s:\n"
                    + (temp_dir / "head.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.3)
        wait_for_port(cluster.gcs_port, 5, proc)
        yield cluster
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def materialize_platform() -> Any:
    """The code location's `materialize_platform` job, for `dg.reconstructable`: a run
    whose steps start in other processes (Ray jobs) loads the job from here."""
    return defs().resolve_job_def("materialize_platform")
