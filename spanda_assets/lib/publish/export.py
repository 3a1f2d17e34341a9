"""A published version's files, written from its Iceberg snapshot in one streaming pass.

A version DOI promises the same bytes forever. The snapshot is fixed (its Iceberg tag
keeps it from expiry), the scan reads its files in manifest order, and the writers are
given every option that could vary (codec, level, row-group size, format version), so
writing the same snapshot again with the same library versions gives the same bytes.
The SHA-256 of each file is published in the version's metadata; a reader can check
what they downloaded against it.

Whether the data changed since the last version is decided by `content_digest`, which
ignores row order: a compaction rewrites files and reorders rows without changing a
value, and must not mint a new DOI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pandas.util import hash_array
from pyiceberg.expressions import AlwaysTrue, BooleanExpression
from pyiceberg.io.pyarrow import ArrowScan

from spanda_assets.lib.files import file_digest as file_sha256
from spanda_assets.lib.files import fsync_path

if TYPE_CHECKING:
    from pyiceberg.table import Table

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
ROW_GROUP_ROWS = 131_072
# How every Parquet file Spanda hands out is written (published versions, downloads).
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "version": "2.6",
    "write_statistics": True,
    "use_dictionary": True,
}


@dataclass(frozen=True)
class Distribution:
    """One downloadable file of a version."""

    format: str  # parquet | csv
    media_type: str
    file_name: str
    size: int  # bytes
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "media_type": self.media_type,
            "file_name": self.file_name,
            "size": self.size,
            "sha256": self.sha256,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class Export:
    """What one pass over a snapshot wrote and measured."""

    snapshot_id: int
    rows: int
    columns: tuple[str, ...]
    content_digest: str
    directory: Path
    distributions: tuple[Distribution, ...]


class _Digest:
    """An order-independent digest of rows: the sum (mod 2^64) and the XOR of a 64-bit
    hash of each row, with the row count and the schema. Two multisets of rows with the
    same digest are the same data for any practical purpose; the digest changes when
    a value, a row or a column changes, never when only the order does."""

    def __init__(self, schema: pa.Schema) -> None:
        self.total = np.uint64(0)
        self.xor = np.uint64(0)
        self.rows = 0
        # names only: a type that reads back wider (string as large_string, int as long)
        # holds the same values, and the values are hashed by kind, not by width
        self.schema = ",".join(f.name for f in schema)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        hashed = np.zeros(batch.num_rows, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for column in batch.columns:
                hashed = (hashed * _PRIME) ^ _column_hash(column)
                self.total = np.uint64(self.total + hashed.sum(dtype=np.uint64))
        self.xor = np.uint64(self.xor ^ np.bitwise_xor.reduce(hashed))
        self.rows += batch.num_rows

    def hexdigest(self) -> str:
        raw = f"{self.schema}|{self.rows}|{int(self.total)}|{int(self.xor)}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


_PRIME = np.uint64(1_099_511_628_211)  # FNV's 64-bit prime: mixes column hashes in order
_NULL = np.uint64(0x9E37_79B9_7F4A_7C15)  # what a null hashes to, in any column


def _column_hash(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash per value that depends on the value only: not on the batch it came
    in (pandas turns an int column with a null into floats, batch by batch), not on
    string vs large_string, not on the timestamp unit. Nested, decimal and binary values
    hash through their canonical JSON text."""
    t = column.type
    if pa.types.is_boolean(t) or pa.types.is_integer(t):
        values: np.ndarray = pc.cast(column, pa.int64()).fill_null(0).to_numpy()
    elif pa.types.is_floating(t):
        values = pc.cast(column, pa.float64()).fill_null(0.0).to_numpy()
    elif pa.types.is_timestamp(t):
        micros = pc.cast(column, pa.timestamp("us", tz=t.tz))
        values = pc.cast(micros, pa.int64()).fill_null(0).to_numpy()
    elif pa.types.is_date(t):
        days = pc.cast(column, pa.date32())
        values = pc.cast(pc.cast(days, pa.int32()), pa.int64()).fill_null(0).to_numpy()
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text = pc.cast(column, pa.large_string()).fill_null("")
        values = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
    else:
        values = np.asarray(
            [json.dumps(v, sort_keys=True, default=str) for v in column.to_pylist()],
            dtype=object,
        )
    hashed: np.ndarray = hash_array(values, categorize=False).astype(np.uint64, copy=False)
    if column.null_count:
        hashed = np.where(np.asarray(column.is_valid()), hashed, _NULL).astype(np.uint64)
    return hashed


def snapshot_batches(
    table: Table,
    snapshot_id: int,
    columns: Iterable[str] | None = None,
    row_filter: BooleanExpression | None = None,
) -> Iterator[pa.RecordBatch]:
    """The rows of `snapshot_id` (those `row_filter` keeps), batch by batch, in the
    snapshot's file order.

    One data file is read at a time: pyiceberg's own batch reader starts every file of
    the scan at once and holds each file's batches until they are consumed, which for
    a large table is the whole table in memory. A filter also prunes whole files by
    their column statistics before any is opened."""
    fields = tuple(columns) if columns is not None else ("*",)
    scan = table.scan(
        snapshot_id=snapshot_id,
        selected_fields=fields,
        row_filter=row_filter if row_filter is not None else AlwaysTrue(),
    )
    reader = ArrowScan(table.metadata, table.io, scan.projection(), scan.row_filter)
    for task in scan.plan_files():
        yield from reader.to_record_batches([task])


def content_digest(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> tuple[str, int]:
    """(order-independent digest, row count) of a stream of batches."""
    digest = _Digest(schema)
    for batch in batches:
        digest.add(batch)
    return digest.hexdigest(), digest.rows


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """The schema without Iceberg's field-id metadata: a reader of the download needs
    names and types, and the ids of another system's schema are noise there."""
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])


def export_snapshot(
    table: Table,
    snapshot_id: int,
    directory: Path,
    stem: str,
    columns: Iterable[str] | None = None,
) -> Export:
    """Write `stem`.parquet and `stem`.csv of `snapshot_id` into `directory`.

    One pass over the snapshot feeds both writers and the content digest, holding one
    data file's batches and at most one row group at a time. The files are written in a
    temporary directory beside the target and moved in with one rename, so a crash
    leaves either the finished version or no version, never half a file under the
    published name. A directory that already
    holds the version is replaced only by identical content (same snapshot, same
    bytes); anything else is an error, since a published file must never change.
    """
    if table.snapshot_by_id(snapshot_id) is None:
        raise ValueError(
            f"{'.'.join(table.name())} has no snapshot {snapshot_id}: it expired or never "
            "existed, so the version cannot be written from it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    remove_staging(directory)  # a crashed run's leftovers (the caller holds the lock)
    staging = directory.parent / f".{directory.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        batches = snapshot_batches(table, snapshot_id, columns)
        first = next(batches, None)
        schema = plain_schema(
            first.schema
            if first is not None
            else table.scan(snapshot_id=snapshot_id).projection().as_arrow()
        )
        digest = _Digest(schema)
        parquet_path = staging / f"{stem}.parquet"
        csv_path = staging / f"{stem}.csv"
        with (
            pq.ParquetWriter(parquet_path, schema, **PARQUET_OPTIONS) as pw,
            pacsv.CSVWriter(csv_path, schema) as cw,
        ):
            pending = schema.empty_table()
            for scanned in _chain(first, batches):
                batch = pa.RecordBatch.from_arrays(scanned.columns, schema=schema)
                digest.add(batch)
                cw.write_batch(batch)
                pending = pa.concat_tables([pending, pa.Table.from_batches([batch], schema)])
                # row groups of exactly ROW_GROUP_ROWS: the layout follows the rows, not
                # the sizes of the scan's batches
                while pending.num_rows >= ROW_GROUP_ROWS:
                    pw.write_table(pending.slice(0, ROW_GROUP_ROWS))
                    pending = pending.slice(ROW_GROUP_ROWS)
            if pending.num_rows:
                pw.write_table(pending)
        distributions = tuple(
            Distribution(
                fmt,
                MEDIA_TYPES[fmt],
                path.name,
                path.stat().st_size,
                file_sha256(path),
                digest.rows,
            )
            for fmt, path in (("parquet", parquet_path), ("csv", csv_path))
        )
        for path in (parquet_path, csv_path, staging):
            fsync_path(path)  # on disk before the rename, and the rename before "published"
        _move_into_place(staging, directory, distributions)
        fsync_path(directory.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Export(
        snapshot_id=snapshot_id,
        rows=digest.rows,
        columns=tuple(schema.names),
        content_digest=digest.hexdigest(),
        directory=directory,
        distributions=distributions,
    )


def remove_staging(directory: Path) -> int:
    """Delete what crashed exports of `directory` left beside it (their rows included)."""
    removed = 0
    for leftover in directory.parent.glob(f".{directory.name}.*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed


def _chain(
    first: pa.RecordBatch | None, rest: Iterator[pa.RecordBatch]
) -> Iterator[pa.RecordBatch]:
    if first is not None:
        yield first
    yield from rest


def _move_into_place(
    staging: Path, directory: Path, distributions: tuple[Distribution, ...]
) -> None:
    if directory.exists():
        for d in distributions:
            existing = directory / d.file_name
            if not existing.is_file() or file_sha256(existing) != d.sha256:
                raise FileExistsError(
                    f"{directory} already holds a published version whose {d.file_name} "
                    "differs from what this snapshot gives: published files never change; "
                    "publish a new version instead of rewriting this one"
                )
        return  # the same bytes are already there: a re-run after a crash
    os.replace(staging, directory)
