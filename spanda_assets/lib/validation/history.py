"""Data-quality history: one row per check run in gold.dq_history (pass rate over time).

Each row also records what the check validated: the table's UUID and the
sequence number of the audit branch's head. The checks audit what the audit
branch holds that main lacks (write-audit-publish): rows are validated once
when they arrive, and rows a failing run saw are validated again, since they
stay unpublished, until a run passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.writes import eq_filter, row_count, sequence

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from spanda_assets.lib.writes import Pending

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
        pa.field("rows_checked", pa.int64()),
        pa.field("table_uuid", pa.string()),
        pa.field("through_sequence", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Scope:
    """What a check run validates: the rows of data files added after `after_sequence`."""

    table_uuid: str
    after_sequence: int  # 0: the whole table
    through_sequence: int  # the table's newest sequence number at check time
    row_count: int  # rows in the whole table (from the snapshot summary)


def _table(catalog: Catalog) -> Table:
    ensure_namespace(catalog, "gold")
    t = catalog.create_table_if_not_exists(HISTORY, schema=SCHEMA)
    if "through_sequence" not in t.schema().column_names:  # written by an older version
        with t.update_schema() as update:
            update.union_by_name(SCHEMA)
    return t


def scope(pending: Pending) -> Scope:
    """Rows to validate: those on the audit branch that main lacks (everything since the
    last passing audit, as main moves only when the audit passes)."""
    view = pending.view
    return Scope(
        str(view.metadata.table_uuid),
        pending.after_sequence,
        sequence(view.current_snapshot()),
        row_count(view),
    )


def record(
    catalog: Catalog,
    table: str,
    check: str,
    passed: bool,
    evaluated: int,
    failed: int,
    rows: int,
    checked: Scope | None = None,
    rows_checked: int | None = None,
) -> None:
    rate = 1.0 if evaluated == 0 else (evaluated - failed) / evaluated
    _table(catalog).append(
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
                "rows_checked": [rows if rows_checked is None else rows_checked],
                "table_uuid": [checked.table_uuid if checked else None],
                "through_sequence": [checked.through_sequence if checked else None],
            },
            schema=SCHEMA,
        )
    )


def recent(
    catalog: Catalog, table: str, check: str, last: int = 30, passed_only: bool = False
) -> pa.Table:
    t = load_table_or_none(catalog, *HISTORY)
    if t is None or "through_sequence" not in t.schema().column_names:
        return SCHEMA.empty_table()
    rows = t.scan(row_filter=eq_filter("table_name", table)).to_arrow()
    rows = rows.filter(pc.equal(rows["check_name"], check))
    if passed_only:
        rows = rows.filter(pc.fill_null(rows["passed"], False))
    rows = rows.sort_by([("checked_at", "descending")])
    return rows.slice(0, last)


def markdown(rows: pa.Table) -> str:
    lines = [
        "| checked at (UTC) | passed | pass rate | rows checked | table rows |",
        "|---|---|---|---|---|",
    ]
    for r in rows.to_pylist():
        lines.append(
            f"| {r['checked_at']:%Y-%m-%d %H:%M} | {'yes' if r['passed'] else 'NO'} "
            f"| {r['pass_rate']:.2%} | {r['rows_checked'] or 0:,} | {r['row_count']:,} |"
        )
    return "\n".join(lines)


def summary_markdown(catalog: Catalog, table: str, checks: tuple[str, ...], last: int = 30) -> str:
    """Per check: runs recorded, pass rate of the last `last` runs, the latest outcome."""
    lines = [
        f"| check | runs (last {last}) | passed | mean pass rate | latest |",
        "|---|---|---|---|---|",
    ]
    for check in checks:
        rows = recent(catalog, table, check, last=last)
        if not rows.num_rows:
            lines.append(f"| {check} | 0 | - | - | not run yet |")
            continue
        passed = rows.column("passed").to_pylist()
        rates = rows.column("pass_rate").to_pylist()
        latest = rows.slice(0, 1).to_pylist()[0]
        outcome = "passed" if latest["passed"] else "FAILED"
        lines.append(
            f"| {check} | {len(passed)} | {sum(1 for p in passed if p)} "
            f"| {sum(rates) / len(rates):.2%} "
            f"| {outcome} {latest['checked_at']:%Y-%m-%d %H:%M} |"
        )
    return "\n".join(lines)
