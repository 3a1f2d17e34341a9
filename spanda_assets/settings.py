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
import textwrap
from dataclasses import dataclass
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
ENV_EXECUTOR = "SPANDA_EXECUTOR"
ENV_RAY_ADDRESS = "RAY_ADDRESS"
EXECUTOR_IN_PROCESS = "in_process"
EXECUTOR_RAY = "ray"
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


def executor() -> str:
    """Where the per-row stages compute: "in_process" (unset, the default) or "ray"
    (SPANDA_EXECUTOR=ray, on the cluster RAY_ADDRESS names). A misspelt name is refused:
    silently computing in process would hide that the cluster is not used."""
    value = (os.environ.get(ENV_EXECUTOR) or "").strip().lower().replace("-", "_")
    if value in ("", EXECUTOR_IN_PROCESS):
        return EXECUTOR_IN_PROCESS
    if value == EXECUTOR_RAY:
        return EXECUTOR_RAY
    raise ConfigError(
        f"{ENV_EXECUTOR}={os.environ.get(ENV_EXECUTOR)!r} is not an executor: set it to "
        f"'{EXECUTOR_RAY}' (with {ENV_RAY_ADDRESS}=<head>:<gcs port> or ray://<head>:10001) "
        f"to compute on a Ray cluster, or unset it (or '{EXECUTOR_IN_PROCESS}') to compute here"
    )


# --- The registry of every environment variable -----------------------------------------
#
# One declared list, so that the README's Configuration table, docker/.env.example and
# docker/compose.yaml cannot drift from what the code reads: all three are generated from
# or checked against VARIABLES (spanda_assets_tests/test_docker_stack.py scans the source
# for environment reads and fails naming any variable missing here).

REQUIRED_IN_PRODUCTION = "required in production"


@dataclass(frozen=True)
class Variable:
    """One environment variable: what it means, what applies when it is unset, and what
    the one-host stack (docker/) does with it.

    `default` is Markdown for the docs; a default that is one literal in backticks is
    also what `.env.example` shows, commented out. `placeholder` (not None) makes the
    `.env.example` line active: a value the operator must replace (`change-me`, or empty
    where no placeholder could pass the code's own check). `stack` is the value
    docker/compose.yaml gives the Spanda services (service addresses, mounted files);
    those are left out of `.env.example`. `reader` says who reads it: `spanda` (this
    package), `dagster` (docker/dagster.yaml), `mlflow` (MLflow's client) or `compose`
    (docker/compose.yaml and the services it starts).
    """

    name: str
    group: str
    meaning: str
    default: str = "–"
    required: bool = False
    secret: bool = False
    placeholder: str | None = None
    stack: str | None = None
    reader: str = "spanda"

    def shown_default(self) -> str:
        if self.required:
            return REQUIRED_IN_PRODUCTION + ("" if self.default == "–" else f"; {self.default}")
        return self.default

    def literal_default(self) -> str:
        """The default as a value to write after `NAME=`, or "" when it is not one literal."""
        d = self.default
        # `$SPANDA_HOME/...` is a description: written after NAME= it would be taken literally
        if d.startswith("`") and d.endswith("`") and d.count("`") == 2 and "$" not in d:
            return d[1:-1]
        return ""


G_SOURCES = "Source and embedded state"
G_LAKEHOUSE = "Lakehouse (Iceberg catalog, warehouse, S3)"
G_PRIVACY = "Privacy and consent"
G_SUBMISSIONS = "Submissions"
G_AUTOMATION = "Automation and alerts"
G_LABELING = "Labeling"
G_MODEL = "Model"
G_PUBLISH = "Publication, API and access"
G_SCALE = "Scale-out (Ray)"
G_BI = "BI (Superset)"
G_DAGSTER = "Dagster instance"
G_STACK = "One-host stack (docker/compose.yaml only)"
G_TESTING = "Testing"
GROUPS = (
    G_SOURCES,
    G_LAKEHOUSE,
    G_PRIVACY,
    G_SUBMISSIONS,
    G_AUTOMATION,
    G_LABELING,
    G_MODEL,
    G_PUBLISH,
    G_SCALE,
    G_BI,
    G_DAGSTER,
    G_STACK,
    G_TESTING,
)

_V = Variable
VARIABLES: tuple[Variable, ...] = (
    # Source and embedded state
    _V(
        ENV_HOME,
        G_SOURCES,
        "embedded state: demo DB, catalog, warehouse, `DAGSTER_HOME`, ground truth",
        "`./.spanda`",
        stack="/opt/spanda/state",
    ),
    _V(
        ENV_SOURCE_URL,
        G_SOURCES,
        "SQLAlchemy URL of the operational DB (`mssql+pymssql://`, `postgresql+psycopg://`, `sqlite:///`)",
        "`sqlite:///$SPANDA_HOME/operational.db`",
        required=True,
        secret=True,
        stack="mssql+pymssql://sa:${MSSQL_SA_PASSWORD}@sqlserver:1433/spanda",
    ),
    _V(
        ENV_SOURCES_FILE,
        G_SOURCES,
        "the source-table declarations",
        "packaged `config/sources.yaml`",
    ),
    _V(
        ENV_READER,
        G_SOURCES,
        "`connectorx`, `sqlalchemy`, or `auto` (connectorx for SQLite/PostgreSQL)",
        "`auto`",
    ),
    _V(
        ENV_BATCH_ROWS,
        G_SOURCES,
        "rows per Arrow batch read from the source",
        f"`{DEFAULT_BATCH_ROWS}`",
    ),
    _V(
        ENV_COMMIT_ROWS,
        G_SOURCES,
        "rows per Iceberg commit (memory bound and crash-recovery granularity)",
        f"`{DEFAULT_COMMIT_ROWS}`",
    ),
    # Lakehouse
    _V(
        ENV_CATALOG_URI,
        G_LAKEHOUSE,
        "Iceberg SQL catalog (SQLite or `postgresql+psycopg://`), "
        "or `http(s)://` for a REST catalog",
        "`sqlite:///$SPANDA_HOME/catalog.db`",
        required=True,
        stack="http://nessie:19120/iceberg",
    ),
    _V(ENV_CATALOG_TYPE, G_LAKEHOUSE, "force the catalog kind", "`sql`, or `rest` for http URIs"),
    _V(ENV_CATALOG_NAME, G_LAKEHOUSE, "catalog name (shown in errors)", "`spanda`"),
    _V(ENV_REST_TOKEN, G_LAKEHOUSE, "bearer token for a REST catalog", secret=True),
    _V(
        ENV_REST_CREDENTIAL,
        G_LAKEHOUSE,
        "OAuth2 client credentials `CLIENT_ID:SECRET` for a REST catalog (instead of a token)",
        secret=True,
    ),
    _V(
        ENV_REST_OAUTH2_SERVER_URI,
        G_LAKEHOUSE,
        "the OAuth2 token endpoint",
        "the catalog's `/v1/oauth/tokens`",
    ),
    _V(ENV_REST_SCOPE, G_LAKEHOUSE, "the OAuth2 scope", "`catalog`"),
    _V(
        ENV_WAREHOUSE,
        G_LAKEHOUSE,
        "warehouse location: local path or `s3://bucket/prefix` (for REST: the warehouse name)",
        "`file://$SPANDA_HOME/warehouse`",
        required=True,
        stack="warehouse",
    ),
    _V(
        ENV_S3_ENDPOINT,
        G_LAKEHOUSE,
        "S3-compatible endpoint (MinIO), path-style addressing",
        "AWS",
        stack="http://minio:9000",
    ),
    _V(ENV_S3_REGION, G_LAKEHOUSE, "S3 region", stack="us-east-1"),
    _V(ENV_S3_ACCESS_KEY_ID, G_LAKEHOUSE, "S3 access key id", stack="${MINIO_ROOT_USER}"),
    _V(
        ENV_S3_SECRET_ACCESS_KEY,
        G_LAKEHOUSE,
        "S3 secret access key",
        secret=True,
        stack="${MINIO_ROOT_PASSWORD}",
    ),
    _V(
        ENV_RETENTION_DAYS,
        G_LAKEHOUSE,
        "snapshots past bronze older than this are expired nightly, with their files",
        f"`{DEFAULT_RETENTION_DAYS}`",
    ),
    _V(
        ENV_ORPHAN_GRACE_MINUTES,
        G_LAKEHOUSE,
        "files no snapshot references are deleted only when older (a younger one may be a write "
        "in flight)",
        f"`{DEFAULT_ORPHAN_GRACE_MINUTES}`",
    ),
    # Privacy and consent
    _V(
        "SPANDA_PSEUDONYM_KEY",
        G_PRIVACY,
        "secret key of the keyed pseudonyms: 64 or more hex characters (256 random bits, "
        "`python -c 'import secrets; print(secrets.token_hex(32))'`), anything else is refused; "
        "never logged. Unset on a SPANDA_HOME that `spanda demo` set up, its demo key is used "
        "(with a warning) so a daemon started later keeps the same pseudonyms",
        required=True,
        secret=True,
        placeholder="",
    ),
    _V(
        ENV_DEMO,
        G_PRIVACY,
        "demo mode: generated pseudonym and institution keys under `$SPANDA_HOME/secrets` "
        "(mode 0600), and the demo wallet that derives students' keys under "
        "`$SPANDA_HOME/wallet`; outside demo mode the wallet refuses to open",
        "unset; `spanda demo` sets `1`",
    ),
    _V(
        ENV_SUBJECT_DIDS,
        G_PRIVACY,
        "CSV file (`sourced_id,did`) of each student's `did:key` from their own wallet: all "
        "`bronze/data_subjects` registers, since production holds public keys only. A student "
        "missing from it is not registered, and their consent events are quarantined",
        required=True,
        stack="/opt/spanda/secrets/subject_dids.csv",
    ),
    _V(
        ENV_INSTITUTION_KEY,
        G_PRIVACY,
        "the institution's Ed25519 signing key as a value: 64 hex characters (what `spanda "
        "consent keygen` writes) or a PKCS #8 PEM; signs consent receipts and the revocation "
        "list; never logged. Set this or `SPANDA_INSTITUTION_KEY_FILE` to issue receipts",
        secret=True,
    ),
    _V(
        ENV_INSTITUTION_KEY_FILE,
        G_PRIVACY,
        "the institution's signing key as a file (same formats as `SPANDA_INSTITUTION_KEY`)",
        required=True,
        stack="/opt/spanda/secrets/institution.key",
    ),
    _V(
        ENV_INSTITUTION_DID,
        G_PRIVACY,
        "the trust anchor of `spanda consent verify`: receipts and status lists from any other "
        "issuer are rejected. A verifier needs only this, not the key. If both are set and the "
        "key is not this DID's, the key is refused",
        "the DID of the institution key",
        required=True,
        placeholder="",
    ),
    _V(
        ENV_STATUS_LIST_URL,
        G_PRIVACY,
        "the URL of the revocation list (`statusListCredential`) that receipts name. A `file:` "
        "URL is written by the platform; for an `https` URL, serve what `spanda consent "
        "status-list` prints",
        "`file://$SPANDA_HOME/status/consent-revocation.json`",
    ),
    _V(
        "SPANDA_IDENTIFIER_PATTERNS",
        G_PRIVACY,
        "YAML file of the institution's own identifier formats (student numbers, badge ids): "
        "the residual scan looks for all, the scrubber removes those marked `scrub: true`",
    ),
    _V(
        "SPANDA_PHONE_REGIONS",
        G_PRIVACY,
        "comma-separated ISO 3166 regions whose national phone formats the scrubber recognizes",
        "`US,GB,DE,FR,IN`",
    ),
    _V(
        "SPANDA_NER",
        G_PRIVACY,
        "`presidio` adds Presidio's spaCy name detector to the scrubber (the pipeline must be "
        "installed as a package); unset or `off`: no NER",
        "off",
    ),
    _V(
        "SPANDA_NER_MODEL",
        G_PRIVACY,
        "the spaCy pipeline `SPANDA_NER=presidio` loads",
        "`en_core_web_lg`",
    ),
    # Submissions
    _V(
        "SPANDA_INBOX",
        G_SUBMISSIONS,
        "submissions inbox: a folder or `s3://bucket/prefix?endpoint_override=…`",
        "`$SPANDA_HOME/inbox`",
    ),
    _V(
        "SPANDA_VALIDATOR_CONFIG",
        G_SUBMISSIONS,
        "the steward's validator config (YAML: `rules`, `ignore`, `limits`); a submission's own "
        "`.spanda-validator.yaml` may only make the rules stricter",
    ),
    # Automation and alerts
    _V(
        ENV_SENSOR_INTERVAL,
        G_AUTOMATION,
        "how often the source and alert sensors tick",
        "60 (source sensor), 30 (alerts)",
    ),
    _V(
        ENV_TRAIN_CRON,
        G_AUTOMATION,
        "when the model trains (UTC, five-field cron), if new labels arrived",
        f"`{DEFAULT_TRAIN_CRON}`",
    ),
    _V(
        ENV_PUBLISH_CRON,
        G_AUTOMATION,
        "when declared datasets get a new version (UTC), if their data changed",
        f"`{DEFAULT_PUBLISH_CRON}`",
    ),
    _V("SPANDA_ALERT_WEBHOOK_URL", G_AUTOMATION, "JSON POST of every alert", secret=True),
    _V("SPANDA_ALERT_SLACK_WEBHOOK_URL", G_AUTOMATION, "Slack incoming webhook", secret=True),
    _V("SPANDA_ALERT_SMTP_HOST", G_AUTOMATION, "SMTP server of e-mail alerts (on when set)"),
    _V("SPANDA_ALERT_SMTP_PORT", G_AUTOMATION, "its port", "`25`"),
    _V("SPANDA_ALERT_SMTP_FROM", G_AUTOMATION, "sender of e-mail alerts"),
    _V("SPANDA_ALERT_SMTP_TO", G_AUTOMATION, "recipients of e-mail alerts, comma-separated"),
    _V("SPANDA_ALERT_SMTP_USER", G_AUTOMATION, "SMTP login (over STARTTLS)"),
    _V("SPANDA_ALERT_SMTP_PASSWORD", G_AUTOMATION, "SMTP password", secret=True),
    _V(
        "SPANDA_UI_URL",
        G_AUTOMATION,
        "Dagster UI address used in alert links",
        "`http://127.0.0.1:3000`",
    ),
    # Labeling
    _V(
        "LABEL_STUDIO_URL",
        G_LABELING,
        "Label Studio server of the labeled set; see docs/labeling.md",
        "the local annotation store `$SPANDA_HOME/labels/annotations.json`",
        stack="http://label-studio:8080",
    ),
    _V(
        "LABEL_STUDIO_API_KEY",
        G_LABELING,
        "Label Studio legacy token or personal access token; the stack's Label Studio starts "
        "with it as its admin's legacy token (at most 40 characters)",
        secret=True,
        placeholder="change-me-label-studio-token",
    ),
    _V(
        "LABEL_STUDIO_PROJECT",
        G_LABELING,
        "the Label Studio project's title (created when missing)",
        "`Spanda: does this post need an instructor today?`",
    ),
    _V("SPANDA_LABEL_BATCH", G_LABELING, "annotation tasks pushed per run", "`200`"),
    _V(
        ENV_MIN_LABELS_PER_CLASS,
        G_LABELING,
        "below it, the labeled set warns and training refuses it (pre-train gate `class_balance`)",
        f"`{DEFAULT_MIN_LABELS_PER_CLASS}`",
    ),
    _V(
        ENV_LABELING_FUNCTIONS_FILE,
        G_LABELING,
        "weak-supervision rules for pre-labels",
        "packaged `config/labeling_functions.yaml`",
    ),
    _V(
        "SPANDA_LABELS_WEBHOOK_SECRET",
        G_LABELING,
        "the shared secret Label Studio's webhook sends to `spanda labels webhook`",
        secret=True,
    ),
    _V(
        "SPANDA_DAGSTER_URL",
        G_LABELING,
        "the Dagster webserver `spanda labels webhook` launches `pull_annotations` on",
        "`http://127.0.0.1:3000`",
    ),
    # Model
    _V(
        "MLFLOW_TRACKING_URI",
        G_MODEL,
        "MLflow tracking server and model registry",
        "`sqlite:///$SPANDA_HOME/mlflow/mlflow.db` (artifacts in `$SPANDA_HOME/mlflow/artifacts`)",
        stack="http://mlflow:5000",
    ),
    _V(
        "MLFLOW_TRACKING_USERNAME",
        G_MODEL,
        "MLflow server login (MLflow's own variable)",
        reader="mlflow",
    ),
    _V(
        "MLFLOW_TRACKING_PASSWORD",
        G_MODEL,
        "MLflow server password (MLflow's own variable)",
        secret=True,
        reader="mlflow",
    ),
    _V(
        "MLFLOW_TRACKING_TOKEN",
        G_MODEL,
        "MLflow server bearer token (MLflow's own variable)",
        secret=True,
        reader="mlflow",
    ),
    _V("SPANDA_MODEL_F1_FLOOR", G_MODEL, "held-out F1 a new version must reach", "`0.70`"),
    _V(
        "SPANDA_MODEL_DUMMY_MARGIN",
        G_MODEL,
        "and by how much it must beat the best dummy classifier",
        "`0.10`",
    ),
    _V(
        "SPANDA_MODEL_REGRESSION_TOLERANCE",
        G_MODEL,
        "how much F1 it may lose against the champion on the same held-out posts",
        "`0.02`",
    ),
    _V(
        "SPANDA_MODEL_MAX_SLICE_GAP",
        G_MODEL,
        "largest recall gap between courses (with 10+ urgent held-out posts)",
        "`0.10`",
    ),
    _V(
        "SPANDA_MODEL_RETRAIN_HOURS",
        G_MODEL,
        "deadline for replacing a champion that trained on a withdrawn student's posts",
        "`24`",
    ),
    _V(
        "SPANDA_MODEL_PERFORMANCE_DROP",
        G_MODEL,
        "how far the F1 estimated without labels may fall below the same estimate on the "
        "champion's held-out posts",
        "`0.10`",
    ),
    _V(
        "SPANDA_DRIFT_SEVERITY",
        G_MODEL,
        "`error` makes the drift audits of `gold.post_predictions` blocking",
        "`warn`",
    ),
    # Publication, API and access
    _V(
        "SPANDA_DATASETS_FILE",
        G_PUBLISH,
        "the datasets to publish (silver and gold tables only)",
        "packaged `config/datasets.yaml`",
    ),
    _V(
        "SPANDA_DOI_PROVIDER",
        G_PUBLISH,
        "`offline` (DOIs recorded under `$SPANDA_HOME/doi`) or `datacite`",
        "`offline`",
    ),
    _V(
        "SPANDA_DOI_PREFIX",
        G_PUBLISH,
        "the prefix of offline DOIs: set it to your repository's",
        "`10.99999` (a placeholder)",
    ),
    _V("SPANDA_DATACITE_URL", G_PUBLISH, "DataCite REST API", "`https://api.test.datacite.org`"),
    _V("SPANDA_DATACITE_REPOSITORY_ID", G_PUBLISH, "the DataCite repository (`datacite` provider)"),
    _V("SPANDA_DATACITE_PASSWORD", G_PUBLISH, "its password", secret=True),
    _V("SPANDA_DATACITE_PREFIX", G_PUBLISH, "its DOI prefix"),
    _V(
        "SPANDA_PUBLIC_URL",
        G_PUBLISH,
        "the HTTP API's public address: landing pages and DOIs resolve under it",
        "`http://127.0.0.1:8000`",
    ),
    _V(
        "SPANDA_ACCESS_POLICY_DIR",
        G_PUBLISH,
        "the Cedar policies (`*.cedar`) and entity schema; validated when `spanda serve` starts",
        "packaged `config/access/`",
    ),
    _V(
        "SPANDA_TOKEN",
        G_PUBLISH,
        "the API token `spanda sql` acts with (a steward's reads bronze)",
        secret=True,
    ),
    _V(
        "SPANDA_ADMIN_EMAIL",
        G_PUBLISH,
        "the contact OAI-PMH's Identify gives harvesters",
        "`data-steward@spanda.invalid`",
    ),
    # Scale-out
    _V(
        ENV_EXECUTOR,
        G_SCALE,
        "`ray` computes the per-row stages (de-identification, gold rules, scoring) on the Ray "
        "cluster `RAY_ADDRESS` names; `in_process` computes them in the run's own process",
        f"`{EXECUTOR_IN_PROCESS}`",
    ),
    _V(
        ENV_RAY_ADDRESS,
        G_SCALE,
        "the Ray head with `SPANDA_EXECUTOR=ray`: its GCS address `host:port`, or "
        "`ray://host:10001` (Ray client)",
    ),
    # BI
    _V(
        "SUPERSET_SECRET_KEY",
        G_BI,
        "Superset's session signing key, 16 characters or more (`openssl rand -base64 42`); "
        "Superset refuses to start without it",
        required=True,
        secret=True,
        placeholder="change-me-superset-secret-key",
        reader="compose",
    ),
    _V(
        "SPANDA_SUPERSET_URL",
        G_BI,
        "the Superset server `spanda bi superset` builds the starter dashboard on",
        stack="http://superset:8088",
    ),
    _V(
        "SPANDA_SUPERSET_USERNAME",
        G_BI,
        "the Superset user it logs in as (an admin)",
        stack="admin",
    ),
    _V(
        "SPANDA_SUPERSET_PASSWORD",
        G_BI,
        "that user's password",
        secret=True,
        stack="${SUPERSET_ADMIN_PASSWORD}",
    ),
    # Dagster instance
    _V(
        "DAGSTER_HOME",
        G_DAGSTER,
        "Dagster instance (the CLI copies `spanda_assets/config/dagster.yaml` there; the image "
        "holds docker/dagster.yaml in `/opt/dagster/home`)",
        "`$SPANDA_HOME/dagster`",
        reader="dagster",
    ),
    _V(
        "DAGSTER_PG_HOST",
        G_DAGSTER,
        "PostgreSQL host of Dagster's storage (docker/dagster.yaml)",
        required=True,
        stack="postgres",
        reader="dagster",
    ),
    _V("DAGSTER_PG_PORT", G_DAGSTER, "its port", required=True, stack="5432", reader="dagster"),
    _V(
        "DAGSTER_PG_DB", G_DAGSTER, "its database", required=True, stack="dagster", reader="dagster"
    ),
    _V("DAGSTER_PG_USER", G_DAGSTER, "its user", required=True, stack="dagster", reader="dagster"),
    _V(
        "DAGSTER_PG_PASSWORD",
        G_DAGSTER,
        "its password (letters and digits)",
        required=True,
        secret=True,
        placeholder="change-me-dagster-pg",
        reader="dagster",
    ),
    # One-host stack
    _V(
        "POSTGRES_PASSWORD",
        G_STACK,
        "password of PostgreSQL's superuser `postgres`, the server's administrator's alone: "
        "Dagster, MLflow and Nessie each own a database as a user of their own",
        required=True,
        secret=True,
        placeholder="change-me-postgres-superuser",
        reader="compose",
    ),
    _V(
        "MSSQL_SA_PASSWORD",
        G_STACK,
        "SQL Server's `sa` password (8+ characters, upper and lower case, digits; no `@:/`)",
        required=True,
        secret=True,
        placeholder="change-me-Str0ng",
        reader="compose",
    ),
    _V(
        "MINIO_ROOT_USER",
        G_STACK,
        "MinIO's root user: the S3 key of Spanda, Nessie and MLflow",
        required=True,
        placeholder="spanda",
        reader="compose",
    ),
    _V(
        "MINIO_ROOT_PASSWORD",
        G_STACK,
        "MinIO's root password (8+ characters)",
        required=True,
        secret=True,
        placeholder="change-me-minio",
        reader="compose",
    ),
    _V(
        "MLFLOW_PG_PASSWORD",
        G_STACK,
        "password of MLflow's PostgreSQL database (letters and digits)",
        required=True,
        secret=True,
        placeholder="change-me-mlflow-pg",
        reader="compose",
    ),
    _V(
        "NESSIE_PG_PASSWORD",
        G_STACK,
        "password of Nessie's PostgreSQL database, where the catalog's commits persist",
        required=True,
        secret=True,
        placeholder="change-me-nessie-pg",
        reader="compose",
    ),
    _V(
        "LABEL_STUDIO_USERNAME",
        G_STACK,
        "Label Studio's admin (an e-mail address)",
        required=True,
        placeholder="steward@example.org",
        reader="compose",
    ),
    _V(
        "LABEL_STUDIO_PASSWORD",
        G_STACK,
        "Label Studio's admin password",
        required=True,
        secret=True,
        placeholder="change-me-label-studio",
        reader="compose",
    ),
    _V(
        "SUPERSET_ADMIN_PASSWORD",
        G_STACK,
        "password of Superset's `admin` user",
        required=True,
        secret=True,
        placeholder="change-me-superset-admin",
        reader="compose",
    ),
    # Testing
    _V(
        "SPANDA_FAULT",
        G_TESTING,
        "crash injection of the crash-safety tests (`<point>:<n>`); never set it in production",
    ),
)
del _V


def variables_by_name() -> dict[str, Variable]:
    return {v.name: v for v in VARIABLES}


def env_example() -> str:
    """docker/.env.example: the one file an operator edits to configure the one-host stack.

    compose.yaml passes docker/.env to the Spanda services (env_file) and interpolates the
    ${NAMES} it uses from it; an active line is a value to replace, a commented line shows
    the default that applies while it stays commented (an empty value is not the same as
    unset for every variable, so defaults are never written as active lines)."""
    wired = [v.name for v in VARIABLES if v.stack is not None]
    lines = [
        "# The one-host stack's settings: copy to docker/.env, replace every change-me and",
        "# empty value, and never commit docker/.env. Generated from the registry in",
        "# spanda_assets/settings.py: spanda config env-example > docker/.env.example",
        "#",
        "# compose.yaml gives these to the Spanda services itself (service addresses,",
        "# mounted files); set them there, not here:",
        *_comment(", ".join(wired), first="#   "),
    ]
    for group in GROUPS:
        members = [v for v in VARIABLES if v.group == group and v.stack is None]
        if not members:
            continue
        lines += ["", f"# --- {group} ---"]
        for v in members:
            shown = v.literal_default()
            note = v.meaning + (
                f" (default: {v.default})" if v.default != "–" and not shown else ""
            )
            if v.required:
                note = f"[{REQUIRED_IN_PRODUCTION}] {note}"
            if v.secret:
                note += " [secret]"
            lines += _comment(note)
            if v.placeholder is not None:
                lines.append(f"{v.name}={v.placeholder}")
            else:
                lines.append(f"# {v.name}={shown}")
    return "\n".join(lines) + "\n"


def _comment(text: str, first: str = "# ") -> list[str]:
    return textwrap.wrap(
        text,
        88,
        initial_indent=first,
        subsequent_indent="#   ",
        break_on_hyphens=False,
        break_long_words=False,
    )


def readme_table() -> str:
    """The README's Configuration table (between its generated-table markers)."""
    out: list[str] = []
    for group in GROUPS:
        members = [v for v in VARIABLES if v.group == group]
        if not members:
            continue
        if out:
            out.append("")
        out += [f"**{group}**", "", "| variable | default | meaning |", "|---|---|---|"]
        for v in members:
            meaning = v.meaning + (" (secret)" if v.secret else "")
            out.append(f"| `{v.name}` | {v.shown_default()} | {meaning} |")
    return "\n".join(out) + "\n"
