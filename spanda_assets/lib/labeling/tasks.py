"""Label Studio tasks from published gold posts: pre-labeled, ordered for review, capped.

Incremental: each run reads only the gold.validated_posts *main* rows added since the
gold position it recorded (de-identified text only; nothing from silver or bronze can
reach annotators), pre-labels the posts without a task and merges them into the pool
`gold.label_candidates` (post key, pre-label, P(urgent), pushed: no text). The next
`batch_size` posts come from the pool's unpushed rows (lowest margin first, plus a
seeded random share), a narrow read of two columns; their text is read by key. A
re-derived text (a scrubber fix) arrives as a new gold row and replaces the text of
its task. Tasks of departed posts (consent withdrawn, erasure) are deleted with their
annotations. The pool and its gold position commit together; a crash between the push
and that commit re-pushes nothing (the tool already holds those keys).

The pool is rebuilt from all of gold when gold was recreated or the labeling
functions changed (their pre-labels are stale).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib import writes
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.incremental import rows_added_after
from spanda_assets.lib.labeling.active import review_order
from spanda_assets.lib.labeling.backend import Annotations
from spanda_assets.lib.labeling.departed import Departed
from spanda_assets.lib.labeling.labeled import SOURCE, published_among
from spanda_assets.lib.labeling.rules import RuleSet
from spanda_assets.lib.labeling.weak import LabelingStats, prelabel_batches
from spanda_assets.lib.lakehouse import published_rows
from spanda_assets.lib.writes import MAIN, in_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

DEFAULT_BATCH = 200
RANDOM_SHARE = 0.1
READ_ROWS = 50_000
CANDIDATES = ("gold", "label_candidates")
CANDIDATES_SCHEMA = pa.schema(
    [
        pa.field("post_key", pa.string(), nullable=False),
        ("prelabel", pa.string()),
        ("confidence", pa.float64()),
        ("urgent_probability", pa.float64()),
        ("model_version", pa.string()),
        ("pushed", pa.bool_()),
    ]
)
GOLD_SEQ_KEY = "spanda.gold-seq"
GOLD_UUID_KEY = "spanda.gold-uuid"
RULES_KEY = "spanda.lf-version"
STATE_KEYS = (GOLD_SEQ_KEY, GOLD_UUID_KEY, RULES_KEY)


@dataclass
class SyncResult:
    pushed: int = 0
    predictions_replaced: int = 0
    already_in_tool: int = 0
    candidates: int = 0  # new posts pre-labeled this run
    pool: int = 0  # unpushed posts waiting, after this run
    gold_rows_read: int = 0
    pool_rebuilt: bool = False
    deleted_after_withdrawal: int = 0
    not_in_gold_kept: int = 0  # gold lacks them for now (a rebuild), their student did not leave
    texts_updated: int = 0
    random_picks: int = 0
    model_prelabels: int = 0  # pushed with the champion's prediction as pre-label
    cold_start: bool = False  # no label yet: the batch was a random sample
    gold_snapshot_id: int | None = None
    stats: LabelingStats | None = None
    order: list[dict[str, Any]] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        md: dict[str, Any] = {
            "tasks_pushed": self.pushed,
            "tasks_already_in_tool": self.already_in_tool,
            "posts_awaiting_a_task": self.pool,
            "gold_rows_read": self.gold_rows_read,
            "posts_prelabeled": self.candidates,
            "pool_rebuilt": self.pool_rebuilt,
            "tasks_deleted_after_withdrawal": self.deleted_after_withdrawal,
            "tasks_not_in_gold_kept": self.not_in_gold_kept,
            "task_texts_updated": self.texts_updated,
            "random_share_picks": self.random_picks,
            "tasks_prelabeled_by_champion": self.model_prelabels,
            "cold_start_random_batch": self.cold_start,
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
    gold: Table, after: int, shown: dict[str, str], stale: dict[str, str], result: SyncResult
) -> Iterator[pa.RecordBatch]:
    """Gold rows added after sequence `after`, without a task, as (post_key, body); the
    new text of posts that have a task goes to `stale` when it differs."""
    value_set = pa.array(sorted(shown), pa.string())
    for batch in rows_added_after(gold, after, READ_ROWS, selected_fields=("post_id", "body")):
        result.gold_rows_read += batch.num_rows
        keys = batch.column("post_id").cast(pa.string())
        known = pc.is_in(keys, value_set=value_set)
        if pc.any(known).as_py():
            for key, body in zip(
                keys.filter(known).to_pylist(),
                batch.column("body").filter(known).to_pylist(),
                strict=True,
            ):
                if shown[key] != body:
                    stale[key] = body
        kept = pa.RecordBatch.from_arrays([keys, batch.column("body")], ["post_key", "body"])
        kept = kept.filter(pc.invert(known))
        if kept.num_rows:
            yield kept


def _accuracy(stats: LabelingStats, rules: RuleSet, labeled: pa.Table | None) -> None:
    """Each rule's accuracy against the labels people gave (the published labeled set)."""
    if labeled is None or labeled.num_rows == 0:
        return
    scored = LabelingStats(rules.names)
    labels = dict(
        zip(
            labeled.column("post_key").to_pylist(), labeled.column("label").to_pylist(), strict=True
        )
    )
    for _ in prelabel_batches(
        rules, labeled.select(["post_key", "body"]).to_batches(), stats=scored, known_labels=labels
    ):
        pass
    for name, fig in scored.per_rule.items():
        stats.per_rule[name].labeled = fig.labeled
        stats.per_rule[name].correct = fig.correct


def sync_tasks(
    catalog: Catalog,
    annotations: Annotations,
    rules: RuleSet,
    *,
    batch_size: int = DEFAULT_BATCH,
    random_share: float = RANDOM_SHARE,
    departed: Departed,
    labeled: pa.Table | None = None,
    seed: int = 0,
) -> SyncResult:
    """Push the next `batch_size` posts to annotate; bring re-derived texts to their tasks;
    delete the tasks of departed posts (`departed` decides among those gold lacks).
    `labeled` (post_key, body, label) scores the labeling functions."""
    gold, snapshot_id = _published(catalog)
    result = SyncResult(gold_snapshot_id=snapshot_id)
    pool = catalog.create_table_if_not_exists(
        CANDIDATES, schema=CANDIDATES_SCHEMA, properties={writes.NO_RETRY: "0"}
    )
    state = writes.read_state(pool, GOLD_SEQ_KEY, STATE_KEYS, MAIN)
    gold_uuid = str(gold.metadata.table_uuid)
    result.pool_rebuilt = (
        state.get(GOLD_UUID_KEY) != gold_uuid or state.get(RULES_KEY) != rules.model_version
    )
    after = 0 if result.pool_rebuilt else int(state.get(GOLD_SEQ_KEY, 0) or 0)
    shown = annotations.task_texts()
    known = set(shown)
    stale: dict[str, str] = {}
    stats = LabelingStats(rules.names)
    batches = list(
        prelabel_batches(rules, _new_posts(gold, after, shown, stale, result), stats=stats)
    )
    _accuracy(stats, rules, labeled)
    result.stats = stats
    fresh = (
        pa.Table.from_batches(batches).select(
            ["post_key", "prelabel", "confidence", "urgent_probability", "model_version"]
        )
        if batches
        else CANDIDATES_SCHEMA.empty_table().drop_columns(["pushed"])
    )
    result.candidates = fresh.num_rows
    fresh = fresh.append_column("pushed", pa.array([False] * fresh.num_rows, pa.bool_()))
    fresh = fresh.cast(CANDIDATES_SCHEMA)
    props = {
        GOLD_SEQ_KEY: str(writes.sequence(gold.snapshot_by_name(MAIN))),
        GOLD_UUID_KEY: gold_uuid,
        RULES_KEY: rules.model_version,
    }
    tx = pool.transaction()
    if result.pool_rebuilt:
        writes.replace_all(tx, pool, fresh)
    elif fresh.num_rows:
        writes.merge_rows(tx, pool, fresh, ["post_key"], props)

    # the tool: departed posts leave it, re-derived texts reach it
    in_gold = published_among(gold, snapshot_id, known)
    result.already_in_tool = len(in_gold)
    gone = sorted(departed(known - in_gold))
    if gone:
        result.deleted_after_withdrawal = annotations.delete(gone)
    result.not_in_gold_kept = len(known - in_gold) - len(gone)
    if stale:
        result.texts_updated = annotations.update_texts(stale)

    # the next batch from the unpushed pool (two narrow columns), in review order
    waiting = writes.staged_scan(
        tx,
        pool,
        MAIN,
        row_filter=writes.eq_filter("pushed", False),
        selected_fields=("post_key", "urgent_probability"),
    ).to_arrow()
    if labeled is None or labeled.num_rows == 0:
        # Cold start: before anyone labeled a post, the batch is a random sample. The
        # labeling functions' margin is smallest where they abstain, which is mostly
        # plain routine posts; a first labeled set drawn from those holds few urgent
        # posts beyond label noise, and the first model learns nothing from it.
        random_share = 1.0
        result.cold_start = True
    order = review_order(
        waiting.to_batches(), batch_size=batch_size, random_share=random_share, seed=seed
    )
    result.random_picks = int(pc.sum(pc.equal(order.column("reason"), "random")).as_py() or 0)
    chosen = order.column("post_key").to_pylist()
    result.pool = max(waiting.num_rows - len(chosen), 0)
    if chosen:
        from_model = model_prelabels(catalog, chosen)
        result.model_prelabels = len(from_model)
        result.pushed, result.predictions_replaced = _push(
            annotations, gold, snapshot_id, chosen, tx, pool, from_model
        )
        done = writes.staged_scan(
            tx, pool, MAIN, row_filter=in_filter("post_key", chosen)
        ).to_arrow()
        done = done.set_column(
            done.schema.get_field_index("pushed"), "pushed", pa.array([True] * done.num_rows)
        )
        writes.merge_rows(tx, pool, done.cast(CANDIDATES_SCHEMA), ["post_key"], props)
        result.order = order.to_pylist()
    writes.close_run(tx, CANDIDATES_SCHEMA, props)
    tx.commit_transaction()
    return result


PREDICTIONS = ("gold", "post_predictions")


def model_prelabels(catalog: Catalog, keys: list[str]) -> dict[str, dict[str, Any]]:
    """The champion's published predictions for these posts, as pre-labels.

    Read from gold.post_predictions by key (the table the model stage writes; read by
    name, so the labeling stage does not depend on the model stage's code, and not
    declared as an asset dependency, which would close a cycle). Empty until a
    champion has scored posts: the labeling functions' pre-labels serve until then.
    """
    fields = ("post_key", "p_urgent", "label", "model_version")
    rows = published_rows(catalog, PREDICTIONS, "post_key", keys, fields) if keys else None
    if rows is None:
        return {}
    return {
        r["post_key"]: {
            "prelabel": r["label"],
            "confidence": max(r["p_urgent"], 1 - r["p_urgent"]),
            "model_version": f"post_urgency/v{r['model_version']}",
        }
        for r in rows.to_pylist()
    }


def _push(
    annotations: Annotations,
    gold: Table,
    snapshot_id: int,
    chosen: list[str],
    tx: Any,
    pool: Table,
    from_model: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, int]:
    """The chosen posts with their text and course, in review order (the tool serves
    tasks in the order pushed), each with its pre-label: the champion's prediction
    when it scored the post (`from_model`), else the labeling functions' from the pool."""
    texts = gold.scan(
        row_filter=in_filter("post_id", chosen),
        selected_fields=("post_id", "body", "course_id"),
        snapshot_id=snapshot_id,
    ).to_arrow()
    keys = texts.column("post_id").cast(pa.string()).to_pylist()
    body = dict(zip(keys, texts.column("body").to_pylist(), strict=True))
    course = dict(zip(keys, texts.column("course_id").to_pylist(), strict=True))
    pre = {
        r["post_key"]: r
        for r in writes.staged_scan(tx, pool, MAIN, row_filter=in_filter("post_key", chosen))
        .to_arrow()
        .to_pylist()
    }
    pre.update(from_model or {})
    rows = [
        {
            "post_key": key,
            "body": body[key],
            "course_id": course[key],
            "prelabel": pre[key]["prelabel"],
            "confidence": pre[key]["confidence"],
            "model_version": pre[key]["model_version"],
        }
        for key in chosen
        if key in body  # gone from gold since the pool took it: not pushed
    ]
    if not rows:
        return 0, 0
    added = annotations.add_tasks(pa.Table.from_pylist(rows), data_columns=("course_id",))
    return added.added, added.predictions_replaced
