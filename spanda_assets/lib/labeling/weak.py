"""Weak supervision: run the labeling functions over a stream of posts and combine their votes.

Posts come as Arrow record batches (a key column and the de-identified `body`), so a
table of any size is pre-labeled in constant memory. Each batch becomes a vote matrix
(one row per post, one column per rule: 1 urgent, 0 not urgent, -1 abstain), which
gives the pre-label and, accumulated in `LabelingStats`, the per-rule figures a run
reports: coverage, overlaps, conflicts and accuracy against the labels people gave.

Confidence of the majority vote: the rule of succession over the votes cast,
P(urgent) = (u + 1) / (u + n + 2) for u urgent and n not-urgent votes, and the
confidence is that probability or its complement, whichever label wins. One vote
gives 0.67, three agreeing votes 0.8, two against one 0.6; no vote or a tie gives no
pre-label (0.5), so those posts come first in the review queue. The optional label
model weighs each vote by its rule's measured accuracy (naive Bayes: rules are
assumed to err independently), P(urgent) = sigmoid(sum of ±log(a / (1 - a))).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.labeling.rules import (
    MEASURE_PATTERNS,
    NOT_URGENT,
    URGENT,
    LabelingFunction,
    RuleSet,
)

ABSTAIN = -1
# What a rule's accuracy is taken to be before enough people's labels exist to measure it.
PRIOR_ACCURACY = 0.75
MIN_LABELS_FOR_ACCURACY = 20

PRELABEL_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("prelabel", pa.string()),  # null: every rule abstained, or the votes tied
        ("confidence", pa.float64()),
        ("urgent_probability", pa.float64()),
        ("urgent_votes", pa.int16()),
        ("not_urgent_votes", pa.int16()),
        ("model_version", pa.string()),
    ]
)


def _fires(rule: LabelingFunction, bodies: pa.Array) -> np.ndarray:
    if rule.pattern is not None:
        hit = pc.match_substring_regex(bodies, pattern=rule.pattern, ignore_case=True)
        return np.asarray(pc.fill_null(hit, False).to_numpy(zero_copy_only=False), dtype=bool)
    pattern = MEASURE_PATTERNS[str(rule.measure)]
    counts = pc.fill_null(pc.count_substring_regex(bodies, pattern=pattern), 0)
    values = np.asarray(counts.to_numpy(zero_copy_only=False))
    fires = np.ones(len(values), dtype=bool)
    if rule.at_least is not None:
        fires &= values >= rule.at_least
    if rule.at_most is not None:
        fires &= values <= rule.at_most
    # an empty or missing text says nothing, even to a rule about short posts
    present = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(bodies)), 0), False)
    return fires & np.asarray(present.to_numpy(zero_copy_only=False), dtype=bool)


def vote_matrix(rules: RuleSet, bodies: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Votes of every rule on every text: int8, 1 urgent, 0 not urgent, -1 abstain."""
    if isinstance(bodies, pa.ChunkedArray):
        bodies = bodies.combine_chunks()
    votes = np.full((len(bodies), len(rules.functions)), ABSTAIN, dtype=np.int8)
    for j, rule in enumerate(rules.functions):
        votes[_fires(rule, bodies), j] = 1 if rule.vote == URGENT else 0
    return votes


def majority(votes: np.ndarray) -> np.ndarray:
    """P(urgent) per post by the rule of succession over the votes cast (0.5 with none)."""
    urgent = (votes == 1).sum(axis=1)
    cast = (votes != ABSTAIN).sum(axis=1)
    return np.asarray((urgent + 1) / (cast + 2), dtype=np.float64)


def weighted(votes: np.ndarray, accuracies: np.ndarray) -> np.ndarray:
    """P(urgent) per post from votes weighted by log-odds of each rule's accuracy.

    Accuracies are clipped to [0.5, 0.99]: a rule worse than a coin adds nothing rather
    than voting backwards, and none is trusted absolutely.
    """
    acc = np.clip(np.asarray(accuracies, dtype=np.float64), 0.5, 0.99)
    weight = np.log(acc / (1 - acc))
    signed = np.where(votes == 1, 1.0, np.where(votes == 0, -1.0, 0.0))
    return np.asarray(1 / (1 + np.exp(-(signed @ weight))), dtype=np.float64)


@dataclass
class RuleFigures:
    """Counts for one rule over a run; ratios are computed when reported."""

    votes: int = 0
    overlaps: int = 0
    conflicts: int = 0
    labeled: int = 0
    correct: int = 0


@dataclass
class LabelingStats:
    """Per-rule coverage, overlaps, conflicts and empirical accuracy, summed over batches."""

    names: list[str]
    rows: int = 0
    covered: int = 0
    conflicted: int = 0
    per_rule: dict[str, RuleFigures] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in self.names:
            self.per_rule.setdefault(name, RuleFigures())

    def update(self, votes: np.ndarray, known: np.ndarray | None = None) -> None:
        """Add one batch. `known` holds 1/0 for posts people labeled, -1 for the rest."""
        cast = votes != ABSTAIN
        n_cast = cast.sum(axis=1)
        n_urgent = (votes == 1).sum(axis=1)
        mixed = (n_urgent > 0) & (n_urgent < n_cast)
        self.rows += len(votes)
        self.covered += int((n_cast > 0).sum())
        self.conflicted += int(mixed.sum())
        for j, name in enumerate(self.names):
            fig = self.per_rule[name]
            mine = cast[:, j]
            fig.votes += int(mine.sum())
            fig.overlaps += int((mine & (n_cast > 1)).sum())
            # another rule voted the other way on a post this rule voted on
            other_way = np.where(votes[:, j] == 1, n_cast - n_urgent, n_urgent)
            fig.conflicts += int((mine & (other_way > 0)).sum())
            if known is not None:
                scored = mine & (known != ABSTAIN)
                fig.labeled += int(scored.sum())
                fig.correct += int((scored & (votes[:, j] == known)).sum())

    def accuracies(self, min_labels: int = MIN_LABELS_FOR_ACCURACY) -> np.ndarray:
        """Each rule's smoothed accuracy, or PRIOR_ACCURACY while it has too few labels."""
        out = []
        for name in self.names:
            fig = self.per_rule[name]
            enough = fig.labeled >= min_labels
            out.append((fig.correct + 1) / (fig.labeled + 2) if enough else PRIOR_ACCURACY)
        return np.asarray(out, dtype=np.float64)

    def summary(self) -> list[dict[str, Any]]:
        """One row per rule, the shape run metadata shows: ratios over the posts seen."""
        rows = max(self.rows, 1)
        return [
            {
                "function": name,
                "votes": fig.votes,
                "coverage": round(fig.votes / rows, 4),
                "overlap": round(fig.overlaps / rows, 4),
                "conflict": round(fig.conflicts / rows, 4),
                "labeled": fig.labeled,
                "accuracy": round(fig.correct / fig.labeled, 4) if fig.labeled else None,
            }
            for name, fig in self.per_rule.items()
        ]

    def totals(self) -> dict[str, float | int]:
        rows = max(self.rows, 1)
        return {
            "posts": self.rows,
            "coverage": round(self.covered / rows, 4),
            "conflict": round(self.conflicted / rows, 4),
        }


def _known(keys: list[Any], labels: Mapping[str, str]) -> np.ndarray:
    codes = {URGENT: 1, NOT_URGENT: 0}
    return np.asarray([codes.get(labels.get(k, ""), ABSTAIN) for k in keys], dtype=np.int8)


def prelabel_batches(
    rules: RuleSet,
    batches: Iterable[pa.RecordBatch],
    *,
    key: str = "post_key",
    text: str = "body",
    stats: LabelingStats | None = None,
    known_labels: Mapping[str, str] | None = None,
    accuracies: np.ndarray | None = None,
) -> Iterator[pa.RecordBatch]:
    """Pre-label each batch of posts (PRELABEL_SCHEMA), updating `stats` as it goes.

    `known_labels` (post key -> label people gave) scores each rule's accuracy;
    `accuracies` switches from the majority vote to the weighted label model.
    """
    for batch in batches:
        votes = vote_matrix(rules, batch.column(text))
        keys = batch.column(key).cast(pa.string())
        if stats is not None:
            known = _known(keys.to_pylist(), known_labels) if known_labels else None
            stats.update(votes, known)
        p = majority(votes) if accuracies is None else weighted(votes, accuracies)
        urgent = (votes == 1).sum(axis=1)
        cast = (votes != ABSTAIN).sum(axis=1)
        decided = ~np.isclose(p, 0.5)
        label = np.where(p > 0.5, URGENT, NOT_URGENT)
        yield pa.RecordBatch.from_arrays(
            [
                keys,
                pa.array([lab if d else None for lab, d in zip(label, decided, strict=True)]),
                pa.array(np.maximum(p, 1 - p)),
                pa.array(p),
                pa.array(urgent.astype(np.int16)),
                pa.array((cast - urgent).astype(np.int16)),
                pa.array([rules.model_version] * len(votes), pa.string()),
            ],
            schema=PRELABEL_SCHEMA,
        )
