"""The annotation tool as a Dagster resource: Label Studio, or the local store."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    from spanda_assets.lib.labeling.backend import Annotations


class AnnotationToolResource(dg.ConfigurableResource):
    """Where instructors' annotations live.

    Label Studio when LABEL_STUDIO_URL is set (project LABEL_STUDIO_PROJECT, token
    LABEL_STUDIO_API_KEY: a legacy token or a personal access token), else the local
    store in Label Studio's export format under SPANDA_HOME. `url` and `project` may
    pin the server here instead; the token is never part of the resource's config, so
    the UI never shows it: it is read from the environment when a run opens the tool.
    """

    url: str | None = None
    project: str | None = None

    def open(self) -> tuple[Annotations, dict[str, str]]:
        """The provisioned tool and what to show about it. Raises LabelStudioError
        (server down, token refused) before anything is written."""
        from spanda_assets.lib.labeling.backend import open_annotations

        return open_annotations(url=self.url, project=self.project)
