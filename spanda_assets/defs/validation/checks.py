"""Data contracts of the gold tables, as the audits of write-audit-publish.

* `pandera_contract` (blocking, ERROR): types, ranges, uniqueness, references;
* `gx_gates` (blocking, ERROR): the GX suite's gate expectations;
* `gx_soft_signals` (WARN, not blocking): distributions and row-count change.

They read the audit branch: the rows it holds that main lacks, which is every
row since the last passing audit (main moves only when these pass), so their
cost grows with new rows; rows a failing run saw are validated again until a
run passes. Key uniqueness reads the whole key column of the staged table; the
row-count change compares whole tables (from the snapshot summary, no scan).

Each run is recorded in gold.dq_history; the checks show the pass rate of the
last runs and link the Great Expectations Data Docs.
"""

from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.publishing import Audit, AuditFn

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.writes import Pending

CHECK_NAMES = ("pandera_contract", "gx_gates", "gx_soft_signals")
CHECK_DESCRIPTIONS = {
    "pandera_contract": "Pandera model of gold.{name}: types, ranges, uniqueness, references.",
    "gx_gates": "Gate expectations of schemas/gx/{name}.yaml (blocking, ERROR).",
    "gx_soft_signals": (
        "Soft expectations of schemas/gx/{name}.yaml and the row-count change since the last "
        "run (WARN, not blocking)."
    ),
}


def _history_metadata(catalog: "Catalog", table: str, check: str) -> dict[str, Any]:
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
            else f"rows added after sequence {scope.after_sequence} (the published main)"
        ),
    }


def contract_audits(catalog: "Catalog", name: str) -> list[AuditFn]:
    """The audits of gold.<name>: Pandera, then one GX run for gates and soft signals."""
    from spanda_assets.lib.validation.gold import SPECS

    spec = SPECS[name]

    def pandera_contract(pending: "Pending") -> Audit:
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import run_pandera
        from spanda_assets.lib.validation.gold import reference_keys, reference_tables

        # The lookups the gold rules make, checked again on what gold would publish.
        tables = reference_tables(catalog, spec.references)
        refs = {c: keys.to_pylist() for c, keys in reference_keys(tables).items()}
        scope = history.scope(pending)
        result = run_pandera(name, pending.view, refs, spec.key, scope.after_sequence)
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
        return Audit(
            check_name="pandera_contract",
            passed=result.passed,
            metadata={
                "rows_checked": result.rows,
                **_scope_metadata(scope),
                "failure_cases": result.failed,
                "failures": dg.MetadataValue.json(result.failures),
                **_history_metadata(catalog, name, "pandera_contract"),
            },
            failing={"failure_cases": result.failed, "failures": result.failures},
        )

    def great_expectations(pending: "Pending") -> list[Audit]:
        from spanda_assets.lib.validation import history
        from spanda_assets.lib.validation.contracts import (
            ContractResult,
            existing_docs,
            gx_frame,
            load_suite,
            run_gx,
        )

        suite = load_suite(name)
        scope = history.scope(pending)
        frame = gx_frame(pending.view, suite["columns"], scope.after_sequence)
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
        audits = []
        for check_name, severity, blocking in (
            ("gx_gates", "gate", True),
            ("gx_soft_signals", "soft", False),
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
            audits.append(
                Audit(
                    check_name=check_name,
                    passed=result.passed,
                    metadata=metadata,
                    blocking=blocking,
                    failing={"failed_expectations": result.failed, "failures": result.failures},
                )
            )
        return audits

    return [pandera_contract, great_expectations]
