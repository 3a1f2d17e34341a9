"""gold.labeled_posts: one resolved urgency label per post, staged for write-audit-publish.

Each run reads the annotations changed since its watermark (kept in the table's own
snapshot, decision 0001: data and position commit together), resolves every changed
post again from all of its annotations, joins the post's de-identified text and
student pseudonym from gold.validated_posts *main* (what was published), and merges
the rows on the audit branch. Posts that no longer resolve (a new tie, annotations
deleted) leave the branch. Rows of posts that left gold (the student withdrew
`model_training` consent, or erasure) are erased from main at once.

The split is a function of the student pseudonym, so one student's posts are never
on both sides: the model's held-out set cannot contain a student it trained on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib import writes
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.labeling.backend import Annotations
from spanda_assets.lib.labeling.departed import Departed
from spanda_assets.lib.labeling.resolve import Resolution, resolve
from spanda_assets.lib.lakehouse import ensure_namespace
from spanda_assets.lib.writes import AUDIT, MAIN, in_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table, Transaction

LABELED = ("gold", "labeled_posts")
SOURCE = ("gold", "validated_posts")
LABELED_SCHEMA = pa.schema(
    [
        pa.field("post_key", pa.string(), nullable=False),
        ("subject_id", pa.string()),
        ("course_id", pa.int64()),
        ("body", pa.string()),
        ("label", pa.string()),
        ("method", pa.string()),  # ground_truth | majority
        ("annotations", pa.int16()),
        ("agreeing", pa.int16()),
        ("split", pa.string()),  # train | test, by student pseudonym
        ("label_config_hash", pa.string()),
        ("gold_snapshot_id", pa.int64()),  # the gold.validated_posts snapshot the text is from
    ]
)
WATERMARK_KEY = "spanda.labels-watermark"
GOLD_SNAPSHOT_KEY = "spanda.labels-gold-snapshot"
CONFIG_KEY = "spanda.labels-config-hash"
STATE_KEYS = (WATERMARK_KEY, GOLD_SNAPSHOT_KEY, CONFIG_KEY)
TEST_SHARE = 20  # percent of students whose posts form the held-out split


def split_of(subject_id: str) -> str:
    """train or test, fixed per student: the first byte of a digest of the pseudonym."""
    digest = hashlib.sha256(f"spanda-split:{subject_id}".encode()).digest()
    return "test" if digest[0] * 100 // 256 < TEST_SHARE else "train"


@dataclass
class LabeledResult:
    resolution: Resolution | None = None
    changed_posts: int = 0
    rows_written: int = 0
    rows_removed: int = 0
    erased_after_withdrawal: int = 0
    not_in_gold: list[str] = field(default_factory=list)
    invalid_tasks: list[str] = field(default_factory=list)
    watermark: str = ""
    gold_snapshot_id: int | None = None
    annotations: pa.Table | None = None
    flagged: pa.Table | None = None  # likely mislabeled (set by the label-quality audit)

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {
            "changed_posts": self.changed_posts,
            "rows_written": self.rows_written,
            "rows_removed_unresolved": self.rows_removed,
            "rows_erased_after_withdrawal": self.erased_after_withdrawal,
            "annotated_posts_not_in_gold": len(self.not_in_gold),
            "tasks_skipped_unreadable": len(self.invalid_tasks),
            "annotation_watermark": self.watermark,
            "gold_snapshot_id": str(self.gold_snapshot_id or ""),
        }
        if self.resolution is not None:
            md.update(self.resolution.metadata())
        return md


def _gold_rows(gold: Table, keys: list[str], snapshot_id: int) -> pa.Table:
    """Text, student and course of these posts at gold's published snapshot."""
    if not keys:
        return pa.table(
            {"post_key": pa.array([], pa.string()), "subject_id": pa.array([], pa.string())}
        )
    scan = gold.scan(
        row_filter=in_filter("post_id", keys),
        selected_fields=("post_id", "subject_id", "course_id", "body"),
        snapshot_id=snapshot_id,
    )
    rows = scan.to_arrow()
    rows = rows.rename_columns(["post_key" if n == "post_id" else n for n in rows.column_names])
    # Iceberg reads strings as large_string; the resolved labels are plain strings.
    return rows.set_column(0, "post_key", rows.column("post_key").cast(pa.string()))


def _post_keys(table: Table, branch: str) -> set[str]:
    return set(
        writes.scan(table, branch, selected_fields=("post_key",)).to_arrow()["post_key"].to_pylist()
    )


def published_among(gold: Table, snapshot_id: int, keys: set[str]) -> set[str]:
    """Which of `keys` gold publishes at `snapshot_id` (a filtered read of one column)."""
    if not keys:
        return set()
    rows = gold.scan(
        row_filter=in_filter("post_id", sorted(keys)),
        selected_fields=("post_id",),
        snapshot_id=snapshot_id,
    ).to_arrow()
    return set(rows.column("post_id").cast(pa.string()).to_pylist())


def stage_labeled(
    catalog: Catalog,
    annotations: Annotations,
    *,
    config_hash: str,
    departed: Departed,
    run_id: str = "",
) -> LabeledResult:
    """Bring gold.labeled_posts' audit branch up to date with the annotation tool, and
    erase from main the posts that departed (`departed` decides among those gold lacks).
    Idempotent: a re-run resolves the same posts the same way and rewrites nothing
    unchanged."""
    ensure_namespace(catalog, "gold")
    try:
        gold = catalog.load_table(SOURCE)
    except Exception as exc:  # NoSuchTableError, by whatever name the catalog gives it
        raise SpandaError(
            "gold.labeled_posts: gold.validated_posts does not exist yet; materialize it first"
        ) from exc
    published = gold.snapshot_by_name(MAIN)
    if published is None:
        raise SpandaError(
            "gold.labeled_posts: gold.validated_posts has published nothing yet (its first "
            "audit has not passed)"
        )
    labeled = catalog.create_table_if_not_exists(
        LABELED, schema=LABELED_SCHEMA, properties={writes.NO_RETRY: "0"}
    )
    result = LabeledResult(gold_snapshot_id=published.snapshot_id)
    # Withdrawals and erasures reach main now, whatever the audit will say.
    if writes.head(labeled, MAIN) is not None:
        on_main = _post_keys(labeled, MAIN)
        gone = sorted(departed(on_main - published_among(gold, published.snapshot_id, on_main)))
        if gone:
            result.erased_after_withdrawal = writes.erase_rows(labeled, in_filter("post_key", gone))
    writes.open_audit(labeled)
    labeled.refresh()
    state = writes.read_state(labeled, WATERMARK_KEY, STATE_KEYS, AUDIT)
    watermark = (
        dt.datetime.fromisoformat(state[WATERMARK_KEY]) if state.get(WATERMARK_KEY) else None
    )
    if state.get(CONFIG_KEY, config_hash) != config_hash:
        watermark = None  # a new label config: every post is decided again

    changes = annotations.changed_since(watermark)
    # Agreement is a property of the whole overlap sample, not of the posts that changed
    # in this run (a re-read window of a few seconds holds a handful of posts).
    result.annotations = (
        changes.annotations if watermark is None else annotations.changed_since(None).annotations
    )
    result.changed_posts = len(changes.post_keys)
    result.invalid_tasks = list(changes.invalid)
    tasks = annotations.task_keys()
    # Which of the posts this run touches gold publishes: a lookup of those keys, so the
    # cost follows the labeled set and the changes, not the size of gold.
    # What the audit branch holds (open_audit made it): read once, the transaction below
    # starts from the same head.
    staged = _post_keys(labeled, AUDIT)
    live = published_among(gold, published.snapshot_id, staged | set(changes.post_keys))
    resolution = resolve(changes.annotations, live_keys=tasks)
    result.resolution = resolution
    resolved = resolution.labels
    in_gold = [k for k in resolved.column("post_key").to_pylist() if k in live]
    result.not_in_gold = sorted(set(resolved.column("post_key").to_pylist()) - live)
    texts = _gold_rows(gold, in_gold, published.snapshot_id)
    rows = _labeled_rows(resolved, texts, config_hash, published.snapshot_id)

    settled = set(rows.column("post_key").to_pylist())
    # Posts gold publishes whose annotations no longer resolve (a tie, all deleted); a post
    # gold lacks for now keeps its row until it is back or departed.
    unsettled = [k for k in changes.post_keys if k not in settled and k in live]
    high = changes.high_water or watermark
    props = {
        WATERMARK_KEY: high.isoformat() if high else "",
        GOLD_SNAPSHOT_KEY: str(published.snapshot_id),
        CONFIG_KEY: config_hash,
        "spanda.run-id": run_id or "manual",
    }
    result.watermark = props[WATERMARK_KEY]
    tx = labeled.transaction()
    # Staged but unpublished rows of departed posts go too.
    dropped = departed(staged - live)
    # A task deleted in the tool takes its label with it (unless the tool is empty: a
    # switch from the local store to a server before its annotations were imported).
    untasked = staged - tasks if tasks else set()
    removed = sorted((set(unsettled) & staged) | dropped | untasked)
    if removed:
        tx.delete(
            delete_filter=in_filter("post_key", removed), snapshot_properties=props, branch=AUDIT
        )
        result.rows_removed = len((set(unsettled) & staged) | untasked)
    # Gold re-derived a post's text (a scrubber fix): the labeled row follows.
    keep = sorted((staged & live) - set(removed) - settled)
    rows = pa.concat_tables([rows, _retexted(tx, labeled, gold, keep, published.snapshot_id)])
    if rows.num_rows:
        rows = _keep_first_snapshot(tx, labeled, rows)
        inserted, updated = writes.merge_rows(tx, labeled, rows, ["post_key"], props, branch=AUDIT)
        result.rows_written = inserted + updated
    writes.close_run(tx, LABELED_SCHEMA, props, AUDIT)
    tx.commit_transaction()
    return result


def _retexted(
    tx: Transaction, labeled: Table, gold: Table, keys: list[str], snapshot_id: int
) -> pa.Table:
    """Staged rows of `keys` whose text gold now publishes differently, with gold's text."""
    if not keys:
        return LABELED_SCHEMA.empty_table()
    staged = writes.staged_scan(tx, labeled, AUDIT, row_filter=in_filter("post_key", keys))
    rows = staged.to_arrow().cast(LABELED_SCHEMA)
    now = dict(
        zip(
            *(
                c.to_pylist()
                for c in _gold_rows(gold, keys, snapshot_id).select(["post_key", "body"]).columns
            ),
            strict=True,
        )
    )
    changed = pc.invert(
        pc.equal(
            rows.column("body"),
            pa.array([now.get(k) for k in rows.column("post_key").to_pylist()], pa.string()),
        )
    )
    changed = pc.fill_null(changed, False)
    out = rows.filter(changed)
    if out.num_rows == 0:
        return out
    at = out.schema.get_field_index("body")
    bodies = pa.array([now[k] for k in out.column("post_key").to_pylist()], pa.string())
    out = out.set_column(at, "body", bodies)
    at = out.schema.get_field_index("gold_snapshot_id")
    return out.set_column(
        at, "gold_snapshot_id", pa.array([snapshot_id] * out.num_rows, pa.int64())
    )


def _keep_first_snapshot(tx: Transaction, labeled: Table, rows: pa.Table) -> pa.Table:
    """A post decided again with the same text keeps the gold snapshot it was first read
    from: gold commits every run, and a new snapshot id alone is not a change."""
    keys = rows.column("post_key").to_pylist()
    staged = writes.staged_scan(
        tx,
        labeled,
        AUDIT,
        row_filter=in_filter("post_key", keys),
        selected_fields=("post_key", "body", "gold_snapshot_id"),
    ).to_arrow()
    first = {
        (k, b): snap
        for k, b, snap in zip(
            staged.column("post_key").to_pylist(),
            staged.column("body").to_pylist(),
            staged.column("gold_snapshot_id").to_pylist(),
            strict=True,
        )
    }
    kept = [
        first.get((k, b), snap)
        for k, b, snap in zip(
            keys,
            rows.column("body").to_pylist(),
            rows.column("gold_snapshot_id").to_pylist(),
            strict=True,
        )
    ]
    at = rows.schema.get_field_index("gold_snapshot_id")
    return rows.set_column(at, "gold_snapshot_id", pa.array(kept, pa.int64()))


def _labeled_rows(
    resolved: pa.Table, texts: pa.Table, config_hash: str, snapshot_id: int
) -> pa.Table:
    if texts.num_rows == 0:
        return LABELED_SCHEMA.empty_table()
    joined = texts.join(resolved, keys="post_key", join_type="inner")
    subjects = joined.column("subject_id").cast(pa.string()).to_pylist()
    n = joined.num_rows
    columns = {
        "post_key": joined.column("post_key").cast(pa.string()),
        "subject_id": pa.array(subjects, pa.string()),
        "course_id": joined.column("course_id").cast(pa.int64()),
        "body": joined.column("body").cast(pa.string()),
        "label": joined.column("label"),
        "method": joined.column("method"),
        "annotations": joined.column("annotations").cast(pa.int16()),
        "agreeing": joined.column("agreeing").cast(pa.int16()),
        "split": pa.array([split_of(s or "") for s in subjects], pa.string()),
        "label_config_hash": pa.array([config_hash] * n, pa.string()),
        "gold_snapshot_id": pa.array([snapshot_id] * n, pa.int64()),
    }
    table = pa.table(columns).cast(LABELED_SCHEMA)
    return table.sort_by("post_key").filter(pc.is_valid(table.column("label")))
