"""Dagster resources: typed, configurable handles on the platform's external systems.

Resources hold no secrets in their config: URLs with passwords and keys are read
from the environment when a run needs them, so the Dagster UI never shows them.
"""

from spanda_assets.resources.alerts import AlertDestinationsResource
from spanda_assets.resources.annotations import AnnotationToolResource
from spanda_assets.resources.lakehouse import LakehouseResource
from spanda_assets.resources.source_db import SourceDatabaseResource

__all__ = [
    "AlertDestinationsResource",
    "AnnotationToolResource",
    "LakehouseResource",
    "SourceDatabaseResource",
]
