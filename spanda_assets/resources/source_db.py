"""The operational database as a Dagster resource."""

from __future__ import annotations

import os

import dagster as dg
from sqlalchemy.engine import Engine

from spanda_assets import settings
from spanda_assets.lib.errors import redact_url
from spanda_assets.lib.readers import BatchReader, make_reader
from spanda_assets.lib.source_db import make_engine


class SourceDatabaseResource(dg.ConfigurableResource):
    """Connection to the operational database (SQL Server in production).

    `url` is normally left empty: the URL, which may carry a password, is then
    read from SPANDA_SOURCE_URL when a run starts (the demo SQLite database
    under SPANDA_HOME if that is unset), so it never appears in the UI.
    """

    url: str | None = None
    reader: str = "auto"
    batch_rows: int | None = None
    commit_rows: int | None = None

    def resolved_url(self) -> str:
        return self.url or settings.source_url()

    def engine(self) -> Engine:
        return make_engine(self.resolved_url())

    def batch_reader(self, engine: Engine) -> BatchReader:
        kind = os.environ.get(settings.ENV_READER) or self.reader
        return make_reader(kind, self.resolved_url(), engine)

    def sizes(self) -> tuple[int, int]:
        batch = self.batch_rows or settings.env_int(
            settings.ENV_BATCH_ROWS, settings.DEFAULT_BATCH_ROWS
        )
        commit = self.commit_rows or settings.env_int(
            settings.ENV_COMMIT_ROWS, settings.DEFAULT_COMMIT_ROWS
        )
        return batch, max(commit, batch)

    def describe(self) -> str:
        """Safe for logs and metadata: the password is masked."""
        return redact_url(self.resolved_url())
