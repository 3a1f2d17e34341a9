"""Residual-PII checks: an independent scan of what each silver run added (blocking)."""

from typing import Any

import dagster as dg

from spanda_assets.defs.privacy.assets import CONSENT_RECORDS_KEY, silver_key, silver_sources
from spanda_assets.resources import LakehouseResource


def _scanner(catalog: Any) -> Any:
    """Known full names and emails, read in the restricted zone, for exact matching."""
    from spanda_assets.lib.privacy.people import known_people
    from spanda_assets.lib.privacy.residual import ResidualScanner

    people = known_people(catalog)
    return ResidualScanner(full_names=people.full_names, emails=people.emails)


def build_residual_check(name: str, key: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=silver_key(name),
        name="residual_pii",
        blocking=True,
        description=(
            "Independent scan (other patterns, Arrow's RE2 kernels, exact known names and "
            "emails) of the rows the latest run added: fails, blocking downstream, if any "
            "identifier survived de-identification or an identifying column is present. "
            "Shows counts per category and example row keys, never the values."
        ),
    )
    def _check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        from spanda_assets.lib.incremental import previous_run_sequence, rows_added_after
        from spanda_assets.lib.privacy.residual import ScanReport
        from spanda_assets.lib.privacy.silver import BRONZE_SEQ_KEY

        catalog = lakehouse.catalog()
        table = catalog.load_table(("silver", name))
        scanner = _scanner(catalog)
        report = ScanReport()
        import pyarrow as pa

        for batch in rows_added_after(table, previous_run_sequence(table, BRONZE_SEQ_KEY), 100_000):
            scanner.scan(pa.Table.from_batches([batch]), key, report)
        if report.rows_scanned == 0:
            # No rows added: still check the schema for identifying columns.
            scanner.scan(table.schema().as_arrow().empty_table(), key, report)
        metadata: dict[str, Any] = {
            "rows_scanned": report.rows_scanned,
            **{f"found_{c.lower()}": n for c, n in sorted(report.counts.items())},
            "example_keys": dg.MetadataValue.json(report.examples),
            "identifying_columns": ", ".join(report.forbidden_columns) or "none",
        }
        return dg.AssetCheckResult(
            passed=report.passed, severity=dg.AssetCheckSeverity.ERROR, metadata=metadata
        )

    return _check


def _keys() -> dict[str, str]:
    from spanda_assets.lib.privacy.policy import load_policy

    policies = load_policy()
    keys = {name: p.key_output for name, p in policies.items()}
    return {s.name: keys.get(s.name, "id") for s in silver_sources()}


@dg.definitions
def defs() -> dg.Definitions:
    checks = [build_residual_check(name, key) for name, key in _keys().items()]
    checks.append(build_residual_check_for_records())
    return dg.Definitions(asset_checks=checks)


def build_residual_check_for_records() -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=CONSENT_RECORDS_KEY,
        name="residual_pii",
        blocking=True,
        description="Independent scan of the consent records for identifiers.",
    )
    def _check(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        from spanda_assets.lib.privacy.residual import ScanReport

        catalog = lakehouse.catalog()
        table = catalog.load_table(("silver", "consent_records")).scan().to_arrow()
        report = _scanner(catalog).scan(table, "record_id", ScanReport())
        return dg.AssetCheckResult(
            passed=report.passed,
            metadata={
                "rows_scanned": report.rows_scanned,
                **{f"found_{c.lower()}": n for c, n in sorted(report.counts.items())},
                "example_keys": dg.MetadataValue.json(report.examples),
            },
        )

    return _check
