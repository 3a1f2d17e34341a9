"""The BI file follows gold by itself: dashboards show what main published, within minutes.

`bi/lakehouse_file` rewrites SPANDA_HOME/bi/lakehouse.duckdb (lib/bi/refresh.py,
decision 0034) whenever a gold table's main moved (new rows, or an erasure), so
Superset's charts move to the new snapshots, and erased rows leave the file, with
nobody running `spanda bi refresh`. Its check reads the file back: every table is
pinned to a snapshot main held.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from spanda_assets.defs.validation.assets import gold_key
from spanda_assets.resources import LakehouseResource

BI_KEY = dg.AssetKey(["bi", "lakehouse_file"])
GOLD_TABLES = (
    "validated_posts",
    "validated_enrollments",
    "validated_assessments",
    "labeled_posts",
    "post_predictions",
)


def after_gold_published() -> dg.AutomationCondition:
    """Any gold parent updated since the last refresh, and no refresh running.

    No wait for the parents' blocking checks: the refresh reads main, which only moves
    after they passed (write-audit-publish), and a check that never ran (no model
    trained yet, so no predictions) must not hold back the other tables, nor an erasure
    that main already applied. Unlike `eager`, a parent that never materialized does
    not hold the others back either: its table in the file is empty."""
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("after a gold table published")


@dg.asset(
    key=BI_KEY,
    deps=[gold_key(name) for name in GOLD_TABLES],
    group_name="bi",
    kinds={"duckdb", "superset"},
    owners=["team:data-platform"],
    tags={"spanda/layer": "bi", "spanda/pii": "de-identified"},
    automation_condition=after_gold_published(),
    check_specs=[
        dg.AssetCheckSpec(
            "pinned_to_main",
            asset=BI_KEY,
            description="Read back from the file: every table is pinned to a snapshot of "
            "its table's main (main now, or one main held before), never to the audit "
            "branch's unpublished head; and nothing but gold is exposed.",
        )
    ],
    description=(
        "The DuckDB file Superset reads (SPANDA_HOME/bi/lakehouse.duckdb): each gold "
        "table's rows at its main snapshot, pinned, so every chart of a dashboard reads "
        "one consistent set of snapshots, and a SQL Lab user can read nothing but these "
        "copies (no file, no other snapshot, no audit branch). Written beside the old "
        "file and renamed over it. Never bronze. Runs whenever a gold table's main "
        "moved; `spanda bi refresh` does the same by hand (docs/bi.md)."
    ),
)
def lakehouse_file(lakehouse: LakehouseResource) -> Iterator[Any]:
    from spanda_assets.lib.bi.refresh import off_main, read_pins, refresh

    catalog = lakehouse.catalog()
    done = refresh(catalog)
    pins = read_pins(done.path)
    exposed = sorted(pins)
    yield dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(done.path)),
            "tables": dg.MetadataValue.json({t.qualified: t.mode for t in done.tables}),
            "snapshots": dg.MetadataValue.json(
                {k: str(v) if v is not None else None for k, v in pins.items()}
            ),
            "seconds": round(done.seconds, 2),
        }
    )
    outside = [name for name in exposed if not name.startswith("gold.")]
    moved = off_main(catalog, pins)
    yield dg.AssetCheckResult(
        check_name="pinned_to_main",
        passed=not outside and not moved,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "exposed": dg.MetadataValue.json(exposed),
            "outside_gold": dg.MetadataValue.json(outside),
            "not_on_main": dg.MetadataValue.json(moved),
        },
    )


defs = dg.Definitions(assets=[lakehouse_file])
