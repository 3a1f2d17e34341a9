"""The training frame: gold.labeled_posts at one snapshot, and a digest that names it.

The frame is read from one Iceberg snapshot of the labeled set and sorted by post
key, so the same snapshot always gives the same frame, row for row. Its digest
(SHA-256 over a canonical serialization of every row) is logged with the model;
`spanda model lineage` reads the same snapshot again and must print the same
digest (decision 0029). A snapshot id, not "the table", is what a model was
trained on.

The drift frame is what data drift compares: per post its length, word count,
course, and the student's mean assessment score, plus the text for Evidently's
descriptors. Hour and weekday of posting are not in it: the privacy policy keeps
only the year of `created_at` past bronze (Safe Harbor: every element of a date
but the year), so no de-identified table has them (decision 0029).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.lakehouse import load_table_or_none, published_rows
from spanda_assets.lib.writes import MAIN

if TYPE_CHECKING:
    import pandas as pd
    from pyiceberg.catalog import Catalog

LABELED = ("gold", "labeled_posts")
POSTS = ("gold", "validated_posts")
ASSESSMENTS = ("gold", "validated_assessments")
FRAME_COLUMNS = ("post_key", "subject_id", "course_id", "body", "label", "split")
FRAME_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("subject_id", pa.string()),
        ("course_id", pa.int64()),
        ("body", pa.string()),
        ("label", pa.string()),
        ("split", pa.string()),
    ]
)
DRIFT_NUMERIC = ("body_length", "word_count", "student_mean_score")
DRIFT_CATEGORICAL = ("course_id",)
DRIFT_TEXT = ("body",)


class LineageError(SpandaError):
    """The snapshot a model names cannot be read again (expired, or another table)."""


@dataclass(frozen=True)
class TrainingFrame:
    table: pa.Table  # FRAME_SCHEMA, sorted by post_key
    snapshot_id: int  # of gold.labeled_posts main
    digest: str
    config_hashes: tuple[str, ...] = ()  # the label configs its labels were given under

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


def frame_digest(table: pa.Table) -> str:
    """SHA-256 of the rows as canonical JSON lines, in order: independent of Arrow's
    chunking, of file layout and of the library version that wrote the files."""
    h = hashlib.sha256()
    for batch in table.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            h.update(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
            h.update(b"\n")
    return h.hexdigest()


def read_frame(catalog: Catalog, snapshot_id: int | None = None) -> TrainingFrame:
    """The labeled set at `snapshot_id` (main's head when None), as the model trains on it."""
    try:
        table = catalog.load_table(LABELED)
    except Exception as exc:  # NoSuchTableError, or the namespace is missing
        raise LineageError(
            "gold.labeled_posts does not exist yet: annotate posts and materialize "
            "gold/labeled_posts before training"
        ) from exc
    if snapshot_id is None:
        head = table.snapshot_by_name(MAIN)
        if head is None:
            raise LineageError("gold.labeled_posts has no published rows yet: nothing to train on")
        snapshot_id = head.snapshot_id
    elif table.snapshot_by_id(snapshot_id) is None:
        raise LineageError(
            f"gold.labeled_posts snapshot {snapshot_id} is no longer in the table's history "
            "(expired by the maintenance job after SPANDA_RETENTION_DAYS): the frame cannot be "
            "rebuilt; keep snapshots longer, or tag the training snapshot so expiry keeps it"
        )
    read = table.scan(
        selected_fields=(*FRAME_COLUMNS, "label_config_hash"), snapshot_id=snapshot_id
    ).to_arrow()
    hashes = tuple(sorted(str(h) for h in read["label_config_hash"].unique().to_pylist() if h))
    rows = read.select(list(FRAME_COLUMNS)).cast(FRAME_SCHEMA)
    rows = rows.sort_by([("post_key", "ascending")]).combine_chunks()
    return TrainingFrame(rows, snapshot_id, frame_digest(rows), hashes)


def main_snapshot_id(catalog: Catalog, name: tuple[str, str]) -> int | None:
    table = load_table_or_none(catalog, *name)
    if table is None:
        return None
    head = table.snapshot_by_name(MAIN)
    return head.snapshot_id if head is not None else None


def mean_scores(catalog: Catalog, subjects: list[str]) -> dict[str, float]:
    """Each student's mean share of the maximum score, over their published assessments."""
    fields = ("subject_id", "score", "max_score")
    rows = (
        published_rows(catalog, ASSESSMENTS, "subject_id", sorted(set(subjects)), fields)
        if subjects
        else None
    )
    if rows is None or rows.num_rows == 0:
        return {}
    share = pc.divide(
        pc.cast(rows["score"], pa.float64()), pc.cast(rows["max_score"], pa.float64())
    )
    grouped = (
        pa.table({"subject_id": rows["subject_id"].cast(pa.string()), "share": share})
        .group_by("subject_id")
        .aggregate([("share", "mean")])
    )
    return dict(
        zip(grouped["subject_id"].to_pylist(), grouped["share_mean"].to_pylist(), strict=True)
    )


def drift_frame(rows: pa.Table, scores: dict[str, float], with_text: bool = True) -> pd.DataFrame:
    """The columns data drift compares, from rows with subject_id and course_id, and either
    the text (`body`) or its measured `body_length` and `word_count` (staged predictions)."""
    import pandas as pd

    subjects = rows["subject_id"].to_pylist()
    out: dict[str, Any] = {}
    if "body" in rows.column_names:
        bodies = [b or "" for b in rows["body"].to_pylist()]
        out["body_length"] = [len(b) for b in bodies]
        out["word_count"] = [len(b.split()) for b in bodies]
        if with_text:
            out["body"] = bodies
    else:
        out["body_length"] = rows["body_length"].to_pylist()
        out["word_count"] = rows["word_count"].to_pylist()
    out["course_id"] = [str(c) for c in rows["course_id"].to_pylist()]
    out["student_mean_score"] = [scores.get(s or "", float("nan")) for s in subjects]
    return pd.DataFrame(out)
