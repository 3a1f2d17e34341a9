"""Where Spanda keeps its embedded state, and which environment variables steer it.

Every environment variable the platform reads is named here once, so the README,
the resources and the CLI agree on one spelling.  Nothing in this module opens a
connection: it only resolves paths and URLs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
import tempfile
from pathlib import Path

from croniter import croniter

from spanda_assets.lib.errors import ConfigError

ENV_HOME = "SPANDA_HOME"
ENV_SOURCE_URL = "SPANDA_SOURCE_URL"
ENV_SOURCES_FILE = "SPANDA_SOURCES_FILE"
ENV_CATALOG_URI = "SPANDA_CATALOG_URI"
ENV_CATALOG_TYPE = "SPANDA_CATALOG_TYPE"
ENV_CATALOG_NAME = "SPANDA_CATALOG_NAME"
ENV_WAREHOUSE = "SPANDA_WAREHOUSE"
ENV_S3_ENDPOINT = "SPANDA_S3_ENDPOINT"
ENV_S3_REGION = "SPANDA_S3_REGION"
ENV_S3_ACCESS_KEY_ID = "SPANDA_S3_ACCESS_KEY_ID"
ENV_S3_SECRET_ACCESS_KEY = "SPANDA_S3_SECRET_ACCESS_KEY"
ENV_REST_TOKEN = "SPANDA_CATALOG_TOKEN"
ENV_REST_CREDENTIAL = "SPANDA_CATALOG_CREDENTIAL"
ENV_REST_OAUTH2_SERVER_URI = "SPANDA_CATALOG_OAUTH2_SERVER_URI"
ENV_REST_SCOPE = "SPANDA_CATALOG_SCOPE"
ENV_READER = "SPANDA_READER"
ENV_BATCH_ROWS = "SPANDA_BATCH_ROWS"
ENV_COMMIT_ROWS = "SPANDA_COMMIT_ROWS"
ENV_RETENTION_DAYS = "SPANDA_RETENTION_DAYS"
ENV_SENSOR_INTERVAL = "SPANDA_SENSOR_INTERVAL_SECONDS"
ENV_ORPHAN_GRACE_MINUTES = "SPANDA_ORPHAN_GRACE_MINUTES"
ENV_DEMO = "SPANDA_DEMO"
ENV_INSTITUTION_DID = "SPANDA_INSTITUTION_DID"
ENV_INSTITUTION_KEY = "SPANDA_INSTITUTION_KEY"
ENV_INSTITUTION_KEY_FILE = "SPANDA_INSTITUTION_KEY_FILE"
ENV_SUBJECT_DIDS = "SPANDA_SUBJECT_DIDS"
ENV_STATUS_LIST_URL = "SPANDA_STATUS_LIST_URL"
ENV_LABELING_FUNCTIONS_FILE = "SPANDA_LABELING_FUNCTIONS_FILE"
ENV_MIN_LABELS_PER_CLASS = "SPANDA_MIN_LABELS_PER_CLASS"
ENV_TRAIN_CRON = "SPANDA_TRAIN_CRON"
ENV_PUBLISH_CRON = "SPANDA_PUBLISH_CRON"
DEFAULT_TRAIN_CRON = "0 3 * * *"  # nightly training, UTC
DEFAULT_PUBLISH_CRON = "0 5 * * *"  # daily publication, after training
DEFAULT_MIN_LABELS_PER_CLASS = 20

DEFAULT_BATCH_ROWS = 100_000
DEFAULT_COMMIT_ROWS = 500_000
DEFAULT_RETENTION_DAYS = 7
DEFAULT_ORPHAN_GRACE_MINUTES = 60


def spanda_home() -> Path:
    """The directory holding all embedded state (`.spanda/` in the working directory)."""
    return Path(os.environ.get(ENV_HOME) or ".spanda").resolve()


def ensure_home() -> Path:
    home = spanda_home()
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_source_url() -> str:
    """The demo operational database: SQLite under SPANDA_HOME."""
    return f"sqlite:///{spanda_home() / 'operational.db'}"


def source_url() -> str:
    return os.environ.get(ENV_SOURCE_URL) or default_source_url()


def default_catalog_uri() -> str:
    return f"sqlite:///{spanda_home() / 'catalog.db'}"


def default_warehouse() -> str:
    return (spanda_home() / "warehouse").as_uri()


def ground_truth_dir() -> Path:
    """Where the seed generator writes what it knows (PII spans, urgency labels).

    Deliberately outside the operational database: tests and benchmarks read it,
    the pipeline never does.
    """
    return spanda_home() / "ground_truth"


def annotations_path() -> Path:
    """The embedded annotation store: one JSON file in Label Studio's export format."""
    return spanda_home() / "labels" / "annotations.json"


def cron(variable: str, default: str) -> str:
    """A cron schedule (UTC) from `variable`, or `default`; read when the code location
    loads, so a site moves its nightly jobs (and a test keeps them out of its way)."""
    value = (os.environ.get(variable) or "").strip() or default
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ConfigError(
            f"{variable}={value!r} is not a five-field cron schedule "
            "(minute hour day-of-month month day-of-week), e.g. '0 3 * * *'"
        )
    return value


def demo_mode() -> bool:
    """SPANDA_DEMO=1 (set by `spanda demo`): the embedded demo, which may generate its own
    secrets under SPANDA_HOME and derive the data subjects' keys. Production never does."""
    return os.environ.get(ENV_DEMO, "").lower() in ("1", "true", "yes")


def create_private_file(path: Path, data: bytes) -> bool:
    """Create `path` holding `data`, readable by its owner only; False if it already exists.

    The bytes go into a temporary file that `mkstemp` opens with O_CREAT|O_EXCL and
    mode 0600, so no byte is ever readable by anyone else; the complete file is then
    hard-linked to `path`, which fails if `path` exists. There is no moment at which
    `path` exists half-written, and of several processes creating it at once exactly
    one succeeds: the others get False and read the winner's file.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def local_secret(path: Path) -> str:
    """A random 256-bit hex secret kept in `path` (mode 0600), created on first use.

    Only for the embedded demo (pseudonym key, demo wallet, demo institution key).
    Concurrent first uses agree on one secret (`create_private_file`).
    """
    if not path.exists():
        create_private_file(path, secrets.token_hex(32).encode("ascii"))
    return path.read_text().strip()


def status_list_url() -> str:
    """Where the institution publishes its consent revocation list (a W3C Bitstring Status
    List credential): the URL every receipt names. By default a JSON file under SPANDA_HOME,
    which the platform keeps up to date; set an https URL where you serve the list."""
    return (
        os.environ.get(ENV_STATUS_LIST_URL)
        or (spanda_home() / "status" / "consent-revocation.json").as_uri()
    )


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from exc
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    return value


def retention() -> dt.timedelta:
    """How long snapshots past bronze are kept before the maintenance job expires them."""
    return dt.timedelta(days=env_int(ENV_RETENTION_DAYS, DEFAULT_RETENTION_DAYS))


def orphan_grace() -> dt.timedelta:
    """How old a file no snapshot references must be before it is deleted: younger ones may
    belong to a write still in flight."""
    return dt.timedelta(minutes=env_int(ENV_ORPHAN_GRACE_MINUTES, DEFAULT_ORPHAN_GRACE_MINUTES))


def min_labels_per_class() -> int:
    """Labels of each class the labeled set should hold (it warns below) and training
    needs (it refuses below). 0 switches the minimum off."""
    raw = os.environ.get(ENV_MIN_LABELS_PER_CLASS, "")
    return int(raw) if raw.strip().isdigit() else DEFAULT_MIN_LABELS_PER_CLASS


def sensor_interval(default: int) -> int:
    """Seconds between ticks of the source and alert sensors (SPANDA_SENSOR_INTERVAL_SECONDS
    overrides each sensor's own default)."""
    return env_int(ENV_SENSOR_INTERVAL, default)
