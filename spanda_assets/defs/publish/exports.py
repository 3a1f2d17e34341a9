"""Interoperable exports of the de-identified gold tables: `export/oneroster`, `export/xapi`.

Each asset turns the main snapshots of its gold tables into a package another system
imports as is (a SIS or LMS takes OneRoster 1.1 CSV, a learning record store takes
xAPI statements), written by lib/exports: streamed one data file at a time, audited
by the submission validator in a staging folder, moved into place atomically, and the
previous export removed. The HTTP API serves the latest one (`lib.exports.latest_export`).

Nothing changed in the sources, nothing is written: the run logs it and records an
observation, no materialization. Daily with the publish assets, under the daemon,
after the gold tables' blocking checks passed, and in the `publish_datasets` job.
"""

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.defs.publish.assets import (
    OWNERS,
    PUBLISH_CRON,
    PUBLISH_GROUP,
    PUBLISHED_TAGS,
    on_publish_cron,
)
from spanda_assets.defs.validation.assets import gold_key
from spanda_assets.lib.exports import EXPORT_KINDS, EXPORT_SOURCES
from spanda_assets.resources import LakehouseResource

if TYPE_CHECKING:
    from spanda_assets.lib.exports.build import ExportOutcome

CHECK_NAME = "round_trip_valid"
KINDS = {"oneroster": {"iceberg", "csv"}, "xapi": {"iceberg", "json"}}
DESCRIPTIONS = {
    "oneroster": (
        "**A OneRoster 1.1 CSV bulk package** of the de-identified gold enrollments and "
        "assessment results, for importing the roster and gradebook into a student "
        "information system or LMS that speaks 1EdTech OneRoster: `manifest.csv`, orgs, "
        "academicSessions, courses, classes, users, enrollments, categories, lineItems and "
        "results.\n\n"
        "Users are gold's keyed pseudonyms (`subject_id`); their name, username, email "
        "and phone columns are empty. Dates are years (a start is 1 January, an end 31 "
        "December). Made from `gold.validated_enrollments` and `gold.validated_assessments`; "
        "see docs/exports.md for the column mapping."
    ),
    "xapi": (
        "**xAPI 1.0.3 statements** of the de-identified gold forum posts (`commented`) and "
        "assessment results (`scored`, with raw, max and scaled score), as JSON Lines, for "
        "loading into a learning record store or a learning-analytics tool.\n\n"
        "The actor is an account on the publisher's URL (SPANDA_PUBLIC_URL) named by the "
        "student's keyed pseudonym, never an email. Statement ids are derived from the "
        "gold rows, so a re-export or a second load never duplicates a statement. Made "
        "from `gold.validated_posts` and `gold.validated_assessments`; see docs/exports.md."
    ),
}
COMMON_DESCRIPTION = (
    "\n\nA new export is written only when a source's main snapshot changed; it replaces "
    "the previous one, which is deleted (an erasure removes rows from gold, and an older "
    "export would keep them). The package is checked by `spanda validate` before it "
    "replaces the previous export (check `round_trip_valid`). Files under "
    "`SPANDA_HOME/exports/<kind>/<key>/`, described by `export.json`. Daily "
    f"({PUBLISH_CRON} UTC) under the daemon, after the gold tables' blocking checks passed."
)


def export_key(kind: str) -> dg.AssetKey:
    return dg.AssetKey(["export", kind])


def _gold(table: str) -> dg.AssetKey:
    namespace, _, name = table.partition(".")
    if namespace != "gold":  # exports read the audited, de-identified layer only
        raise ValueError(f"an export reads gold tables, not {table}")
    return gold_key(name)


def build_export_asset(kind: str) -> dg.AssetsDefinition:
    key = export_key(kind)

    @dg.asset(
        key=key,
        deps=[_gold(t) for t in EXPORT_SOURCES[kind]],
        group_name=PUBLISH_GROUP,
        kinds=KINDS[kind],
        owners=OWNERS,
        tags=PUBLISHED_TAGS,
        automation_condition=on_publish_cron(),
        check_specs=[
            dg.AssetCheckSpec(
                CHECK_NAME,
                asset=key,
                blocking=True,
                description=(
                    "The package passes the platform's own validator (the code behind "
                    "`spanda validate`) with zero errors. It is checked in its staging "
                    "folder: a package that fails never replaces the current export."
                ),
            )
        ],
        output_required=False,
        description=DESCRIPTIONS[kind] + COMMON_DESCRIPTION,
    )
    def _export(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator[Any]:
        from spanda_assets.lib.exports.build import build_export

        outcome = build_export(kind, lakehouse.catalog())
        context.log.info(f"export/{kind}: {outcome.action} ({outcome.note})")
        md = _metadata(outcome)
        if outcome.action in ("exported", "recovered"):
            yield dg.MaterializeResult(asset_key=key, metadata=md)
        else:
            if outcome.action == "unchanged":
                context.log.info(
                    f"export/{kind}: skipped, nothing to write: the sources are at the "
                    "snapshots of the current export"
                )
            yield dg.AssetObservation(asset_key=key, metadata=md)
        yield _check(key, outcome)

    return _export


def _metadata(outcome: "ExportOutcome") -> dict[str, Any]:
    info = outcome.info
    md: dict[str, Any] = {
        "outcome": outcome.action,
        "note": outcome.note,
        "source_snapshots": dg.MetadataValue.json(
            {table: str(snap) for table, snap in outcome.sources.items()}
        ),
        "stale_staging_removed": outcome.staging_removed,
    }
    if outcome.key is not None:
        md["key"] = outcome.key
    if outcome.removed:
        md["previous_exports_removed"] = dg.MetadataValue.json(outcome.removed)
    if outcome.skipped:
        md["rows_skipped"] = dg.MetadataValue.json(outcome.skipped)
    if info is not None and outcome.action != "rejected":
        data = [f for f in info.files if f.rows]
        md |= {
            "path": dg.MetadataValue.path(str(info.directory)),
            "created": info.created,
            "files": dg.MetadataValue.json([f.name for f in info.files]),
            "rows_per_file": dg.MetadataValue.json({f.name: f.rows for f in info.files}),
            "sha256": dg.MetadataValue.json({f.name: f.sha256 for f in info.files}),
            "bytes": sum(f.size for f in info.files),
            "datasets": dg.MetadataValue.json(list(info.datasets)),
            "dagster/row_count": sum(f.rows for f in data),
        }
    return md


def _check(key: dg.AssetKey, outcome: "ExportOutcome") -> dg.AssetCheckResult:
    """The validator's verdict on the package this run wrote; for an export already in
    place, the verdict recorded when it was written, with its files checked against the
    digests that were validated (re-validating unchanged bytes would only repeat it)."""
    from spanda_assets.lib.exports.build import issue_counts
    from spanda_assets.lib.files import file_digest

    report, info = outcome.report, outcome.info
    if report is not None:
        errors, warnings = issue_counts(report)
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_NAME,
            passed=report.valid,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "errors": sum(errors.values()),
                "warnings": sum(warnings.values()),
                "errors_by_code": dg.MetadataValue.json(errors),
                "warnings_by_code": dg.MetadataValue.json(warnings),
                "files_with_errors": dg.MetadataValue.json(
                    sorted({i.location for i in report.errors})
                ),
                "rows_checked": report.rows_checked,
                "rules_version": report.rules_version,
                "validated": "the staged package, before it was put in place",
            },
        )
    if info is None:
        return dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_NAME,
            passed=True,
            metadata={"note": f"nothing exported yet: {outcome.note}"},
        )
    changed = [f.name for f in info.files if file_digest(info.directory / f.name) != f.sha256]
    recorded = info.validation
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=bool(recorded.get("valid")) and not changed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "errors": int(recorded.get("errors", 0)),
            "warnings": int(recorded.get("warnings", 0)),
            "warnings_by_code": dg.MetadataValue.json(recorded.get("warning_codes", {})),
            "files_changed_since_validated": dg.MetadataValue.json(changed),
            "rules_version": str(recorded.get("rules_version", "")),
            "validated": f"when written ({info.created}); unchanged since",
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=[build_export_asset(kind) for kind in EXPORT_KINDS])
