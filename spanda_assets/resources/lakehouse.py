"""The Iceberg lakehouse as a Dagster resource."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import dagster as dg

from spanda_assets.lib.lakehouse import CatalogConfig

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog


class LakehouseResource(dg.ConfigurableResource):
    """Iceberg catalog and warehouse.

    Every field may stay empty: the catalog URI, warehouse and S3 credentials
    then come from SPANDA_CATALOG_URI, SPANDA_WAREHOUSE and SPANDA_S3_* at run
    time (embedded SQLite catalog and local warehouse under SPANDA_HOME when
    those are unset). Credentials are never stored in the resource config.
    """

    catalog_uri: str | None = None
    warehouse: str | None = None

    def config(self) -> CatalogConfig:
        cfg = CatalogConfig.from_env()
        if self.catalog_uri:
            cfg = replace(cfg, uri=self.catalog_uri)
        if self.warehouse:
            cfg = replace(cfg, warehouse=self.warehouse)
        return cfg

    def catalog(self) -> Catalog:
        from spanda_assets.lib.lakehouse import open_catalog

        return open_catalog(self.config())

    def namespace(self, name: str) -> Catalog:
        from spanda_assets.lib.lakehouse import ensure_namespace

        catalog = self.catalog()
        ensure_namespace(catalog, name)
        return catalog

    def describe(self) -> dict[str, str]:
        return self.config().describe()
