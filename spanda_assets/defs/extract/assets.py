"""bronze.* assets: one per table declared in the sources file.

The assets are generated from the YAML, so adding a source table adds an asset,
and the schedule and sensor pick it up without code changes.
"""

import json
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.defs.automation.policies import BRONZE_FRESHNESS
from spanda_assets.lib.sources import SourceTable, load_sources
from spanda_assets.resources import LakehouseResource, SourceDatabaseResource

BRONZE_GROUP = "bronze"
OWNERS = ["team:data-engineering"]

if TYPE_CHECKING:  # pyiceberg is imported only when an asset runs: definitions load fast
    from pyiceberg.table import Table

    from spanda_assets.lib.extract import ExtractResult


class ExtractConfig(dg.Config):
    """Launchpad options for an extract run."""

    full_refresh: bool = False
    """Drop bronze history and reload the whole table (after an incompatible schema change)."""


def bronze_key(source: SourceTable) -> dg.AssetKey:
    return dg.AssetKey(["bronze", source.name])


def pool_name(source: SourceTable) -> str:
    """One concurrency pool per table: two runs never extract the same table at once."""
    return f"extract_{source.name}"


def _declared_columns(table_name: str) -> dict[str, str]:
    """What config/datasets.yaml says each column of a published table holds (empty for a
    table no dataset declares, or when the file cannot be read: the column table is
    documentation, never a reason to fail a run)."""
    from spanda_assets.lib.errors import SpandaError
    from spanda_assets.lib.publish.datasets import load_datasets

    try:
        declared = load_datasets()
    except (SpandaError, OSError):
        return {}
    for dataset in declared:
        if dataset.table == table_name:
            return dict(dataset.columns)
    return {}


def column_schema(table: "Table") -> dg.TableSchema:
    """Iceberg columns with what each holds: the field's own doc, else the published
    dataset's column description, else the source column it comes from (bronze)."""
    origin = json.loads(table.properties.get("spanda.column-map", "{}"))
    source = table.properties.get("spanda.source-table", "")
    declared = _declared_columns(".".join(table.name()[-2:]))

    def described(name: str, doc: str | None) -> str | None:
        if doc:
            return doc
        if name in declared:
            return declared[name]
        return f"{source}.{origin[name]}" if name in origin else None

    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.field_type),
                description=described(f.name, f.doc),
                constraints=dg.TableColumnConstraints(nullable=not f.required),
            )
            for f in table.schema().fields
        ]
    )


def table_metadata(table: "Table", rows: int) -> dict[str, Any]:
    """What Dagster shows of any lakehouse table: row count, columns, qualified name."""
    return {
        "dagster/row_count": rows,
        "dagster/column_schema": column_schema(table),
        "dagster/table_name": ".".join(table.name()[-2:]),
    }


def result_metadata(result: "ExtractResult", table: "Table", source_desc: str) -> dict[str, object]:
    rate = int(result.rows_read / result.seconds) if result.seconds else 0
    md: dict[str, object] = {
        **table_metadata(table, result.total_rows),
        "dagster/uri": dg.MetadataValue.path(table.location()),
        "rows_read": result.rows_read,
        "rows_added": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "rows_skipped_duplicate": result.rows_skipped_duplicate,
        "null_cursor_rows": result.null_cursor_rows,
        "watermark_before": result.watermark_before,
        "watermark_after": result.watermark_after,
        "iceberg_snapshot_id": dg.MetadataValue.text(str(result.snapshot_id or "")),
        "iceberg_commits": result.commits,
        "full_load": result.full_load,
        "reader": result.reader,
        "extract_seconds": dg.MetadataValue.float(result.seconds),
        "rows_per_second": rate,
        "source": source_desc,
    }
    if result.columns_added:
        md["columns_added"] = ", ".join(result.columns_added)
    if result.columns_widened:
        md["columns_widened"] = ", ".join(result.columns_widened)
    if result.columns_missing_in_source:
        md["columns_missing_in_source"] = ", ".join(result.columns_missing_in_source)
    return md


def build_extract_asset(source: SourceTable) -> dg.AssetsDefinition:
    description = (
        f"{source.description or 'Raw copy of ' + source.qualified}\n\n"
        f"Incremental extract of `{source.qualified}` into the Iceberg table "
        f"`bronze.{source.name}` ({source.mode} on key {', '.join(source.primary_key)}, "
        f"cursor `{source.cursor}`). The watermark is committed in the Iceberg snapshot with "
        "the rows, so a crashed run is simply re-run. Restricted: holds PII."
    )

    @dg.asset(
        key=bronze_key(source),
        group_name=BRONZE_GROUP,
        kinds={"iceberg", "sqlserver"},
        owners=OWNERS,
        description=description,
        pool=pool_name(source),
        freshness_policy=BRONZE_FRESHNESS,
        tags={"spanda/layer": "bronze", "spanda/pii": "restricted"},
        metadata={
            "source_table": source.qualified,
            "mode": source.mode,
            "cursor": source.cursor,
            "primary_key": ", ".join(source.primary_key),
        },
    )
    def _extract(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        source_db: SourceDatabaseResource,
        lakehouse: LakehouseResource,
    ) -> dg.MaterializeResult:
        from spanda_assets.lib.extract import extract_table

        engine = source_db.engine()
        try:
            batch_rows, commit_rows = source_db.sizes()
            catalog = lakehouse.catalog()
            result = extract_table(
                engine=engine,
                reader=source_db.batch_reader(engine),
                catalog=catalog,
                source=source,
                batch_rows=batch_rows,
                commit_rows=commit_rows,
                full_refresh=config.full_refresh,
                run_id=context.run.run_id,
            )
        finally:
            engine.dispose()
        table = catalog.load_table(source.bronze_identifier)
        context.log.info(
            f"bronze.{source.name}: read {result.rows_read} rows, +{result.rows_inserted} "
            f"new, {result.rows_updated} updated, watermark {result.watermark_before} -> "
            f"{result.watermark_after}"
        )
        return dg.MaterializeResult(metadata=result_metadata(result, table, source_db.describe()))  # type: ignore[arg-type]

    return _extract


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_extract_asset(s) for s in load_sources()])
