"""The Iceberg catalog: SQL catalog (SQLite or PostgreSQL) or REST, on local files or S3.

Pure construction code with no Dagster imports, so the CLI, tests and
benchmarks build exactly the catalog the assets use.
"""

from __future__ import annotations

import os
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
            token=env(settings.ENV_REST_TOKEN),
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
        return props

    def describe(self) -> dict[str, str]:
        """Safe to log and to show in the Dagster UI: no secrets."""
        return {
            "catalog": f"{self.catalog_type}:{redact_url(self.uri)}",
            "warehouse": self.warehouse,
        }


def open_catalog(config: CatalogConfig) -> Catalog:
    if config.catalog_type == "rest":
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(config.name, **config.properties())
    if config.catalog_type != "sql":
        raise ConfigError(
            f"{settings.ENV_CATALOG_TYPE} must be 'sql' or 'rest', got {config.catalog_type!r}"
        )
    from pyiceberg.catalog.sql import SqlCatalog

    _prepare_local(config)
    return SqlCatalog(config.name, **config.properties())


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
