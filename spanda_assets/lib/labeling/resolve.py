"""From annotations to one label per post: ground truth wins, else the majority; ties stay open.

Annotations arrive as an Arrow table in `store.ANNOTATION_SCHEMA` (the local store's
`annotations_since`, or the same columns read from a Label Studio server). Cancelled
(skipped) annotations, choices outside the label set and annotations on tasks that no
longer exist are not votes: they are counted and reported, never guessed at. A tie is
not broken by a coin: the post stays unresolved and is listed, for a third annotator.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from spanda_assets.lib.labeling.rules import LABELS

RESOLVED_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("label", pa.string()),
        ("method", pa.string()),  # ground_truth | majority
        ("annotations", pa.int16()),  # valid annotations on the post
        ("agreeing", pa.int16()),  # of which chose the resolved label
    ]
)


@dataclass
class Resolution:
    """Resolved labels and everything a run reports about how they came to be."""

    labels: pa.Table
    unresolved: list[str] = field(default_factory=list)
    skipped_cancelled: int = 0
    skipped_unknown_label: int = 0
    skipped_deleted_task: int = 0
    skipped_superseded: int = 0  # an annotator's earlier annotation of the same post
    by_label: dict[str, int] = field(default_factory=dict)
    by_annotator: dict[str, int] = field(default_factory=dict)
    prelabels_accepted: int = 0
    prelabels_changed: int = 0

    def metadata(self) -> dict[str, Any]:
        """Counts only (no post text, no annotator beyond the tool's user id)."""
        return {
            "resolved": self.labels.num_rows,
            "unresolved_ties": len(self.unresolved),
            "skipped_cancelled": self.skipped_cancelled,
            "skipped_unknown_label": self.skipped_unknown_label,
            "skipped_deleted_task": self.skipped_deleted_task,
            "skipped_superseded": self.skipped_superseded,
            "by_label": dict(self.by_label),
            "by_annotator": dict(self.by_annotator),
            "prelabels_accepted": self.prelabels_accepted,
            "prelabels_changed": self.prelabels_changed,
        }


def _winner(choices: Sequence[str]) -> str | None:
    """The most frequent choice, or None when two or more share the top count."""
    ranked = Counter(choices).most_common()
    if not ranked or (len(ranked) > 1 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _latest_per_annotator(annotations: pa.Table, out: Resolution) -> list[dict[str, Any]]:
    """One vote per annotator and post: their latest annotation (a ground-truth one apart),
    so an annotator who saved twice does not outvote a colleague."""
    rows = annotations.select(
        [
            "post_key",
            "completed_by",
            "label",
            "was_cancelled",
            "ground_truth",
            "prelabel",
            "updated_at",
        ]
    ).to_pylist()
    rows.sort(key=lambda r: (r["updated_at"] is not None, r["updated_at"]))
    latest: dict[tuple[str, str, bool], dict[str, Any]] = {}
    for row in rows:
        latest[(row["post_key"], str(row["completed_by"]), bool(row["ground_truth"]))] = row
    out.skipped_superseded = len(rows) - len(latest)
    return list(latest.values())


def resolve(
    annotations: pa.Table,
    *,
    labels: Sequence[str] = LABELS,
    live_keys: Collection[str] | None = None,
) -> Resolution:
    """One label per post from its annotations (`store.ANNOTATION_SCHEMA` columns).

    Ground-truth annotations decide alone when a post has any (their own majority);
    otherwise all valid annotations vote. `live_keys`, when given, are the posts whose
    tasks still exist: annotations on any other post are skipped and counted.
    """
    out = Resolution(labels=RESOLVED_SCHEMA.empty_table())
    known = set(labels)
    votes: dict[str, list[tuple[str, bool]]] = {}
    for row in _latest_per_annotator(annotations, out):
        if live_keys is not None and row["post_key"] not in live_keys:
            out.skipped_deleted_task += 1
            continue
        if row["was_cancelled"]:
            out.skipped_cancelled += 1
            continue
        if row["label"] not in known:
            out.skipped_unknown_label += 1
            continue
        votes.setdefault(row["post_key"], []).append((row["label"], bool(row["ground_truth"])))
        who = str(row["completed_by"])
        out.by_annotator[who] = out.by_annotator.get(who, 0) + 1
        if row["prelabel"] in known:
            if row["prelabel"] == row["label"]:
                out.prelabels_accepted += 1
            else:
                out.prelabels_changed += 1
    rows: list[dict[str, Any]] = []
    for key in sorted(votes):
        cast = votes[key]
        truth = [label for label, gt in cast if gt]
        method = "ground_truth" if truth else "majority"
        label = _winner(truth or [label for label, _ in cast])
        if label is None:
            out.unresolved.append(key)
            continue
        agreeing = sum(1 for lab, _ in cast if lab == label)
        rows.append(
            {
                "post_key": key,
                "label": label,
                "method": method,
                "annotations": len(cast),
                "agreeing": agreeing,
            }
        )
        out.by_label[label] = out.by_label.get(label, 0) + 1
    out.labels = pa.Table.from_pylist(rows, schema=RESOLVED_SCHEMA)
    return out
