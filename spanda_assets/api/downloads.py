"""Downloads streamed from a version's Iceberg snapshot, in Parquet, CSV or Arrow IPC.

A download with a column selection, a row filter or a withheld column cannot be the
version's published file, so it is written on the fly: one data file of the snapshot is
read at a time (`export.snapshot_batches`), each batch is encoded and handed to the
client, and the encoder's buffer is drained after every batch. Memory stays at about
one batch plus one row group, whatever the table's size.

The unfiltered, unmasked Parquet and CSV of a version are served from the files written
when it was published: byte for byte what the DOI's metadata lists with their SHA-256.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pyarrow import ipc
from pyiceberg.expressions import AlwaysTrue
from pyiceberg.expressions.visitors import bind, extract_field_ids, translate_column_names
from pyiceberg.io.pyarrow import expression_to_pyarrow, schema_to_pyarrow
from pyiceberg.manifest import FileFormat
from pyiceberg.schema import Schema
from pyiceberg.transforms import IdentityTransform

from spanda_assets.lib.publish.export import PARQUET_OPTIONS, plain_schema, snapshot_batches

if TYPE_CHECKING:
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table

MEDIA_TYPES = {
    "parquet": "application/vnd.apache.parquet",
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
}
EXTENSIONS = {"parquet": "parquet", "csv": "csv", "arrow": "arrows"}
# Rows encoded at a time (and per Parquet row group of a streamed download): big enough
# for readers' column statistics to prune, small enough that the encoded bytes held
# between two sends stay a few MB.
STREAM_SLICE = 16_384


class _Drain:
    """A write-only file object the encoders write into; `take()` hands over what was
    written since the last call. Only what one batch encodes is held at a time."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._chunks.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def _empty_schema(table: Table, snapshot_id: int, columns: Sequence[str]) -> pa.Schema:
    arrow = schema_to_pyarrow(snapshot_schema(table, snapshot_id), include_field_ids=False)
    return plain_schema(pa.schema([arrow.field(name) for name in columns]))


def _planning_filter(table: Table, bound: BooleanExpression) -> BooleanExpression:
    """The filter in the names of the table's current schema, for planning the scan
    (pyiceberg binds a scan's filter to the current schema): a version's column renamed
    since keeps its field id. A column the current schema dropped plans unfiltered;
    the rows are still filtered as they are read."""
    try:
        return translate_column_names(bound, table.schema(), case_sensitive=True)
    except (ValueError, KeyError):
        return AlwaysTrue()


def _lean_batches(
    table: Table,
    snapshot_id: int,
    columns: Sequence[str],
    row_filter: BooleanExpression | None,
) -> Iterator[pa.RecordBatch] | None:
    """The snapshot's rows read straight from its Parquet files, STREAM_SLICE rows at a
    time, without pre-buffering or decoding threads: well under half the memory of
    pyiceberg's reader, which holds a whole data file's batches at once.

    Columns are found in each file by field id, as Iceberg's own readers do: a column
    renamed since the file was written is read under its old name, one added since is
    null. Only files with delete files, other formats, or a missing identity-partition
    column (its values live in the manifest, not the file) need pyiceberg's reader:
    then None, decided before the first row goes out, so a download never switches
    readers half-way."""
    schema = snapshot_schema(table, snapshot_id)
    expression = row_filter if row_filter is not None else AlwaysTrue()
    bound = bind(schema, expression, case_sensitive=True)
    read_by_filter = sorted(
        name for i in extract_field_ids(bound) if (name := schema.find_column_name(i))
    )
    wanted = list(dict.fromkeys([*columns, *read_by_filter]))
    fields = [schema.find_field(name) for name in wanted]
    target = schema_to_pyarrow(Schema(*fields), include_field_ids=False)
    scan = table.scan(snapshot_id=snapshot_id, row_filter=_planning_filter(table, bound))
    tasks = list(scan.plan_files())
    identity_sources = {
        f.source_id
        for spec in table.specs().values()
        for f in spec.fields
        if isinstance(f.transform, IdentityTransform)
    }
    plans: list[tuple[str, list[str | None]]] = []
    for task in tasks:
        if task.delete_files or task.file.file_format != FileFormat.PARQUET:
            return None
        with table.io.new_input(task.file.file_path).open() as f:
            by_id = _columns_by_field_id(pq.ParquetFile(f).schema_arrow)
        names = [by_id.get(field.field_id) for field in fields]
        if any(
            n is None and field.field_id in identity_sources
            for n, field in zip(names, fields, strict=True)
        ):
            return None
        plans.append((task.file.file_path, names))
    arrow_filter = None if expression == AlwaysTrue() else expression_to_pyarrow(bound)

    def read() -> Iterator[pa.RecordBatch]:
        for path, names in plans:
            present = [n for n in names if n is not None]
            with table.io.new_input(path).open() as f:
                parquet = pq.ParquetFile(f, pre_buffer=False, buffer_size=1 << 20)
                for raw in parquet.iter_batches(
                    batch_size=STREAM_SLICE, columns=present, use_threads=False
                ):
                    arrays = [
                        raw.column(n).cast(kind.type)
                        if n is not None
                        else pa.nulls(raw.num_rows, kind.type)
                        for n, kind in zip(names, target, strict=True)
                    ]
                    batch = pa.RecordBatch.from_arrays(arrays, schema=target)
                    if arrow_filter is not None:
                        kept = pa.Table.from_batches([batch]).filter(arrow_filter)
                        yield from kept.select(list(columns)).to_batches()
                    else:
                        yield batch.select(list(columns))

    return read()


def _columns_by_field_id(schema: pa.Schema) -> dict[int, str]:
    out = {}
    for f in schema:
        raw = (f.metadata or {}).get(b"PARQUET:field_id")
        if raw is not None:
            out[int(raw)] = f.name
    return out


def snapshot_schema(table: Table, snapshot_id: int) -> Schema:
    """The schema the snapshot was written with (the table's current one if unrecorded):
    a version's columns and types are those of its snapshot, not of today's table."""
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is not None and snapshot.schema_id is not None:
        found = table.schemas().get(snapshot.schema_id)
        if found is not None:
            return found
    return table.schema()


def stream(
    table: Table,
    snapshot_id: int,
    columns: Sequence[str],
    fmt: str,
    row_filter: BooleanExpression | None = None,
) -> Iterator[bytes]:
    """The rows of `snapshot_id` that `row_filter` keeps, only `columns` (in that order),
    encoded as `fmt` (parquet, csv or arrow), chunk by chunk."""
    batches = _lean_batches(table, snapshot_id, columns, row_filter) or snapshot_batches(
        table, snapshot_id, columns, row_filter
    )
    first = next(batches, None)
    schema = (
        plain_schema(pa.schema([first.schema.field(name) for name in columns]))
        if first is not None
        else _empty_schema(table, snapshot_id, columns)
    )
    sink = _Drain()
    writer: Any
    if fmt == "parquet":
        writer = pq.ParquetWriter(sink, schema, **PARQUET_OPTIONS)
    elif fmt == "csv":
        writer = pacsv.CSVWriter(sink, schema)
    elif fmt == "arrow":
        writer = ipc.new_stream(sink, schema)
    else:
        raise ValueError(f"unknown download format {fmt!r}")

    def rows() -> Iterator[pa.RecordBatch]:
        if first is not None:
            yield first
        yield from batches

    try:
        for scanned in rows():
            batch = pa.RecordBatch.from_arrays(
                [scanned.column(name) for name in columns], schema=schema
            )
            # slices, each encoded and handed over before the next: the encoded bytes in
            # flight stay a few MB whatever the size of the data file's batch
            for start in range(0, batch.num_rows, STREAM_SLICE):
                writer.write_batch(batch.slice(start, STREAM_SLICE))
                chunk = sink.take()
                if chunk:
                    yield chunk
    finally:
        writer.close()
    tail = sink.take()
    if tail:
        yield tail
