"""The Iceberg catalog: SQL catalog (SQLite or PostgreSQL) or REST, on local files or S3.

Pure construction code with no Dagster imports, so the CLI, tests and
benchmarks build exactly the catalog the assets use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError, redact_url

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

NAMESPACES = ("bronze", "silver", "gold", "submissions")


@dataclass(frozen=True)
class CatalogConfig:
    """Everything needed to open the catalog. Secrets are kept out of `describe()`."""

    uri: str
    warehouse: str
    catalog_type: str = "sql"  # "sql" or "rest"
    name: str = "spanda"
    s3_endpoint: str | None = None
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    # OAuth2 client credentials "CLIENT_ID:SECRET": the REST catalog trades them for a
    # token at its OAuth2 endpoint (and again when the token expires).
    credential: str | None = field(default=None, repr=False)
    oauth2_server_uri: str | None = None
    scope: str | None = None

    def __post_init__(self) -> None:
        if self.credential is not None:
            client_id, colon, secret = self.credential.partition(":")
            if not (colon and client_id.strip() and secret):
                # never the value: it may be the bare secret
                raise ConfigError(
                    f"{settings.ENV_REST_CREDENTIAL} must be the REST catalog's OAuth2 client "
                    "credentials in the form CLIENT_ID:SECRET (client id, a colon, the "
                    "secret); the value set is not"
                )
            if self.token:
                raise ConfigError(
                    f"set {settings.ENV_REST_TOKEN} (a bearer token) or "
                    f"{settings.ENV_REST_CREDENTIAL} (OAuth2 client credentials), not both: "
                    "the catalog would use the credentials and ignore the token"
                )

    @classmethod
    def from_env(cls) -> CatalogConfig:
        env = os.environ.get
        uri = env(settings.ENV_CATALOG_URI) or settings.default_catalog_uri()
        kind = env(settings.ENV_CATALOG_TYPE) or (
            "rest" if uri.startswith(("http://", "https://")) else "sql"
        )
        return cls(
            uri=uri,
            warehouse=env(settings.ENV_WAREHOUSE) or settings.default_warehouse(),
            catalog_type=kind,
            name=env(settings.ENV_CATALOG_NAME) or "spanda",
            s3_endpoint=env(settings.ENV_S3_ENDPOINT),
            s3_region=env(settings.ENV_S3_REGION),
            s3_access_key_id=env(settings.ENV_S3_ACCESS_KEY_ID),
            s3_secret_access_key=env(settings.ENV_S3_SECRET_ACCESS_KEY),
            token=env(settings.ENV_REST_TOKEN) or None,
            credential=env(settings.ENV_REST_CREDENTIAL) or None,
            oauth2_server_uri=env(settings.ENV_REST_OAUTH2_SERVER_URI) or None,
            scope=env(settings.ENV_REST_SCOPE) or None,
        )

    def properties(self) -> dict[str, str]:
        props: dict[str, str] = {"uri": self.uri, "warehouse": self.warehouse}
        if self.s3_endpoint:
            props["s3.endpoint"] = self.s3_endpoint
            # S3-compatible servers (MinIO, test servers) want path-style addressing.
            props["s3.force-virtual-addressing"] = "false"
        if self.s3_region:
            props["s3.region"] = self.s3_region
        if self.s3_access_key_id:
            props["s3.access-key-id"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            props["s3.secret-access-key"] = self.s3_secret_access_key
        if self.token:
            props["token"] = self.token
        if self.credential:
            props["credential"] = self.credential
            # pyiceberg falls back to the catalog's own token endpoint with a deprecation
            # warning (the fallback goes in pyiceberg 1.0): name it, as the REST spec does.
            props["oauth2-server-uri"] = (
                self.oauth2_server_uri or f"{self.uri.rstrip('/')}/v1/oauth/tokens"
            )
        elif self.oauth2_server_uri:
            props["oauth2-server-uri"] = self.oauth2_server_uri
        if self.scope:
            props["scope"] = self.scope
        return props

    def auth(self) -> str:
        """How the catalog is reached, without the secret: for `describe()` and errors."""
        if self.credential:
            return "OAuth2 client credentials"
        return "bearer token" if self.token else "no credentials"

    def describe(self) -> dict[str, str]:
        """Safe to log and to show in the Dagster UI: no secrets."""
        described = {
            "catalog": f"{self.catalog_type}:{redact_url(self.uri)}",
            "warehouse": self.warehouse,
        }
        if self.catalog_type == "rest":
            described["catalog_auth"] = self.auth()
        return described


def open_catalog(config: CatalogConfig) -> Catalog:
    if config.catalog_type == "rest":
        return _open_rest(config)
    if config.catalog_type != "sql":
        raise ConfigError(
            f"{settings.ENV_CATALOG_TYPE} must be 'sql' or 'rest', got {config.catalog_type!r}"
        )
    from pyiceberg.catalog.sql import SqlCatalog

    _prepare_local(config)
    return SqlCatalog(config.name, **config.properties())


def _open_rest(config: CatalogConfig) -> Catalog:
    """A REST catalog client. Opening it fetches the OAuth2 token (client credentials) and
    the catalog's config, so a wrong credential or an unreachable catalog shows here, as
    an error that says which catalog and what to check (and never the secret)."""
    from pyiceberg.catalog.rest import RestCatalog
    from pyiceberg.exceptions import ForbiddenError, OAuthError, UnauthorizedError

    where = f"the Iceberg REST catalog {config.name!r} at {redact_url(config.uri)}"
    try:
        return RestCatalog(config.name, **config.properties())
    except (OAuthError, UnauthorizedError, ForbiddenError) as exc:
        reason = _without_secrets(str(exc), config)
        if config.credential:
            what = (
                f"the OAuth2 client credentials in {settings.ENV_REST_CREDENTIAL} "
                f"(token endpoint {redact_url(config.properties()['oauth2-server-uri'])})"
            )
            check = (
                f"check the client id and secret in {settings.ENV_REST_CREDENTIAL} "
                f"(CLIENT_ID:SECRET), and {settings.ENV_REST_OAUTH2_SERVER_URI} / "
                f"{settings.ENV_REST_SCOPE} if the catalog's token endpoint or scope differ"
            )
        elif config.token:
            what = f"the bearer token in {settings.ENV_REST_TOKEN}"
            check = f"check {settings.ENV_REST_TOKEN}: it may be wrong or expired"
        else:
            what = "a request without credentials"
            check = (
                f"set {settings.ENV_REST_CREDENTIAL} (OAuth2 client credentials) or "
                f"{settings.ENV_REST_TOKEN} (a bearer token)"
            )
        raise ConfigError(f"{where} refused {what}: {reason}; {check}") from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise ConfigError(
            f"cannot reach {where} ({type(exc).__name__}: {_without_secrets(str(exc), config)}): "
            f"check {settings.ENV_CATALOG_URI} and that the catalog runs"
        ) from None


def _without_secrets(text: str, config: CatalogConfig) -> str:
    """`text` (a server's or client's message) with any secret of `config` masked where it
    stands as a whole token (a server may echo what it refused), and URL passwords."""
    secrets = [config.credential, config.token, config.s3_secret_access_key]
    if config.credential:
        secrets.append(config.credential.partition(":")[2])
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", "***", text)
    return redact_url(text)


def _prepare_local(config: CatalogConfig) -> None:
    """Create the directories an embedded catalog and warehouse need."""
    if config.uri.startswith("sqlite:///"):
        Path(config.uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    parsed = urlparse(config.warehouse)
    if parsed.scheme in ("", "file"):
        Path(parsed.path).mkdir(parents=True, exist_ok=True)


def ensure_namespace(catalog: Catalog, namespace: str) -> None:
    """Create `namespace` if it is missing. Two runs (or two steps of one) may race to create
    it: the loser sees the catalog's own error (NamespaceAlreadyExists, or a unique-key
    violation in a SQL catalog) and is fine if the namespace now exists."""
    if namespace not in NAMESPACES:
        raise ConfigError(f"unknown namespace {namespace!r}; Spanda uses {', '.join(NAMESPACES)}")
    try:
        catalog.create_namespace_if_not_exists(namespace)
    except Exception:
        if (namespace,) not in {tuple(n) for n in catalog.list_namespaces()}:
            raise


def load_table_or_none(catalog: Catalog, namespace: str, name: str) -> Table | None:
    from pyiceberg.exceptions import NoSuchTableError

    try:
        return catalog.load_table((namespace, name))
    except NoSuchTableError:
        return None


def published_rows(
    catalog: Catalog,
    name: tuple[str, str],
    column: str,
    values: Iterable[Any],
    fields: tuple[str, ...],
) -> pa.Table | None:
    """`fields` of the rows of table `name` whose `column` is in `values`, as readers see
    them (main). None when the table does not exist or has published nothing yet."""
    from spanda_assets.lib.writes import MAIN, in_filter, scan

    table = load_table_or_none(catalog, *name)
    if table is None or table.snapshot_by_name(MAIN) is None:
        return None
    return scan(
        table, MAIN, row_filter=in_filter(column, values), selected_fields=fields
    ).to_arrow()
