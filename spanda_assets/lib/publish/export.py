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
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pandas.util import hash_pandas_object

from spanda_assets.lib.files import file_digest as file_sha256

if TYPE_CHECKING:
    from pyiceberg.table import Table

MEDIA_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
ROW_GROUP_ROWS = 131_072


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
        self.schema = ",".join(f"{f.name}:{f.type}" for f in schema)

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        hashed = hash_pandas_object(batch.to_pandas(), index=False).to_numpy(dtype=np.uint64)
        with np.errstate(over="ignore"):
            self.total = np.uint64(self.total + hashed.sum(dtype=np.uint64))
        self.xor = np.uint64(self.xor ^ np.bitwise_xor.reduce(hashed))
        self.rows += batch.num_rows

    def hexdigest(self) -> str:
        raw = f"{self.schema}|{self.rows}|{int(self.total)}|{int(self.xor)}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def snapshot_batches(
    table: Table, snapshot_id: int, columns: Iterable[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """The rows of `snapshot_id`, batch by batch, in the snapshot's file order."""
    fields = tuple(columns) if columns is not None else ("*",)
    reader = table.scan(snapshot_id=snapshot_id, selected_fields=fields).to_arrow_batch_reader()
    yield from reader


def content_digest(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> tuple[str, int]:
    """(order-independent digest, row count) of a stream of batches."""
    digest = _Digest(schema)
    for batch in batches:
        digest.add(batch)
    return digest.hexdigest(), digest.rows


def _plain_schema(schema: pa.Schema) -> pa.Schema:
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
    batch at a time. The files are written in a temporary directory beside the target
    and moved in with one rename, so a crash leaves either the finished version or no
    version, never half a file under the published name. A directory that already
    holds the version is replaced only by identical content (same snapshot, same
    bytes); anything else is an error, since a published file must never change.
    """
    if table.snapshot_by_id(snapshot_id) is None:
        raise ValueError(
            f"{'.'.join(table.name())} has no snapshot {snapshot_id}: it expired or never "
            "existed, so the version cannot be written from it"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.parent / f".{directory.name}.{uuid.uuid4().hex}.tmp"
    staging.mkdir()
    try:
        batches = snapshot_batches(table, snapshot_id, columns)
        first = next(batches, None)
        schema = _plain_schema(
            first.schema
            if first is not None
            else table.scan(snapshot_id=snapshot_id).projection().as_arrow()
        )
        digest = _Digest(schema)
        parquet_path = staging / f"{stem}.parquet"
        csv_path = staging / f"{stem}.csv"
        with (
            pq.ParquetWriter(
                parquet_path,
                schema,
                compression="zstd",
                compression_level=3,
                version="2.6",
                write_statistics=True,
                use_dictionary=True,
            ) as pw,
            pacsv.CSVWriter(csv_path, schema) as cw,
        ):
            pending: list[pa.RecordBatch] = []
            pending_rows = 0

            def flush() -> None:
                nonlocal pending, pending_rows
                if pending_rows:
                    # fixed row groups: the file's layout depends on the rows only
                    pw.write_table(
                        pa.Table.from_batches(pending, schema), row_group_size=ROW_GROUP_ROWS
                    )
                pending, pending_rows = [], 0

            for scanned in _chain(first, batches):
                batch = pa.RecordBatch.from_arrays(scanned.columns, schema=schema)
                digest.add(batch)
                cw.write_batch(batch)
                pending.append(batch)
                pending_rows += batch.num_rows
                if pending_rows >= ROW_GROUP_ROWS:
                    flush()
            flush()
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
        _move_into_place(staging, directory, distributions)
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
