"""A real Apache Superset for the BI tests, started on 127.0.0.1 and stopped afterwards.

Superset runs from its own virtualenv (`make superset`, pinned by
requirements-superset.lock): it pins SQLAlchemy < 2 and pandas < 2.2. Each server gets
a fresh SUPERSET_HOME in a temporary directory (its SQLite metadata database), a copy of
Spanda's superset_config.py as SUPERSET_CONFIG_PATH and a random secret key; it is set
up as an operator would (`superset db upgrade`, `fab create-admin`, `superset init`)
and served by gunicorn in its own process group, which is killed by its PID at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spanda_assets_tests.servers import (
    PROJECT_ROOT,
    answers_200,
    free_port,
    spawned,
    wait_until_answers,
)

SUPERSET_VENV = PROJECT_ROOT / ".venv-superset"
SUPERSET_CONFIG = PROJECT_ROOT / "spanda_assets" / "lib" / "bi" / "superset_config.py"
SUPERSET_ADMIN = "admin"
SUPERSET_PASSWORD = "spanda-test-pw"  # a throwaway password for a throwaway server


@dataclass
class SupersetServer:
    url: str
    username: str
    password: str
    home: Path
    log: Path
    setup_seconds: float


def _env(root: Path, config: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERSET_", "FLASK_"))}
    env.update(
        SUPERSET_HOME=str(root / "home"),
        SUPERSET_CONFIG_PATH=str(config),
        SUPERSET_SECRET_KEY=secrets.token_urlsafe(32),
        HOME=str(root),
        PYTHONUNBUFFERED="1",
        # Superset's own switch: no HTTPS redirects or CSP on the loopback test server
        TALISMAN_ENABLED="false",
    )
    return env


def _setup(bin_dir: Path, env: dict[str, str], root: Path) -> None:
    """The metadata database, the admin user, the default roles and permissions."""
    superset = str(bin_dir / "superset")
    admin = ["--username", SUPERSET_ADMIN, "--firstname", "Spanda", "--lastname", "Admin"]
    admin += ["--email", "admin@spanda.test", "--password", SUPERSET_PASSWORD]
    steps = [
        [superset, "db", "upgrade"],
        [superset, "fab", "create-admin", *admin],
        [superset, "init"],
    ]
    for step in steps:
        done = subprocess.run(
            step, env=env, cwd=root, capture_output=True, text=True, timeout=600, check=False
        )
        if done.returncode != 0:
            shown = " ".join(step[:3])
            raise RuntimeError(f"`{shown}` failed ({done.returncode}):\n{done.stderr[-3000:]}")


@contextlib.contextmanager
def superset_server() -> Iterator[SupersetServer]:
    """A real Superset on 127.0.0.1 with a known admin, in a fresh home."""
    bin_dir = SUPERSET_VENV / "bin"
    if not (bin_dir / "superset").exists():
        raise RuntimeError(
            f"{bin_dir / 'superset'} is missing: run `make superset` (make test does)"
        )
    root = Path(tempfile.mkdtemp(prefix="spanda-superset-"))
    (root / "home").mkdir()
    config = root / "superset_config.py"
    shutil.copyfile(SUPERSET_CONFIG, config)
    env = _env(root, config)
    started = time.monotonic()
    log = root / "superset.log"
    try:
        _setup(bin_dir, env, root)
        # the port is taken after the minutes-long setup, right before it is bound
        port = free_port()
        cmd = [
            str(bin_dir / "gunicorn"),
            "--workers", "1",
            "--threads", "4",
            "--timeout", "120",
            "--bind", f"127.0.0.1:{port}",
            "superset.app:create_app()",
        ]  # fmt: skip
        with spawned(cmd, env, root, log) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until_answers(
                f"Superset on {url}", answers_200(f"{url}/health"), proc, log, timeout=180
            )
            yield SupersetServer(
                url, SUPERSET_ADMIN, SUPERSET_PASSWORD, root, log, time.monotonic() - started
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
