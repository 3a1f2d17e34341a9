"""Label Studio tasks from published gold posts: pre-labeled, ordered for review, capped.

One pass streams gold.validated_posts *main* (de-identified text only; nothing from
silver or bronze can reach annotators) in Arrow batches, skips posts the annotation
tool already holds, pre-labels the rest with the labeling functions and keeps the
`batch_size` posts to show next (lowest margin first, plus a seeded random share).
A second, filtered read fetches only those posts' text to push. Tasks of posts that
left gold (consent for `model_training` withdrawn, or erasure) are deleted from the
tool with their annotations in the same run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.labeling.active import review_order
from spanda_assets.lib.labeling.backend import Annotations
from spanda_assets.lib.labeling.departed import Departed
from spanda_assets.lib.labeling.labeled import SOURCE
from spanda_assets.lib.labeling.rules import RuleSet
from spanda_assets.lib.labeling.weak import LabelingStats, prelabel_batches
from spanda_assets.lib.writes import MAIN, in_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

DEFAULT_BATCH = 200
RANDOM_SHARE = 0.1


@dataclass
class SyncResult:
    pushed: int = 0
    predictions_replaced: int = 0
    already_in_tool: int = 0
    candidates: int = 0
    deleted_after_withdrawal: int = 0
    not_in_gold_kept: int = 0  # gold lacks them for now (a rebuild), their student did not leave
    texts_updated: int = 0
    random_picks: int = 0
    gold_snapshot_id: int | None = None
    stats: LabelingStats | None = None
    order: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {
            "tasks_pushed": self.pushed,
            "tasks_already_in_tool": self.already_in_tool,
            "posts_awaiting_a_task": max(self.candidates - self.pushed, 0),
            "tasks_deleted_after_withdrawal": self.deleted_after_withdrawal,
            "tasks_not_in_gold_kept": self.not_in_gold_kept,
            "task_texts_updated": self.texts_updated,
            "random_share_picks": self.random_picks,
            "gold_snapshot_id": str(self.gold_snapshot_id or ""),
        }
        if self.stats is not None:
            md["labeling_functions"] = self.stats.summary()
            md["prelabel_totals"] = self.stats.totals()
        return md


def _published(catalog: Catalog) -> tuple[Table, int]:
    try:
        gold = catalog.load_table(SOURCE)
    except Exception as exc:  # NoSuchTableError under the catalog's own name
        raise SpandaError(
            "label tasks: gold.validated_posts does not exist yet; materialize it first"
        ) from exc
    snap = gold.snapshot_by_name(MAIN)
    if snap is None:
        raise SpandaError("label tasks: gold.validated_posts has published nothing yet")
    return gold, snap.snapshot_id


def _new_posts(
    gold: Table,
    snapshot_id: int,
    shown: dict[str, str],
    live: set[str],
    stale: dict[str, str],
) -> Iterator[pa.RecordBatch]:
    """Published posts without a task, as (post_key, body) batches. Fills `live` with
    every published key, and `stale` with the new text of tasks whose text gold changed."""
    scan = gold.scan(selected_fields=("post_id", "body"), snapshot_id=snapshot_id)
    value_set = pa.array(sorted(shown), pa.string())
    for batch in scan.to_arrow_batch_reader():
        keys = batch.column("post_id").cast(pa.string())
        live.update(keys.to_pylist())
        known = pc.is_in(keys, value_set=value_set)
        if pc.any(known).as_py():
            for key, body in zip(
                keys.filter(known).to_pylist(),
                batch.column("body").filter(known).to_pylist(),
                strict=True,
            ):
                if shown[key] != body:
                    stale[key] = body
        fresh = pc.invert(known)
        kept = pa.RecordBatch.from_arrays([keys, batch.column("body")], ["post_key", "body"])
        kept = kept.filter(fresh)
        if kept.num_rows:
            yield kept


def sync_tasks(
    catalog: Catalog,
    annotations: Annotations,
    rules: RuleSet,
    *,
    batch_size: int = DEFAULT_BATCH,
    random_share: float = RANDOM_SHARE,
    departed: Departed,
    known_labels: Mapping[str, str] | None = None,
    seed: int = 0,
) -> SyncResult:
    """Push the next `batch_size` posts to annotate; bring re-derived texts to their tasks;
    delete the tasks of departed posts (`departed` decides among those gold lacks)."""
    gold, snapshot_id = _published(catalog)
    result = SyncResult(gold_snapshot_id=snapshot_id)
    shown = annotations.task_texts()
    known = set(shown)
    live: set[str] = set()
    stale: dict[str, str] = {}
    stats = LabelingStats(rules.names)
    labeled = prelabel_batches(
        rules,
        _new_posts(gold, snapshot_id, shown, live, stale),
        stats=stats,
        known_labels=known_labels,
    )
    prelabels: dict[str, dict[str, Any]] = {}

    def remember() -> Iterator[pa.RecordBatch]:
        # The review order keeps only the chosen keys; their pre-labels are kept small.
        for batch in labeled:
            result.candidates += batch.num_rows
            yield batch
            for row in batch.to_pylist():
                if len(prelabels) < 50 * max(batch_size, 1):
                    prelabels[row["post_key"]] = row

    order = review_order(remember(), batch_size=batch_size, random_share=random_share, seed=seed)
    result.stats = stats
    result.random_picks = int(pc.sum(pc.equal(order.column("reason"), "random")).as_py() or 0)
    result.already_in_tool = len(known & live)
    gone = sorted(departed(known - live))
    if gone:
        result.deleted_after_withdrawal = annotations.delete(gone)
    result.not_in_gold_kept = len(known - live) - len(gone)
    if stale:
        result.texts_updated = annotations.update_texts(stale)
    chosen = order.column("post_key").to_pylist()
    if chosen:
        texts = gold.scan(
            row_filter=in_filter("post_id", chosen),
            selected_fields=("post_id", "body", "course_id"),
            snapshot_id=snapshot_id,
        ).to_arrow()
        body = dict(
            zip(
                texts.column("post_id").cast(pa.string()).to_pylist(),
                texts.column("body").to_pylist(),
                strict=True,
            )
        )
        course = dict(
            zip(
                texts.column("post_id").cast(pa.string()).to_pylist(),
                texts.column("course_id").to_pylist(),
                strict=True,
            )
        )
        rows = []
        for key in chosen:  # in review order: the tool serves tasks in the order pushed
            pre = _prelabel_of(key, prelabels, rules, body[key])
            rows.append(
                {
                    "post_key": key,
                    "body": body[key],
                    "course_id": course[key],
                    "prelabel": pre["prelabel"],
                    "confidence": pre["confidence"],
                    "model_version": pre["model_version"],
                }
            )
        added = annotations.add_tasks(pa.Table.from_pylist(rows), data_columns=("course_id",))
        result.pushed = added.added
        result.predictions_replaced = added.predictions_replaced
        result.order = order.to_pylist()
    return result


def _prelabel_of(
    key: str, remembered: dict[str, dict[str, Any]], rules: RuleSet, body: str
) -> dict[str, Any]:
    """The pre-label computed in the streaming pass, or again for this one post when the
    pass did not keep it (a very large backlog)."""
    if key in remembered:
        return remembered[key]
    one = pa.RecordBatch.from_pylist([{"post_key": key, "body": body}])
    return next(prelabel_batches(rules, [one])).to_pylist()[0]
