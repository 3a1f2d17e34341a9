"""The embedded annotation store: Label Studio's JSON export format in one file under SPANDA_HOME.

Without a Label Studio server, annotations live in `SPANDA_HOME/labels/annotations.json`,
a file that Label Studio itself could have exported (decision 0027): `spanda labels
export` copies it out, `spanda labels import` merges a real export in, and moving to
a server is a configuration change with nothing to convert.

Every change is read-modify-write under an exclusive lock on a side file, and the new
content is written to a temporary file that replaces the old one (`os.replace`), so a
reader sees the old store or the new one, never half of one. The store is small by
design (the labeled sample, not the whole gold table); it is held in memory while edited.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.labeling.lsformat import (
    ANNOTATION_SCHEMA,
    REVIEW_META,
    Annotation,
    Changes,
    Prediction,
    Task,
    TaskData,
    annotation_table,
    changes,
    choice_result,
    dump_tasks,
    parse_tasks,
    read_tasks,
    review_meta,
)

__all__ = [
    "ANNOTATION_SCHEMA",
    "AddResult",
    "AnnotationStore",
    "ImportResult",
    "write_atomically",
]

UTC = dt.UTC


@dataclass(frozen=True)
class AddResult:
    added: int
    predictions_replaced: int
    unchanged: int
    skipped: int = 0  # rows without a post key or text: nothing to label


@dataclass(frozen=True)
class ImportResult:
    tasks_added: int
    annotations_added: int
    annotations_already_present: int


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _annotation_identity(a: Annotation) -> tuple[str, str, str]:
    """What makes two annotations the same one, whatever id each side gave it."""
    result = json.dumps([r.model_dump(mode="json") for r in a.result], sort_keys=True)
    return (a.annotator(), a.created_at.isoformat(), result)


class AnnotationStore:
    """Tasks and annotations in one Label Studio export file, keyed by the post's key."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or settings.annotations_path()

    # --- reading and writing the file --------------------------------------------------
    def tasks(self) -> list[Task]:
        """Every task, annotated or not (an empty list before the first write)."""
        if not self.path.exists():
            return []
        return parse_tasks(self.path.read_text(encoding="utf-8"), origin=str(self.path))

    def _write(self, tasks: list[Task]) -> None:
        write_atomically(self.path, dump_tasks(tasks))

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[Task]]:
        """The tasks, to change in place; written back when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tasks = self.tasks()
            yield tasks
            self._write(tasks)

    # --- tasks -----------------------------------------------------------------------
    def add_tasks(
        self, posts: pa.Table | Iterable[pa.RecordBatch], *, data_columns: tuple[str, ...] = ()
    ) -> AddResult:
        """Add a task per post not yet in the store; re-runs never duplicate a task.

        `posts` has `post_key` and `body`, and optionally `prelabel`, `confidence` and
        `model_version` (the pre-labeler's output): a task whose prediction comes from
        another model version gets the new one instead, so the champion model's
        predictions replace the labeling functions' when it exists. `data_columns` are
        copied into the task data beside the key and the text.
        """
        batches = posts.to_batches() if isinstance(posts, pa.Table) else posts
        added = replaced = unchanged = skipped = 0
        with self._editing() as tasks:
            by_key = {t.data.post_key: t for t in tasks}
            next_id = max((t.id for t in tasks), default=0) + 1
            for batch in batches:
                for row in batch.to_pylist():
                    if row.get("post_key") is None or row.get("body") is None:
                        skipped += 1
                        continue
                    prediction = _prediction(row)
                    task = by_key.get(str(row["post_key"]))
                    if task is None:
                        extra = {c: _json_value(row[c]) for c in data_columns}
                        data = TaskData(post_key=str(row["post_key"]), body=row["body"], **extra)
                        task = Task(id=next_id, data=data, predictions=[])
                        next_id += 1
                        tasks.append(task)
                        by_key[task.data.post_key] = task
                        added += 1
                    elif prediction is None or any(
                        p.model_version == prediction.model_version for p in task.predictions
                    ):
                        unchanged += 1
                        continue
                    else:
                        replaced += 1
                    if prediction is not None:
                        task.predictions = [prediction]
        return AddResult(
            added=added, predictions_replaced=replaced, unchanged=unchanged, skipped=skipped
        )

    def delete(self, post_keys: Iterable[str]) -> int:
        """Remove the tasks of these posts with all their annotations (consent withdrawn)."""
        doomed = set(post_keys)
        with self._editing() as tasks:
            kept = [t for t in tasks if t.data.post_key not in doomed]
            removed = len(tasks) - len(kept)
            tasks[:] = kept
        return removed

    # --- annotations -------------------------------------------------------------------
    def add_annotation(
        self,
        post_key: str,
        label: str,
        *,
        completed_by: int | str,
        ground_truth: bool = False,
        was_cancelled: bool = False,
        lead_time: float | None = None,
        at: dt.datetime | None = None,
    ) -> Annotation:
        """Record one annotator's choice on the task of `post_key`, as Label Studio would."""
        with self._editing() as tasks:
            return _annotate(
                tasks,
                post_key,
                label,
                completed_by=completed_by,
                ground_truth=ground_truth,
                was_cancelled=was_cancelled,
                lead_time=lead_time,
                at=at or _now(),
            )

    def add_annotations(self, choices: Iterable[tuple[str, str, int | str]]) -> int:
        """Record many (post key, label, annotator) choices in one rewrite of the store."""
        when = _now()
        with self._editing() as tasks:
            n = 0
            for post_key, label, who in choices:
                _annotate(tasks, post_key, label, completed_by=who, at=when)
                n += 1
        return n

    def annotations_since(self, watermark: dt.datetime | None = None) -> pa.Table:
        """Annotations updated strictly after `watermark` (all with None), ANNOTATION_SCHEMA.

        The caller keeps the largest `updated_at` it has read as the next watermark.
        """
        return annotation_table(self.tasks(), after=watermark)

    def changed_since(self, watermark: dt.datetime | None) -> Changes:
        """Every annotation of the tasks with one updated after `watermark` (less the
        overlap): what resolution needs to decide those posts again."""
        return changes(self.tasks(), watermark)

    def task_keys(self) -> set[str]:
        return {t.data.post_key for t in self.tasks()}

    def task_texts(self) -> dict[str, str]:
        """post_key -> the text annotators see."""
        return {t.data.post_key: t.data.body for t in self.tasks()}

    def update_texts(self, texts: dict[str, str]) -> int:
        """Replace the text of these posts' tasks (gold re-derived it: a scrubber fix must
        reach annotators too); annotations stay."""
        changed = 0
        with self._editing() as tasks:
            for task in tasks:
                body = texts.get(task.data.post_key)
                if body is not None and body != task.data.body:
                    task.data.body = body
                    changed += 1
        return changed

    def review(self, flags: pa.Table) -> int:
        """Mark these posts for a second look (`meta.spanda_review`) and clear the mark of
        posts no longer flagged; returns how many tasks changed."""
        wanted = {f["post_key"]: review_meta(f) for f in flags.to_pylist()}
        changed = 0
        with self._editing() as tasks:
            for task in tasks:
                mark = wanted.get(task.data.post_key)
                if task.meta.get(REVIEW_META) != mark:
                    if mark is None:
                        task.meta.pop(REVIEW_META, None)
                    else:
                        task.meta[REVIEW_META] = mark
                    changed += 1
        return changed

    # --- moving annotations between stores -------------------------------------------
    def export(self, path: Path) -> int:
        """Write every task, annotated or not, to `path` in Label Studio's JSON export format."""
        tasks = self.tasks()
        AnnotationStore(path)._write(tasks)
        return len(tasks)

    def import_file(self, path: Path) -> ImportResult:
        """Merge a Label Studio JSON export into the store, keyed by `data.post_key`.

        The file is validated whole before anything is written. A new post becomes a
        task; on a known post, annotations not yet present are added (an annotation is
        the same when annotator, creation time and result are), so importing a file
        twice adds nothing the second time. Ids are renumbered where they would clash.
        """
        incoming = read_tasks(path)
        tasks_added = added = present = 0
        with self._editing() as tasks:
            by_key = {t.data.post_key: t for t in tasks}
            task_ids = {t.id for t in tasks}
            next_annotation = max((a.id for t in tasks for a in t.annotations), default=0) + 1
            for new in incoming:
                task = by_key.get(new.data.post_key)
                if task is None:
                    task = new.model_copy(update={"annotations": []})
                    if task.id in task_ids:
                        task.id = max(task_ids) + 1
                    task_ids.add(task.id)
                    tasks.append(task)
                    by_key[task.data.post_key] = task
                    tasks_added += 1
                elif not task.predictions and new.predictions:
                    task.predictions = list(new.predictions)
                seen = {_annotation_identity(a) for a in task.annotations}
                for a in new.annotations:
                    if _annotation_identity(a) in seen:
                        present += 1
                        continue
                    # Stamped as changed now, whatever its own updated_at says: the next
                    # incremental pull must see it, however old the annotation is.
                    task.annotations.append(
                        a.model_copy(update={"id": next_annotation, "updated_at": _now()})
                    )
                    seen.add(_annotation_identity(a))
                    next_annotation += 1
                    added += 1
        return ImportResult(
            tasks_added=tasks_added, annotations_added=added, annotations_already_present=present
        )


def _annotate(
    tasks: list[Task],
    post_key: str,
    label: str,
    *,
    completed_by: int | str,
    at: dt.datetime,
    ground_truth: bool = False,
    was_cancelled: bool = False,
    lead_time: float | None = None,
) -> Annotation:
    task = next((t for t in tasks if t.data.post_key == post_key), None)
    if task is None:
        raise SpandaError(f"no task for post {post_key!r}: add the post as a task first")
    annotation = Annotation(
        id=max((a.id for t in tasks for a in t.annotations), default=0) + 1,
        completed_by=completed_by,
        result=[] if was_cancelled else choice_result(label),
        was_cancelled=was_cancelled,
        ground_truth=ground_truth,
        created_at=at,
        updated_at=at,
        lead_time=lead_time,
    )
    task.annotations.append(annotation)
    return annotation


def write_atomically(path: Path, text: str) -> None:
    """`text` to `path` through a temporary file and `os.replace`: a reader sees the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def _prediction(row: dict[str, Any]) -> Prediction | None:
    label = row.get("prelabel")
    if not label:
        return None
    return Prediction(
        model_version=str(row.get("model_version") or ""),
        score=row.get("confidence"),
        result=choice_result(label),
    )
