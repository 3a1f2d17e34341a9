"""Source column types to Arrow types, and the rules for when a type may change.

The source's *declared* types (read by SQLAlchemy reflection) decide the Arrow
schema, not the values a driver happens to see first: SQLite stores anything in
any column, and a NULL-only first batch must not decide a column's type.

Type changes follow Iceberg's own promotion lattice (int -> long,
float -> double, decimal(P,S) -> decimal(P',S) with P' > P):

* source wider than the bronze column, within the lattice: evolve the table;
* source narrower, within the lattice: cast losslessly on write;
* anything else (string <-> number, timestamp -> date, a decimal scale change):
  an incompatible change that needs a person's decision.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from spanda_assets.lib.errors import SchemaIncompatibleError, SourceTableError
from spanda_assets.lib.naming import snake_case

# Decimal with no declared precision (SQLite NUMERIC, PostgreSQL numeric).
UNBOUNDED_DECIMAL = pa.decimal128(38, 9)


def sql_to_arrow(col_type: sa.types.TypeEngine, dialect_name: str) -> pa.DataType:
    """Map a reflected SQLAlchemy column type to the Arrow type bronze stores."""
    t = col_type
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.Integer):
        # SQLite integers are always 64-bit; elsewhere INT is 32-bit.
        return pa.int64() if dialect_name == "sqlite" else pa.int32()
    if isinstance(t, sa.Float):
        return pa.float64()
    if isinstance(t, sa.Numeric):
        if t.precision is None:
            return UNBOUNDED_DECIMAL
        precision = min(int(t.precision), 38)
        scale = int(t.scale or 0)
        return pa.decimal128(precision, scale)
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us", tz="UTC" if getattr(t, "timezone", False) else None)
    if isinstance(t, sa.Date):
        return pa.date32()
    if isinstance(t, sa.Time):
        return pa.time64("us")
    if isinstance(t, sa.Uuid):
        return pa.string()
    if isinstance(t, sa.String | sa.Enum):
        return pa.string()
    if isinstance(t, sa.LargeBinary | sa.types._Binary):
        return pa.binary()
    raise TypeError(f"unsupported column type {t!r}")


def normalize(t: pa.DataType) -> pa.DataType:
    """Treat Arrow's large/small string and binary variants as one type."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return pa.binary()
    return t


Change = Literal["same", "widen", "narrow", "incompatible"]


def classify_change(table_type: pa.DataType, source_type: pa.DataType) -> Change:
    """How the source's type relates to the bronze column's type."""
    a, b = normalize(table_type), normalize(source_type)
    if a == b:
        return "same"
    ints = {pa.int8(): 1, pa.int16(): 2, pa.int32(): 3, pa.int64(): 4}
    if a in ints and b in ints:
        if ints[b] > ints[a]:
            # Iceberg has only int (32) and long (64).
            return "widen" if b == pa.int64() else "narrow"
        return "narrow"
    floats = {pa.float16(): 1, pa.float32(): 2, pa.float64(): 3}
    if a in floats and b in floats:
        return "widen" if floats[b] > floats[a] else "narrow"
    if pa.types.is_decimal(a) and pa.types.is_decimal(b) and a.scale == b.scale:
        return "widen" if b.precision > a.precision else "narrow"
    if pa.types.is_timestamp(a) and pa.types.is_timestamp(b) and a.tz == b.tz:
        return "narrow"  # unit differences are cast to microseconds
    return "incompatible"


@dataclass(frozen=True)
class SchemaPlan:
    """What must happen to the bronze table before this source's rows fit."""

    add_columns: tuple[pa.Field, ...]
    widen_columns: tuple[pa.Field, ...]
    missing_in_source: tuple[str, ...]


def plan_schema(
    table_label: str,
    table_schema: pa.Schema,
    source_schema: pa.Schema,
    source_names: dict[str, str],
) -> SchemaPlan:
    """Compare the bronze schema with the source's and decide, before anything is written.

    `source_names` maps bronze (snake_case) column names back to source names for
    error messages.
    """
    add: list[pa.Field] = []
    widen: list[pa.Field] = []
    problems: list[str] = []
    for field in source_schema:
        if field.name not in table_schema.names:
            add.append(field)
            continue
        existing = table_schema.field(field.name)
        change = classify_change(existing.type, field.type)
        if change == "widen":
            widen.append(field)
        elif change == "incompatible":
            problems.append(
                f"column {source_names.get(field.name, field.name)} (bronze {field.name}) is "
                f"{normalize(existing.type)} in the lakehouse but the source now has "
                f"{normalize(field.type)}"
            )
    if problems:
        raise SchemaIncompatibleError(
            f"{table_label}: incompatible schema change: {'; '.join(problems)}. Nothing was "
            "written. Iceberg can only widen int->long, float->double and decimal precision. "
            "Restore the column's type at the source, or rebuild the bronze table from the "
            "source with `spanda extract <name> --full-refresh` (its old snapshots are dropped)."
        )
    missing = tuple(n for n in table_schema.names if n not in source_schema.names)
    return SchemaPlan(tuple(add), tuple(widen), missing)


def _describe_row(batch: pa.RecordBatch, key_cols: list[str], index: int) -> str:
    return ", ".join(f"{k}={batch.column(k)[index].as_py()!r}" for k in key_cols)


def cast_batch(
    batch: pa.RecordBatch,
    target: pa.Schema,
    table_label: str,
    key_cols: list[str],
    source_names: dict[str, str],
) -> pa.RecordBatch:
    """Cast a batch (already renamed to bronze names) to the bronze Arrow schema.

    Columns the source no longer sends become NULL.  A value that does not fit
    (a string in an integer column of a SQLite table, say) raises an error that
    names the table, the column and the first offending row's key.
    """
    arrays: list[pa.Array] = []
    for field in target:
        if field.name not in batch.schema.names:
            arrays.append(pa.nulls(batch.num_rows, type=field.type))
            continue
        col = batch.column(field.name)
        if col.type == field.type:
            arrays.append(col)
            continue
        try:
            arrays.append(_cast_column(col, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad = _first_bad_row(col, field.type)
            where = f" at row {_describe_row(batch, key_cols, bad)}" if bad is not None else ""
            raise SchemaIncompatibleError(
                f"{table_label}: column {source_names.get(field.name, field.name)} holds a value "
                f"that is not {normalize(field.type)}{where} ({exc}). Nothing from this batch was "
                "written. Fix the value at the source, or declare the column's type under "
                "`column_types` of this table in sources.yaml."
            ) from exc
    out = pa.RecordBatch.from_arrays(arrays, schema=target)
    for k in key_cols:
        nulls = out.column(k).null_count
        if nulls:
            raise SchemaIncompatibleError(
                f"{table_label}: primary-key column {source_names.get(k, k)} is NULL in {nulls} "
                "row(s) of this batch; key columns must be NOT NULL. Nothing from this batch "
                "was written."
            )
    return out


def _cast_column(col: pa.Array, target: pa.DataType) -> pa.Array:
    src = col.type
    if pa.types.is_floating(src) and pa.types.is_decimal(target):
        # SQLite keeps NUMERIC as REAL: round to the declared scale first.
        return pc.cast(pc.round(col, target.scale), target)
    if pa.types.is_integer(src) and pa.types.is_decimal(target):
        # Arrow sizes int->decimal for any int64; go wide, then check the values fit.
        return pc.cast(pc.cast(col, pa.decimal128(38, target.scale)), target)
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(target):
        # SQL Server datetime2 has 100 ns ticks; Iceberg keeps microseconds.
        return pc.cast(col, target, safe=False)
    if pa.types.is_string(src) or pa.types.is_large_string(src):
        if pa.types.is_timestamp(target):
            # SQLite text: 'YYYY-MM-DD HH:MM:SS[.ffffff]', or a bare 'YYYY-MM-DD' (midnight).
            has_time = pc.greater(pc.utf8_length(col), 10)
            iso = pc.if_else(
                has_time,
                pc.utf8_replace_slice(col, 10, 11, "T"),
                pc.binary_join_element_wise(col, "T00:00:00", ""),
            )
            return pc.cast(iso, target)
        if pa.types.is_date(target):
            return pc.cast(pc.utf8_slice_codeunits(col, 0, 10), target)
    return pc.cast(col, target)


def _first_bad_row(col: pa.Array, target: pa.DataType) -> int | None:
    """Locate the first value that fails the cast (slow path, only on error)."""
    for i in range(len(col)):
        try:
            _cast_column(col.slice(i, 1), target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return i
    return None


TYPE_NAMES = "string, int32, int64, float64, bool, date, timestamp, decimal(P,S)"


def type_name(t: pa.DataType) -> str:
    """An Arrow type as the names sources.yaml uses (float64, string, date, ...)."""
    t = normalize(t)
    names = {"double": "float64", "float": "float32", "date32[day]": "date", "bool": "bool"}
    return names.get(str(t), str(t))


def parse_type_name(name: str) -> pa.DataType:
    """A `column_types` entry of sources.yaml as an Arrow type."""
    simple = {
        "string": pa.string(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }
    key = name.strip().lower()
    if key in simple:
        return simple[key]
    m = re.fullmatch(r"decimal\((\d+),\s*(\d+)\)", key)
    if m:
        return pa.decimal128(int(m.group(1)), int(m.group(2)))
    raise ValueError(f"unknown type {name!r}; use one of {TYPE_NAMES}")


def reflected_schema(
    table: sa.Table,
    dialect: Dialect,
    table_label: str,
    key_cols: list[str],
    column_types: dict[str, str] | None = None,
) -> tuple[pa.Schema, dict[str, str]]:
    """Arrow schema (bronze names) of a reflected source table, and bronze->source names.

    `column_types` (from sources.yaml) overrides the type the SQL declaration gives.
    """
    declared = column_types or {}
    unknown = set(declared) - {c.name for c in table.columns}
    if unknown:
        raise SourceTableError(
            f"{table_label}: column_types names column(s) {sorted(unknown)} that the table "
            "does not have"
        )

    fields = []
    names: dict[str, str] = {}
    for col in table.columns:
        bronze = snake_case(col.name)
        if bronze in names:
            raise SourceTableError(
                f"{table_label}: columns {names[bronze]} and {col.name} both map to bronze "
                f"column {bronze}; rename one at the source"
            )
        try:
            arrow_type = (
                parse_type_name(declared[col.name])
                if col.name in declared
                else sql_to_arrow(col.type, dialect.name)
            )
        except TypeError as exc:
            raise SourceTableError(
                f"{table_label}: column {col.name} has type {col.type} that Spanda cannot map to "
                "Arrow; expose it through a view that CASTs it to a standard type"
            ) from exc
        names[bronze] = col.name
        fields.append(pa.field(bronze, arrow_type, nullable=col.name not in key_cols))
    return pa.schema(fields), names
