"""Resource keys shared by every stage."""

import dagster as dg

from spanda_assets.resources import (
    AlertDestinationsResource,
    AnnotationToolResource,
    LakehouseResource,
    SourceDatabaseResource,
)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={
            "source_db": SourceDatabaseResource(),
            "lakehouse": LakehouseResource(),
            "alerts": AlertDestinationsResource(),
            "annotations": AnnotationToolResource(),
        }
    )
