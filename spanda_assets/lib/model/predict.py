"""gold.post_predictions: the champion's P(urgent) for every published post, incremental.

Each run reads only the gold.validated_posts main rows added since the gold position
it recorded (`rows_added_after`, in Arrow batches), scores them with
`models:/post_urgency@champion` and merges them by post key on the table's audit
branch, with the position, in one commit (write-audit-publish, decision 0017). A
post whose text gold re-derived is scored again (it arrives as a new gold row).
The table is rescored from all of gold when gold was recreated.

Rows keep the model version that scored them: a new champion scores the posts
published after it took the alias; earlier rows keep their version (re-scoring
all of gold on every promotion would make cost grow with total data).

Rows of students whose consent is gone are erased from main at once, like every
other gold table (erasure never waits for an audit).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets import settings
from spanda_assets.lib import scale, writes
from spanda_assets.lib.incremental import rows_added_after
from spanda_assets.lib.model.frame import POSTS
from spanda_assets.lib.writes import AUDIT, MAIN, in_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

PREDICTIONS = ("gold", "post_predictions")
PREDICTIONS_SCHEMA = pa.schema(
    [
        pa.field("post_key", pa.string(), nullable=False),
        ("subject_id", pa.string()),
        ("course_id", pa.int64()),
        ("body_length", pa.int32()),
        ("word_count", pa.int32()),
        ("p_urgent", pa.float64()),
        ("label", pa.string()),
        ("model_version", pa.string()),
        ("gold_snapshot_id", pa.int64()),  # the batch: gold's main when it was scored
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)
GOLD_SEQ_KEY = "spanda.predictions-gold-seq"
GOLD_UUID_KEY = "spanda.predictions-gold-uuid"
CONSENT_KEY = "spanda.predictions-consent-watermark"
STATE_KEYS = (GOLD_SEQ_KEY, GOLD_UUID_KEY, CONSENT_KEY)
READ_ROWS = 20_000


@dataclass
class ScoreResult:
    scored: int = 0
    gold_rows_read: int = 0
    rescored_all: bool = False
    erased_after_withdrawal: int = 0
    model_version: str = ""
    gold_snapshot_id: int | None = None
    batches: int = 0
    by_label: dict[str, int] = field(default_factory=dict)
    # A seeded sample of this run's scored posts with their text, for the drift audits:
    # they compare it in the same run, so nothing is read back from gold.
    sample: pa.Table | None = None
    fanout: scale.FanOut = field(default_factory=scale.FanOut)

    def metadata(self) -> dict[str, Any]:
        return {
            **self.fanout.metadata(),
            "posts_scored": self.scored,
            "gold_rows_read": self.gold_rows_read,
            "rescored_all_of_gold": self.rescored_all,
            "rows_erased_after_withdrawal": self.erased_after_withdrawal,
            "model_version": self.model_version,
            "gold_snapshot_id": str(self.gold_snapshot_id or ""),
            "batches": self.batches,
            "scored_by_label": self.by_label,
        }


def open_predictions(catalog: Catalog) -> Table:
    return catalog.create_table_if_not_exists(
        PREDICTIONS, schema=PREDICTIONS_SCHEMA, properties={writes.NO_RETRY: "0"}
    )


def erase_departed(table: Table, consent: Any) -> int:
    """Erase from main the rows of students whose consent is gone (`consent` is gold's
    GoldConsent: active subjects, the newest consent event id, subjects changed since).

    Only the students whose consent changed since the watermark the table last published
    are looked at, so an ordinary run reads nothing; the first run looks at every
    student once.
    """
    if writes.row_count(table, MAIN) == 0:
        return 0
    state = writes.read_state(table, GOLD_SEQ_KEY, STATE_KEYS, MAIN)
    if CONSENT_KEY in state:
        candidates = consent.changed_since(int(state[CONSENT_KEY] or 0))
    else:
        candidates = set(
            writes.scan(table, MAIN, selected_fields=("subject_id",))
            .to_arrow()["subject_id"]
            .to_pylist()
        )
    gone = sorted(s for s in candidates if s is not None and s not in consent.active)
    if not gone:
        return 0
    return writes.erase_rows(table, in_filter("subject_id", gone))


def score_batch(
    model: Any,
    batch: pa.RecordBatch,
    version: str,
    snapshot_id: int,
    now: dt.datetime,
    threshold: float = 0.5,
) -> pa.Table:
    """One gold batch (post_id, subject_id, course_id, body) as prediction rows, stamped
    with the run's time (`now`: one per run, so a run's rows share it)."""
    import pandas as pd

    bodies = batch.column("body").to_pylist()
    out = model.predict(pd.DataFrame({"body": bodies}))
    p = np.asarray(out["p_urgent"] if isinstance(out, pd.DataFrame) else out, dtype=float).ravel()
    texts = [b or "" for b in bodies]
    return pa.table(
        {
            "post_key": batch.column("post_id").cast(pa.string()),
            "subject_id": batch.column("subject_id").cast(pa.string()),
            "course_id": batch.column("course_id").cast(pa.int64()),
            "body_length": pa.array([len(t) for t in texts], pa.int32()),
            "word_count": pa.array([len(t.split()) for t in texts], pa.int32()),
            "p_urgent": pa.array(p, pa.float64()),
            "label": pa.array(np.where(p >= threshold, "urgent", "not_urgent"), pa.string()),
            "model_version": pa.array([version] * batch.num_rows, pa.string()),
            "gold_snapshot_id": pa.array([snapshot_id] * batch.num_rows, pa.int64()),
            "scored_at": pa.array([now] * batch.num_rows, pa.timestamp("us", tz="UTC")),
        },
        schema=PREDICTIONS_SCHEMA,
    )


class ModelFiles:
    """A registered model's files as one archive: what a Ray worker loads it from.

    A loaded pyfunc model does not travel by pickle (models from code live in a module
    made at load time), and a worker that fetched it from MLflow itself would need the
    registry's address and credentials. The driver downloads the files once; the
    archive goes to the object store once per run; each worker process loads it once.
    """

    def __init__(self, uri: str) -> None:
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
                tar.add(local, arcname="model")
        self.uri = uri
        self.archive = buffer.getvalue()
        self.digest = hashlib.sha256(self.archive).hexdigest()

    def load(self) -> Any:
        """The model, loaded once per process from the archive, unpacked once per machine
        (one directory per model archive: workers of later runs reuse it)."""
        with _loaded_lock:
            if self.digest not in _loaded:
                import mlflow

                where = Path(tempfile.gettempdir()) / f"spanda-model-{self.digest[:24]}"
                if not where.is_dir():
                    staging = tempfile.mkdtemp(prefix=f"{where.name}.", dir=where.parent)
                    with tarfile.open(fileobj=io.BytesIO(self.archive), mode="r:gz") as tar:
                        tar.extractall(staging, filter="data")
                    try:
                        os.rename(staging, where)  # whole, or not at all
                    except OSError:  # another worker was first
                        shutil.rmtree(staging, ignore_errors=True)
                _loaded[self.digest] = mlflow.pyfunc.load_model(str(where / "model"))
            return _loaded[self.digest]


_loaded: dict[str, Any] = {}  # archive digest -> the model, per worker process
_loaded_lock = threading.Lock()


@dataclass(frozen=True)
class Scored:
    """One gold batch scored: its size, and the prediction rows of its consenting posts
    with their text (for the drift sample); None when no post of it may be scored."""

    read: int
    rows: pa.Table | None
    bodies: pa.ChunkedArray | None


def score_consenting(
    batch: pa.RecordBatch,
    model: Any,
    allowed: pa.Array,
    version: str,
    snapshot_id: int,
    now: dt.datetime,
    threshold: float,
) -> Scored:
    """The consent filter and `score_batch` on one gold batch. Pure given the model
    (a loaded one, or its `ModelFiles`): the unit that fans out to Ray workers."""
    if isinstance(model, ModelFiles):
        model = model.load()
    keep = pc.is_in(batch.column("subject_id").cast(pa.string()), allowed)
    consenting = batch.filter(keep)
    if consenting.num_rows == 0:
        return Scored(batch.num_rows, None, None)
    rows = score_batch(model, consenting, version, snapshot_id, now, threshold)
    bodies = pa.chunked_array([consenting.column("body").cast(pa.string())])
    return Scored(batch.num_rows, rows, bodies)


def stage_predictions(
    catalog: Catalog,
    model: Any,
    version: str,
    consent: Any,
    threshold: float = 0.5,
    sample_rows: int = 5_000,
    model_uri: str | None = None,
) -> ScoreResult:
    """Score the gold rows added since the last run and stage them on the audit branch.
    Run `erase_departed` first: erasure must not wait for a champion. `model_uri`: where
    `model` was loaded from, for Ray workers to load the same files (lib/scale.py)."""
    gold = catalog.load_table(POSTS)
    head = gold.snapshot_by_name(MAIN)
    table = open_predictions(catalog)
    result = ScoreResult(model_version=version)
    reservoir = Reservoir(sample_rows)
    writes.open_audit(table)
    table.refresh()
    if head is None:
        return result
    result.gold_snapshot_id = head.snapshot_id
    state = writes.read_state(table, GOLD_SEQ_KEY, STATE_KEYS, AUDIT)
    uuid = str(gold.metadata.table_uuid)
    result.rescored_all = state.get(GOLD_UUID_KEY) not in (None, uuid)
    after = 0 if state.get(GOLD_UUID_KEY) != uuid else int(state.get(GOLD_SEQ_KEY, 0) or 0)
    props = {
        GOLD_SEQ_KEY: str(writes.sequence(head)),
        GOLD_UUID_KEY: uuid,
        CONSENT_KEY: str(consent.watermark),
    }
    now = dt.datetime.now(dt.UTC)
    tx = table.transaction()
    if result.rescored_all:
        tx.delete(delete_filter=_all(), branch=AUDIT)
    counts: dict[str, int] = {}
    allowed = pa.array(sorted(consent.active), pa.string())
    known: Known | None = None
    # Scoring fans out (SPANDA_EXECUTOR: the model goes to the workers once); this
    # process merges and commits.
    runner = scale.runner("gold.post_predictions")
    shipped = model
    if runner.executor == settings.EXECUTOR_RAY and model_uri:
        shipped = ModelFiles(model_uri)
    batches = rows_added_after(
        gold, after, READ_ROWS, selected_fields=("post_id", "subject_id", "course_id", "body")
    )
    for scored in runner.map(
        score_consenting, batches, shipped, allowed, version, head.snapshot_id, now, threshold
    ):
        result.gold_rows_read += scored.read
        rows = scored.rows
        if rows is None or scored.bodies is None:
            continue
        reservoir.add(rows.append_column("body", scored.bodies))
        if known is None:
            known = Known(table, empty=result.rescored_all)
        _write(tx, table, rows, props, known)
        result.scored += rows.num_rows
        result.batches += 1
        for label, n in zip(
            *np.unique(rows["label"].to_numpy(zero_copy_only=False), return_counts=True),
            strict=True,
        ):
            counts[str(label)] = counts.get(str(label), 0) + int(n)
    result.by_label = counts
    result.fanout = runner.stats
    result.sample = reservoir.table()
    writes.close_run(tx, PREDICTIONS_SCHEMA, props, AUDIT)
    tx.commit_transaction()
    return result


class Known:
    """The post keys the predictions table holds, read once per run (the key column
    only) when the first batch needs it; keys appended in this run are added."""

    def __init__(self, table: Table, empty: bool = False) -> None:
        keys: list[str] = []
        if not empty and writes.head(table, AUDIT) is not None:
            keys = (
                writes.scan(table, AUDIT, selected_fields=("post_key",))
                .to_arrow()["post_key"]
                .to_pylist()
            )
        self.keys = set(keys)

    def split(self, rows: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(rows whose key is new, rows whose key the table already holds)."""
        mask = pa.array([k in self.keys for k in rows["post_key"].to_pylist()], pa.bool_())
        return rows.filter(pc.invert(mask)), rows.filter(mask)


def _write(tx: Any, table: Table, rows: pa.Table, props: dict[str, str], known: Known) -> None:
    """New posts are appended; a post scored before (its text re-derived) is merged by
    key. Random pseudonymous keys defeat file pruning, so a key lookup reads every
    file: done once per run on the key column (`Known`), not per batch on all columns."""
    rows = writes.latest_per_key(rows, ["post_key"], None)
    fresh, again = known.split(rows)
    if fresh.num_rows:
        tx.append(fresh, snapshot_properties=dict(props), branch=AUDIT)
        known.keys.update(fresh["post_key"].to_pylist())
    if again.num_rows:
        writes.merge_rows(tx, table, again, ["post_key"], props, branch=AUDIT)


class Reservoir:
    """A uniform, seeded sample of at most `size` rows of a stream of Arrow tables
    (Vitter's algorithm R): memory stays at `size` rows, whatever the stream's length."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.seen = 0
        self.kept: pa.Table | None = None
        self.slots: Any = np.empty(0, dtype=np.int64)  # the reservoir slot of each kept row

    def add(self, rows: pa.Table) -> None:
        n = rows.num_rows
        if n == 0 or self.size == 0:
            return
        pos = np.arange(self.seen, self.seen + n)
        self.seen += n
        # row i of the stream takes slot i while the reservoir fills, then a random slot
        # with probability size / (i + 1); within a batch the later row wins a slot
        slot = np.where(pos < self.size, pos, self.rng.integers(0, pos + 1))
        winner: dict[int, int] = {}
        for i in np.flatnonzero(slot < self.size):
            winner[int(slot[i])] = int(i)
        if not winner:
            return
        taken = np.fromiter(winner.keys(), dtype=np.int64)
        new = rows.take(pa.array(list(winner.values()), pa.int64()))
        if self.kept is None:
            self.kept, self.slots = new, taken
            return
        stay = ~np.isin(self.slots, taken)
        self.kept = pa.concat_tables([self.kept.filter(pa.array(stay)), new])
        self.slots = np.concatenate([self.slots[stay], taken])

    def table(self) -> pa.Table | None:
        return self.kept


def _all() -> Any:
    from pyiceberg.expressions import AlwaysTrue

    return AlwaysTrue()


def newest_batch(table: Table, max_rows: int, seed: int = 0) -> pa.Table:
    """The rows this run staged (the audit branch's files main lacks), a seeded sample of
    at most `max_rows`: what the drift checks compare. Reads the new files only, in
    batches, holding no more than the sample."""
    from spanda_assets.lib.incremental import read_files

    pending = writes.pending(table)
    if not pending.anything:
        return PREDICTIONS_SCHEMA.empty_table()
    files = writes.unpublished_files(pending.view, pending.after_sequence)
    sample = Reservoir(max_rows, seed)
    for batch in read_files(pending.view, files, READ_ROWS, ("*",)):
        sample.add(pa.Table.from_batches([batch]))
    rows = sample.table()
    return PREDICTIONS_SCHEMA.empty_table() if rows is None else rows.cast(PREDICTIONS_SCHEMA)
