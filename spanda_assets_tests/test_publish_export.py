"""A version's files from its Iceberg snapshot: the same bytes on every rewrite, a digest
that follows the data and not its order, atomic placement, streaming."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spanda_assets.lib.publish.export import content_digest, export_snapshot, file_sha256

SCHEMA = pa.schema(
    [
        pa.field("post_id", pa.string(), nullable=False),
        pa.field("course_id", pa.int64()),
        pa.field("body", pa.string()),
        pa.field("score", pa.float64()),
    ]
)


def _rows(start: int, n: int) -> pa.Table:
    return pa.table(
        {
            "post_id": [f"ps_{i:06d}" for i in range(start, start + n)],
            "course_id": [i % 7 for i in range(start, start + n)],
            "body": [None if i % 11 == 0 else f'post, "quoted" {i}\nline' for i in range(n)],
            "score": [i / 3 for i in range(start, start + n)],
        },
        schema=SCHEMA,
    )


def _table(catalog: Any, name: str = "posts") -> Any:
    with contextlib.suppress(Exception):  # already there
        catalog.create_namespace("gold")
    return catalog.create_table(("gold", name), schema=SCHEMA)


def test_the_same_snapshot_gives_the_same_bytes(catalog: Any, tmp_path: Path) -> None:
    table = _table(catalog)
    table.append(_rows(0, 300))
    table.append(_rows(300, 200))
    snap = table.current_snapshot().snapshot_id
    a = export_snapshot(table, snap, tmp_path / "a" / "v1", "posts-v1")
    b = export_snapshot(table, snap, tmp_path / "b" / "v1", "posts-v1")
    assert a.rows == 500 and a.columns == tuple(SCHEMA.names)
    assert [d.sha256 for d in a.distributions] == [d.sha256 for d in b.distributions]
    for d in a.distributions:
        path = a.directory / d.file_name
        assert (path.read_bytes() == (b.directory / d.file_name).read_bytes()) and d.size > 0
        assert file_sha256(path) == d.sha256
    # what was written is what the snapshot holds, nulls, quotes and newlines included
    back = pq.read_table(a.directory / "posts-v1.parquet")
    assert back.schema.names == SCHEMA.names
    expected = table.scan(snapshot_id=snap).to_arrow()
    assert sorted(back["post_id"].to_pylist()) == sorted(expected["post_id"].to_pylist())
    assert back["body"].null_count == expected["body"].null_count
    rows = list(csv.DictReader(io.StringIO((a.directory / "posts-v1.csv").read_text())))
    assert len(rows) == 500 and rows[1]["body"].endswith("\nline")
    media = {d.format: d.media_type for d in a.distributions}
    assert media == {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


def test_a_later_snapshot_leaves_an_earlier_version_alone(catalog: Any, tmp_path: Path) -> None:
    table = _table(catalog)
    table.append(_rows(0, 100))
    v1 = table.current_snapshot().snapshot_id
    first = export_snapshot(table, v1, tmp_path / "v1", "posts-v1")
    table.append(_rows(100, 50))
    v2 = table.current_snapshot().snapshot_id
    second = export_snapshot(table, v2, tmp_path / "v2", "posts-v2")
    again = export_snapshot(table, v1, tmp_path / "again", "posts-v1")
    assert second.rows == 150 and first.rows == again.rows == 100
    assert first.content_digest == again.content_digest != second.content_digest
    assert [d.sha256 for d in first.distributions] == [d.sha256 for d in again.distributions]


def test_the_digest_ignores_order_and_sees_every_value() -> None:
    rows = _rows(0, 50)
    digest, n = content_digest(rows.to_batches(max_chunksize=7), SCHEMA)
    shuffled = rows.take(list(reversed(range(50))))
    assert content_digest(shuffled.to_batches(max_chunksize=13), SCHEMA) == (digest, n)
    changed = rows.set_column(3, "score", pa.array([99.0, *rows["score"].to_pylist()[1:]]))
    assert content_digest(changed.to_batches(), SCHEMA)[0] != digest
    fewer = rows.slice(0, 49)
    assert content_digest(fewer.to_batches(), SCHEMA)[0] != digest
    doubled = pa.concat_tables([rows.slice(0, 1), rows])  # a duplicated row counts
    assert content_digest(doubled.to_batches(), SCHEMA)[0] != digest


def test_a_published_directory_is_never_rewritten_with_other_bytes(
    catalog: Any, tmp_path: Path
) -> None:
    table = _table(catalog)
    table.append(_rows(0, 40))
    snap = table.current_snapshot().snapshot_id
    tmp_path = tmp_path / "published"
    out = tmp_path / "v1"
    done = export_snapshot(table, snap, out, "posts-v1")
    # a re-run after a crash finds the same bytes: nothing to do, nothing left behind
    export_snapshot(table, snap, out, "posts-v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    (out / "posts-v1.csv").write_text("tampered\n")
    with pytest.raises(FileExistsError, match="published files never change"):
        export_snapshot(table, snap, out, "posts-v1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]  # no staging left over
    assert done.rows == 40


def test_an_expired_snapshot_and_an_empty_one(catalog: Any, tmp_path: Path) -> None:
    table = _table(catalog)
    with pytest.raises(ValueError, match="no snapshot 42"):
        export_snapshot(table, 42, tmp_path / "v1", "posts-v1")
    table.append(_rows(0, 0))
    snap = table.current_snapshot()
    if snap is not None:  # an empty append may or may not create a snapshot
        empty = export_snapshot(table, snap.snapshot_id, tmp_path / "v0", "posts-v0")
        assert empty.rows == 0
        assert pq.read_table(tmp_path / "v0" / "posts-v0.parquet").num_rows == 0


def test_column_selection(catalog: Any, tmp_path: Path) -> None:
    table = _table(catalog)
    table.append(_rows(0, 10))
    snap = table.current_snapshot().snapshot_id
    out = export_snapshot(table, snap, tmp_path / "v1", "x", columns=["post_id", "score"])
    assert out.columns == ("post_id", "score")
    assert pq.read_table(tmp_path / "v1" / "x.parquet").schema.names == ["post_id", "score"]


def test_the_digest_does_not_depend_on_batching_nulls_or_string_width() -> None:
    """pandas turns an int column holding a null into floats batch by batch; the digest
    must not see that, nor a string column read back as large_string, nor the unit of a
    timestamp; and 2^60 and 2^60 + 1 must differ."""
    big = 2**60
    rows = pa.table(
        {
            "k": pa.array([big, big + 1, None, 7], pa.int64()),
            "flag": pa.array([True, None, False, True]),
            "s": pa.array(["a", None, "c", ""], pa.string()),
            "t": pa.array([1, 2, None, 4], pa.timestamp("ms", tz="UTC")),
            "tags": pa.array([["x"], [], None, ["y", "z"]], pa.list_(pa.string())),
        }
    )
    schema = rows.schema
    one = content_digest(rows.to_batches(), schema)
    split = content_digest(rows.to_batches(max_chunksize=1), schema)
    assert one == split
    wide = rows.set_column(2, "s", rows["s"].cast(pa.large_string()))
    wide = wide.set_column(3, "t", rows["t"].cast(pa.timestamp("us", tz="UTC")))
    assert content_digest(wide.to_batches(), wide.schema)[0] == one[0]
    swapped = rows.set_column(0, "k", pa.array([big + 1, big, None, 7], pa.int64()))
    assert content_digest(swapped.to_batches(), schema)[0] != one[0]  # values moved rows
    nulled = rows.set_column(3, "t", pa.array([1, 2, 0, 4], pa.timestamp("ms", tz="UTC")))
    assert content_digest(nulled.to_batches(), schema)[0] != one[0]  # null is not epoch 0
