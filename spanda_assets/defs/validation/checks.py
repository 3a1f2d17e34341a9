"""Data contracts of the gold tables as asset checks.

* `pandera_contract` (blocking, ERROR): types, ranges, uniqueness, references;
* `gx_gates` (blocking, ERROR): the GX suite's gate expectations;
* `gx_soft_signals` (WARN, not blocking): distributions and row-count change.

Incremental: a check validates the rows added to the table since the check
last passed (gold.dq_history records how far each run got), so its cost grows
with new rows; rows a failing run saw are validated again until a run passes.
Key uniqueness reads the whole key column; the row-count change compares whole
tables (from the snapshot summary, no scan).

Each run is recorded in gold.dq_history; the check shows the pass rate of the
last runs and links the Great Expectations Data Docs.
"""

from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.validation.assets import gold_key
from spanda_assets.resources import LakehouseResource


def _history_metadata(catalog: Any, table: str, check: str) -> dict[str, Any]:
    from spanda_assets.lib.validation import history

    rows = history.recent(catalog, table, check)
    rates = rows.column("pass_rate").to_pylist()
    return {
        "pass_rate_recent_runs": dg.MetadataValue.float(sum(rates) / len(rates)) if rates else 1.0,
        "quality_history": dg.MetadataValue.md(history.markdown(rows.slice(0, 10))),
    }


def _scope_metadata(scope: Any) -> dict[str, Any]:
    return {
        "rows_in_table": scope.row_count,
        "scope": dg.MetadataValue.text(
            "whole table"
            if scope.after_sequence == 0
            else f"rows added after sequence {scope.after_sequence} (the last pass)"
        ),
    }


def build_checks(name: str) -> list[dg.AssetChecksDefinition]:
    from spanda_assets.lib.validation.gold import SPECS

    spec = SPECS[name]

    @dg.asset_check(
        asset=gold_key(name),
        name="pandera_contract",
        blocking=True,
        description=f"Pandera model of gold.{name}: types, ranges, uniqueness, references.",
    )
    def pandera_contract(lakehouse: LakehouseResource) -> dg.AssetCheckResult:
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import run_pandera
        from spanda_assets.lib.validation.gold import reference_keys, reference_tables

        catalog = lakehouse.catalog()
        table = catalog.load_table(("gold", name))
        # The lookups the gold rules make, checked again on what gold holds.
        tables = reference_tables(catalog, spec.references)
        refs = {c: keys.to_pylist() for c, keys in reference_keys(tables).items()}
        scope = history.scope(catalog, table, name, "pandera_contract")
        result = run_pandera(name, table, refs, spec.key, scope.after_sequence)
        history.record(
            catalog,
            name,
            "pandera_contract",
            result.passed,
            result.evaluated,
            result.failed,
            scope.row_count,
            scope,
            result.rows,
        )
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "rows_checked": result.rows,
                **_scope_metadata(scope),
                "failure_cases": result.failed,
                "failures": dg.MetadataValue.json(result.failures),
                **_history_metadata(catalog, name, "pandera_contract"),
            },
        )

    @dg.multi_asset_check(
        name=f"{name}_great_expectations",
        specs=[
            dg.AssetCheckSpec(
                "gx_gates",
                asset=gold_key(name),
                blocking=True,
                description=f"Gate expectations of schemas/gx/{name}.yaml (blocking, ERROR).",
            ),
            dg.AssetCheckSpec(
                "gx_soft_signals",
                asset=gold_key(name),
                description=(
                    f"Soft expectations of schemas/gx/{name}.yaml and the row-count change "
                    "since the last run (WARN, not blocking)."
                ),
            ),
        ],
        description="One Great Expectations run (and one Data Docs update) for both checks.",
    )
    def great_expectations(lakehouse: LakehouseResource) -> Any:
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import (
            ContractResult,
            existing_docs,
            gx_frame,
            load_suite,
            run_gx,
        )

        catalog = lakehouse.catalog()
        table = catalog.load_table(("gold", name))
        suite = load_suite(name)
        # One GX run serves both checks: it starts after the older of their last passes.
        scopes = [history.scope(catalog, table, name, c) for c in ("gx_gates", "gx_soft_signals")]
        scope = min(scopes, key=lambda s: s.after_sequence)
        frame = gx_frame(table, suite["columns"], scope.after_sequence)
        project = settings.spanda_home() / "gx"
        if len(frame):
            results = run_gx(name, frame, project, spec.key)
        else:  # nothing arrived since the last pass: nothing to validate, GX not even imported
            docs = existing_docs(project)
            results = {s: ContractResult(passed=True, docs_url=docs) for s in ("gate", "soft")}
        soft = results["soft"]
        previous = history.recent(catalog, name, "gx_soft_signals", last=1)
        counts = previous.column("row_count").to_pylist()
        bounds = suite.get("row_count_change") or {}
        soft.evaluated += 1
        if counts and counts[0]:
            ratio = scope.row_count / counts[0]
            if not bounds.get("min_ratio", 0) <= ratio <= bounds.get("max_ratio", float("inf")):
                soft.failed += 1
                soft.passed = False
                soft.failures.append(
                    {
                        "expectation": "row_count_change",
                        "observed": f"{counts[0]} -> {scope.row_count}",
                    }
                )
        for check_name, severity, level in (
            ("gx_gates", "gate", dg.AssetCheckSeverity.ERROR),
            ("gx_soft_signals", "soft", dg.AssetCheckSeverity.WARN),
        ):
            result = results[severity]
            history.record(
                catalog,
                name,
                check_name,
                result.passed,
                result.evaluated,
                result.failed,
                scope.row_count,
                scope,
                len(frame),
            )
            metadata: dict[str, Any] = {
                "rows_checked": len(frame),
                **_scope_metadata(scope),
                "expectations": result.evaluated,
                "failed_expectations": result.failed,
                "failures": dg.MetadataValue.json(result.failures),
                **_history_metadata(catalog, name, check_name),
            }
            if result.docs_url:
                metadata["data_docs"] = dg.MetadataValue.url(result.docs_url)
            yield dg.AssetCheckResult(
                asset_key=gold_key(name),
                check_name=check_name,
                passed=result.passed,
                severity=level,
                metadata=metadata,
            )

    return [pandera_contract, great_expectations]


@dg.definitions
def defs() -> dg.Definitions:
    from spanda_assets.lib.validation.gold import SPECS

    return dg.Definitions(asset_checks=[c for n in SPECS for c in build_checks(n)])
