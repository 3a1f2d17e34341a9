"""The watermark of an incremental extract, and the query that reads past it.

The watermark is the highest cursor value bronze holds. It is written into the
summary of the snapshot that committed those rows (lib/writes.remember_state),
so data and watermark commit together or not at all (docs/decisions/0016).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from pyiceberg.table import Table
from sqlalchemy.dialects import mssql
from sqlalchemy.engine import Dialect

from spanda_assets.lib.sources import SourceTable
from spanda_assets.lib.writes import read_state

WATERMARK_KEY = "spanda.watermark"


# --------------------------------------------------------------------------- watermark


@dataclass(frozen=True)
class Watermark:
    """The highest cursor value committed to bronze, with its type for the SQL bind."""

    column: str
    kind: str
    value: Any

    def to_json(self) -> str:
        v = self.value
        if isinstance(v, dt.datetime | dt.date):
            raw: Any = v.isoformat()
        elif isinstance(v, Decimal):
            raw = str(v)
        else:
            raw = v
        return json.dumps({"column": self.column, "type": self.kind, "value": raw})

    @classmethod
    def from_json(cls, text: str) -> Watermark:
        d = json.loads(text)
        kind, raw = d["type"], d["value"]
        value: Any
        if kind == "timestamp":
            value = dt.datetime.fromisoformat(raw)
        elif kind == "date":
            value = dt.date.fromisoformat(raw)
        elif kind == "decimal":
            value = Decimal(raw)
        else:
            value = raw
        return cls(column=d["column"], kind=kind, value=value)

    def display(self) -> str:
        return "none" if self.value is None else str(self.value)


def cursor_kind(t: pa.DataType) -> str:
    if pa.types.is_timestamp(t):
        return "timestamp"
    if pa.types.is_date(t):
        return "date"
    if pa.types.is_decimal(t):
        return "decimal"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "string"


def read_watermark(table: Table) -> Watermark | None:
    """The watermark of the newest extract commit (lib/writes.read_state).

    Snapshots written by other operations (a compaction, a manual delete) carry
    none and are skipped; their ancestors' watermark still describes the data,
    and after those ancestors expired the table property copy does.
    """
    raw = read_state(table, WATERMARK_KEY, (WATERMARK_KEY,)).get(WATERMARK_KEY)
    return Watermark.from_json(raw) if raw else None


# --------------------------------------------------------------------------- SQL


def sql_bound(watermark: Watermark, dialect_name: str) -> Any:
    """The watermark as a SQL value of the cursor's type.

    SQL Server's legacy DATETIME rejects strings with six fractional digits, so
    the literal is cast to DATETIME2 there; other dialects compare the plain
    literal (a CAST would turn SQLite's text timestamps into numbers).
    """
    if dialect_name == "mssql" and watermark.kind == "timestamp":
        return sa.cast(sa.literal(watermark.value, sa.DateTime()), mssql.DATETIME2(6))
    return watermark.value


def build_select(
    table: sa.Table,
    source: SourceTable,
    watermark: Watermark | None,
    null_cursor: bool = False,
    dialect_name: str = "",
) -> sa.Select[Any]:
    """The incremental query: inclusive range on the cursor, ordered by it."""
    cursor = table.c[source.cursor]
    stmt = sa.select(*table.columns)
    if null_cursor:
        return stmt.where(cursor.is_(None)).order_by(*[table.c[k] for k in source.primary_key])
    if watermark is not None:
        stmt = stmt.where(cursor >= sql_bound(watermark, dialect_name))
    else:
        stmt = stmt.where(cursor.is_not(None))
    order = [cursor] + [table.c[k] for k in source.primary_key if k != source.cursor]
    return stmt.order_by(*order)


def compile_sql(stmt: sa.Select[Any], dialect: Dialect) -> str:
    """Render with literal values: connectorx takes plain SQL text, not bind parameters."""
    return str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def advance(
    rows: pa.Table, column: str, source_column: str, kind: str, previous: Watermark | None
) -> Watermark | None:
    """The watermark after `rows`: their highest cursor, never lower than `previous`."""
    top = pc.max(rows.column(column)).as_py()
    if top is None:
        return previous
    if previous is not None and previous.value is not None and previous.value > top:
        return previous
    return Watermark(column=source_column, kind=kind, value=top)
