"""Declared SQL types to Arrow, the type-change rules, and casting with row-level errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql, postgresql

from spanda_assets.lib.arrow_types import cast_batch, classify_change, plan_schema, sql_to_arrow
from spanda_assets.lib.errors import SchemaIncompatibleError


@pytest.mark.parametrize(
    ("sql_type", "dialect", "expected"),
    [
        (sa.Integer(), "sqlite", pa.int64()),
        (sa.Integer(), "mssql", pa.int32()),
        (sa.BigInteger(), "postgresql", pa.int64()),
        (sa.Numeric(6, 2), "mssql", pa.decimal128(6, 2)),
        (sa.Numeric(), "sqlite", pa.decimal128(38, 9)),
        (sa.Float(), "postgresql", pa.float64()),
        (mssql.DATETIME2(), "mssql", pa.timestamp("us")),
        (postgresql.TIMESTAMP(timezone=True), "postgresql", pa.timestamp("us", tz="UTC")),
        (sa.Date(), "mssql", pa.date32()),
        (mssql.NVARCHAR(50), "mssql", pa.string()),
        (mssql.UNIQUEIDENTIFIER(), "mssql", pa.string()),
        (sa.Boolean(), "postgresql", pa.bool_()),
        (mssql.BIT(), "mssql", pa.bool_()),
    ],
)
def test_sql_to_arrow(
    sql_type: sa.types.TypeEngine[object], dialect: str, expected: pa.DataType
) -> None:
    assert sql_to_arrow(sql_type, dialect) == expected


@pytest.mark.parametrize(
    ("table", "source", "change"),
    [
        (pa.int64(), pa.int64(), "same"),
        (pa.int32(), pa.int64(), "widen"),
        (pa.int64(), pa.int32(), "narrow"),
        (pa.float32(), pa.float64(), "widen"),
        (pa.decimal128(6, 2), pa.decimal128(10, 2), "widen"),
        (pa.decimal128(10, 2), pa.decimal128(6, 2), "narrow"),
        (pa.decimal128(6, 2), pa.decimal128(6, 0), "incompatible"),
        (pa.decimal128(6, 2), pa.int64(), "incompatible"),
        (pa.timestamp("us"), pa.date32(), "incompatible"),
        (pa.string(), pa.int64(), "incompatible"),
        (pa.large_string(), pa.string(), "same"),
        (pa.timestamp("us"), pa.timestamp("ns"), "narrow"),
        (pa.timestamp("us"), pa.timestamp("us", tz="UTC"), "incompatible"),
    ],
)
def test_classify_change(table: pa.DataType, source: pa.DataType, change: str) -> None:
    assert classify_change(table, source) == change


def test_plan_schema_adds_widens_and_reports_missing() -> None:
    table = pa.schema([("id", pa.int32()), ("a", pa.string()), ("gone", pa.string())])
    source = pa.schema([("id", pa.int64()), ("a", pa.string()), ("new_col", pa.date32())])
    plan = plan_schema("bronze.t", table, source, {})
    assert [f.name for f in plan.add_columns] == ["new_col"]
    assert [f.name for f in plan.widen_columns] == ["id"]
    assert plan.missing_in_source == ("gone",)


def test_plan_schema_refuses_narrowing_with_table_and_column_named() -> None:
    table = pa.schema([("id", pa.int64()), ("score", pa.decimal128(6, 2))])
    source = pa.schema([("id", pa.int64()), ("score", pa.int32())])
    with pytest.raises(SchemaIncompatibleError) as err:
        plan_schema("bronze.assessment_results", table, source, {"score": "Score"})
    msg = str(err.value)
    assert "bronze.assessment_results" in msg
    assert "column Score (bronze score)" in msg
    assert "decimal128(6, 2)" in msg and "int32" in msg
    assert "Nothing was written" in msg and "--full-refresh" in msg


def _batch(**cols: pa.Array) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(cols)


def test_cast_batch_converts_sqlite_storage_to_declared_types() -> None:
    target = pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            pa.field("ts", pa.timestamp("us")),
            pa.field("d", pa.date32()),
            pa.field("score", pa.decimal128(6, 2)),
            pa.field("whole", pa.decimal128(6, 2)),
            pa.field("dropped_at_source", pa.string()),
        ]
    )
    batch = _batch(
        id=pa.array([1, 2]),
        ts=pa.array(["2026-09-01 08:00:00.123456", "2026-09-02"]),
        d=pa.array(["2026-09-01", "2010-01-31"]),
        score=pa.array([12.346, 7.1]),
        whole=pa.array([20, 100]),
    )
    out = cast_batch(batch, target, "bronze.t", ["id"], {})
    assert out.schema == target
    rows = out.to_pylist()
    assert rows[0]["ts"] == dt.datetime(2026, 9, 1, 8, 0, 0, 123456)
    assert rows[1]["ts"] == dt.datetime(2026, 9, 2)  # a bare date in a DATETIME column
    assert rows[1]["d"] == dt.date(2010, 1, 31)
    assert rows[0]["score"] == Decimal("12.35")
    assert rows[1]["score"] == Decimal("7.10")
    assert rows[1]["whole"] == Decimal("100.00")
    assert rows[0]["dropped_at_source"] is None


def test_cast_batch_names_table_column_and_row_of_a_bad_value() -> None:
    target = pa.schema([pa.field("post_id", pa.int64(), nullable=False), ("n", pa.int64())])
    batch = _batch(post_id=pa.array([10, 11, 12]), n=pa.array(["1", "2", "three"]))
    with pytest.raises(SchemaIncompatibleError) as err:
        cast_batch(batch, target, "bronze.forum_posts", ["post_id"], {"n": "N"})
    msg = str(err.value)
    assert "bronze.forum_posts" in msg and "column N" in msg and "post_id=12" in msg


def test_cast_batch_rejects_null_primary_key() -> None:
    target = pa.schema([pa.field("k", pa.int64(), nullable=False)])
    with pytest.raises(SchemaIncompatibleError, match=r"primary-key column K is NULL in 1 row"):
        cast_batch(_batch(k=pa.array([1, None])), target, "bronze.t", ["k"], {"k": "K"})
