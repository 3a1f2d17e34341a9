"""Data-quality history: one row per check run in gold.dq_history (pass rate over time)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

HISTORY = ("gold", "dq_history")
SCHEMA = pa.schema(
    [
        pa.field("checked_at", pa.timestamp("us"), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("check_name", pa.string(), nullable=False),
        pa.field("passed", pa.bool_()),
        pa.field("evaluated", pa.int64()),
        pa.field("failed", pa.int64()),
        pa.field("pass_rate", pa.float64()),
        pa.field("row_count", pa.int64()),
    ]
)


def record(
    catalog: Catalog, table: str, check: str, passed: bool, evaluated: int, failed: int, rows: int
) -> None:
    from spanda_assets.lib.lakehouse import ensure_namespace

    ensure_namespace(catalog, "gold")
    t = catalog.create_table_if_not_exists(HISTORY, schema=SCHEMA)
    rate = 1.0 if evaluated == 0 else (evaluated - failed) / evaluated
    t.append(
        pa.table(
            {
                "checked_at": [dt.datetime.now(dt.UTC).replace(tzinfo=None)],
                "table_name": [table],
                "check_name": [check],
                "passed": [passed],
                "evaluated": [evaluated],
                "failed": [failed],
                "pass_rate": [rate],
                "row_count": [rows],
            },
            schema=SCHEMA,
        )
    )


def recent(catalog: Catalog, table: str, check: str, last: int = 30) -> pa.Table:
    from spanda_assets.lib.lakehouse import eq_filter, load_table_or_none

    t = load_table_or_none(catalog, *HISTORY)
    if t is None:
        return SCHEMA.empty_table()
    rows = t.scan(row_filter=eq_filter("table_name", table)).to_arrow()
    rows = rows.filter(pc.equal(rows["check_name"], check)).sort_by([("checked_at", "descending")])
    return rows.slice(0, last)


def markdown(rows: pa.Table) -> str:
    lines = ["| checked at (UTC) | passed | pass rate | rows |", "|---|---|---|---|"]
    for r in rows.to_pylist():
        lines.append(
            f"| {r['checked_at']:%Y-%m-%d %H:%M} | {'yes' if r['passed'] else 'NO'} "
            f"| {r['pass_rate']:.2%} | {r['row_count']:,} |"
        )
    return "\n".join(lines)
