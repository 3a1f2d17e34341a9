"""Dataset submissions: one dynamic partition per submission in the inbox.

validation_report -> (blocking check: submission_valid) -> ingested. A rejected
submission gets its report (HTML and JSON under SPANDA_HOME/reports/<key>/) and
is never ingested: the blocking check stops the run before ingest, and ingest
re-reads the report and refuses an invalid one on its own too.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.privacy.assets import residual_pii_audit
from spanda_assets.defs.publishing import Outcome, audit_spec, outcome_events
from spanda_assets.resources import LakehouseResource

if TYPE_CHECKING:
    from pyiceberg.table import Table

    from spanda_assets.lib.privacy.residual import ScanReport

SUBMISSIONS = dg.DynamicPartitionsDefinition(name="submissions")
GROUP = "submissions"
OWNERS = ["team:research-data"]
REPORT_KEY = dg.AssetKey(["submissions", "validation_report"])
submission_job = dg.define_asset_job(
    name="process_submission",
    selection=dg.AssetSelection.groups("submissions"),
    description="Validate one submission and, if valid, ingest it de-identified.",
)
INGESTED_KEY = dg.AssetKey(["submissions", "ingested"])


def report_dir(key: str) -> Path:
    return settings.spanda_home() / "reports" / key


@dg.asset(
    key=REPORT_KEY,
    partitions_def=SUBMISSIONS,
    group_name=GROUP,
    kinds={"python"},
    owners=OWNERS,
    description=(
        "Validation report of one submission (`spanda validate`, BIDS-style rules as data): "
        "issues with code, severity, file, line, column, message and suggestion, written as "
        "JSON and HTML under SPANDA_HOME/reports/<submission>/."
    ),
)
def validation_report(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    from spanda_assets.lib.submissions.inbox import fetch
    from spanda_assets.lib.submissions.ingest import html_report
    from spanda_assets.lib.submissions.validate import validate

    key = context.partition_key
    report = validate(fetch(key))
    out = report_dir(key)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(report.to_json())
    (out / "report.html").write_text(html_report(report.to_json()))
    codes: dict[str, int] = {}
    for issue in report.issues:
        codes[issue.code] = codes.get(issue.code, 0) + 1
    return dg.MaterializeResult(
        metadata={
            "valid": report.valid,
            "errors": len(report.errors),
            "warnings": len(report.warnings),
            "formats": ", ".join(report.formats) or "none",
            "rows_checked": report.rows_checked,
            "issues_by_code": dg.MetadataValue.json(codes),
            "report_html": dg.MetadataValue.path(str(out / "report.html")),
            "report_json": dg.MetadataValue.path(str(out / "report.json")),
        }
    )


@dg.asset_check(
    asset=REPORT_KEY,
    name="submission_valid",
    blocking=True,
    description="Blocks ingest of a submission whose report has any error.",
)
def submission_valid(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    # Checks on a partitioned asset run in the same run as the partition's materialization.
    key = context.run.tags.get("dagster/partition", "")
    doc = json.loads((report_dir(key) / "report.json").read_text())
    return dg.AssetCheckResult(
        passed=bool(doc["valid"]),
        metadata={
            "errors": doc["summary"]["errors"],
            "report": str(report_dir(key) / "report.html"),
        },
    )


@dg.asset(
    key=INGESTED_KEY,
    deps=[REPORT_KEY],
    partitions_def=SUBMISSIONS,
    group_name=GROUP,
    kinds={"iceberg", "python"},
    owners=OWNERS,
    pool="submissions",
    check_specs=[
        audit_spec(
            INGESTED_KEY,
            "residual_pii",
            "Residual-PII scan of every table the submission stages, before any is published.",
        )
    ],
    output_required=False,
    description=(
        "A validated submission de-identified by the privacy layer (identifier columns dropped, "
        "ids pseudonymized per dataset, free text scrubbed) and ingested as Iceberg tables "
        "submissions.<dataset>__<file>. Write-audit-publish: the tables are staged on their "
        "audit branches, and published only when the residual-PII scan of all of them passed."
    ),
)
def ingested(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator[Any]:
    from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
    from spanda_assets.lib.privacy.residual import ResidualScanner, ScanReport, scan_pending
    from spanda_assets.lib.submissions.inbox import fetch
    from spanda_assets.lib.submissions.ingest import ingest, pseudonym_columns
    from spanda_assets.lib.submissions.validate.digest import SubmissionChanged
    from spanda_assets.lib.writes import pending

    key = context.partition_key
    report = report_dir(key) / "report.json"
    doc = json.loads(report.read_text()) if report.is_file() else {}
    if not doc.get("valid"):
        raise dg.Failure(
            description=f"submission {key} was rejected by validation and is not ingested",
            metadata={"report": dg.MetadataValue.path(str(report_dir(key) / "report.html"))},
        )
    if not doc.get("files"):
        raise dg.Failure(
            description=f"submission {key}: its report lists no validated files (written by "
            "an older version); validate it again before ingest"
        )
    catalog = lakehouse.namespace("submissions")
    try:
        tables = ingest(catalog, key, fetch(key), Pseudonymizer(load_key()), doc["files"])
    except SubmissionChanged as exc:
        raise dg.Failure(
            description=str(exc), metadata={"validated_digest": doc.get("digest", "")}
        ) from exc
    staged = [catalog.load_table(("submissions", t)) for t in tables]
    scan = ScanReport()
    for table in staged:
        # No roster applies to a partner's data: the pattern scan and the schema check do.
        names = table.schema().column_names
        scanner = ResidualScanner(pseudonym_columns=pseudonym_columns(names))
        scan_pending(scanner, pending(table), names[0], report=scan)
    outcome = _publish_all(staged, scan)
    yield from outcome_events(
        INGESTED_KEY,
        outcome,
        {
            "dagster/row_count": sum(tables.values()),
            "tables": dg.MetadataValue.json({f"submissions.{t}": n for t, n in tables.items()}),
        },
    )


def _publish_all(staged: list["Table"], report: "ScanReport") -> Outcome:
    """Publish every staged table of the submission, or none (their audit is one)."""
    from spanda_assets.lib.writes import Published, publish

    audit = residual_pii_audit(report)
    name = "submissions." + ",".join(t.name()[-1] for t in staged)
    if not audit.passed:
        return Outcome([audit], None, name, None, None)
    results = [publish(t) for t in staged]
    last = results[-1] if results else Published(False, None, None)
    return Outcome([audit], last, name, None, last.snapshot_id)
