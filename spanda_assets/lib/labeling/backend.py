"""Where annotations live: a Label Studio server when LABEL_STUDIO_URL is set, else the
local store under SPANDA_HOME. Switching is configuration only; both speak the same
calls and return the same Arrow tables (decision 0027)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from spanda_assets.lib.errors import redact_url
from spanda_assets.lib.labeling.lsformat import Changes
from spanda_assets.lib.labeling.store import AddResult, AnnotationStore, ImportResult
from spanda_assets.lib.labeling.studio import (
    ENV_API_KEY,
    ENV_PROJECT,
    ENV_URL,
    PROJECT_TITLE,
    Project,
    Studio,
)


class Annotations(Protocol):
    """What the labeling assets ask of an annotation tool."""

    def task_keys(self) -> set[str]: ...

    def add_tasks(
        self, posts: pa.Table | Iterable[pa.RecordBatch], *, data_columns: tuple[str, ...] = ()
    ) -> AddResult: ...

    def changed_since(self, watermark: dt.datetime | None) -> Changes: ...

    def delete(self, post_keys: Iterable[str]) -> int: ...

    def review(self, flags: pa.Table) -> int: ...

    def task_texts(self) -> dict[str, str]: ...

    def update_texts(self, texts: dict[str, str]) -> int: ...

    def export(self, path: Path) -> int: ...

    def import_file(self, path: Path) -> ImportResult: ...


def server_configured() -> bool:
    return bool(os.environ.get(ENV_URL))


def open_annotations(
    url: str | None = None, project: str | None = None
) -> tuple[Annotations, dict[str, str]]:
    """The configured annotation tool, provisioned, and what to show about it (never
    the token). `url` and `project` override LABEL_STUDIO_URL and LABEL_STUDIO_PROJECT.
    A server that is down or refuses the token raises LabelStudioError here, before
    any asset writes anything."""
    url = url or os.environ.get(ENV_URL)
    if not url:
        store = AnnotationStore()
        return store, {"annotation_tool": "local store", "annotations_file": str(store.path)}
    studio = Studio(url, os.environ.get(ENV_API_KEY, ""))
    title = project or os.environ.get(ENV_PROJECT) or PROJECT_TITLE
    provisioned: Project = studio.provision(title=title)
    info = {
        "annotation_tool": "Label Studio",
        "label_studio_url": redact_url(studio.url),
        "label_studio_project": str(provisioned.id),
        "label_config_hash": provisioned.config_hash,
    }
    if provisioned.config_drift:
        info["label_config_drift"] = provisioned.config_drift
    return studio, info
