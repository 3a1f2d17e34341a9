"""Which posts annotators see next: the least certain first, plus a small random share.

Uncertainty sampling spends people's time where the current pre-labeler or model is
least sure (smallest margin between the two labels' probabilities). On its own it
gives a labeled set that over-represents hard posts, which biases any quality figure
computed on it; a seeded random share of each batch keeps an unbiased sample for
evaluation. Posts arrive as a stream of Arrow batches and only the batch being chosen
is held: a bounded heap for the uncertain part and a reservoir sample for the random
part.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

ORDER_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("margin", pa.float64()),
        ("reason", pa.string()),  # uncertain | random
        ("rank", pa.int32()),  # 0 first
    ]
)


def margin(urgent_probability: np.ndarray) -> np.ndarray:
    """|P(urgent) - P(not urgent)|: 0 is a coin toss, 1 is certain."""
    return np.abs(2 * np.asarray(urgent_probability, dtype=np.float64) - 1)


def review_order(
    batches: Iterable[pa.RecordBatch],
    *,
    batch_size: int,
    random_share: float = 0.1,
    seed: int = 0,
    key: str = "post_key",
    probability: str = "urgent_probability",
) -> pa.Table:
    """At most `batch_size` posts to label next, in the order to show them (ORDER_SCHEMA).

    `round(batch_size * random_share)` posts are drawn uniformly (seeded) from those not
    chosen for uncertainty; the rest are the smallest margins, ties broken by key so a
    re-run picks the same posts. Random picks are spread through the batch rather than
    put last, so an annotator who stops early still leaves some.
    """
    if batch_size <= 0:
        return ORDER_SCHEMA.empty_table()
    if not 0 <= random_share <= 1:
        raise ValueError(f"random_share must be between 0 and 1, got {random_share}")
    n_random = round(batch_size * random_share)
    n_uncertain = batch_size - n_random
    rng = np.random.default_rng(seed)
    # max-heap of the n_uncertain smallest (margin, key), as negated margins
    uncertain: list[tuple[float, Any, str]] = []
    reservoir: list[tuple[str, float]] = []
    reservoir_size = n_random + n_uncertain
    seen = 0
    for batch in batches:
        keys = batch.column(key).cast(pa.string()).to_pylist()
        margins = margin(np.asarray(batch.column(probability).fill_null(0.5)))
        for k, m in zip(keys, margins.tolist(), strict=True):
            item = (-m, _Reversed(k), k)
            if len(uncertain) < n_uncertain:
                heapq.heappush(uncertain, item)
            elif n_uncertain and item > uncertain[0]:
                heapq.heapreplace(uncertain, item)
            # Algorithm R: every post has the same chance to be in the reservoir
            if len(reservoir) < reservoir_size:
                reservoir.append((k, m))
            else:
                j = int(rng.integers(0, seen + 1))
                if j < reservoir_size:
                    reservoir[j] = (k, m)
            seen += 1
    chosen = sorted(((-neg, k) for neg, _, k in uncertain))
    taken = {k for _, k in chosen}
    rest = [item for item in reservoir if item[0] not in taken]
    picks = [rest[i] for i in rng.permutation(len(rest))[:n_random]]
    rows = [{"post_key": k, "margin": m, "reason": "uncertain"} for m, k in chosen]
    if picks:
        step = max(1, (len(rows) + len(picks)) // len(picks))
        for i, (k, m) in enumerate(picks):
            rows.insert(
                min(i * step + step - 1, len(rows)),
                {"post_key": k, "margin": m, "reason": "random"},
            )
    for rank, row in enumerate(rows):
        row["rank"] = rank
    return pa.Table.from_pylist(rows, schema=ORDER_SCHEMA)


class _Reversed:
    """A key that sorts backwards: in the max-heap, the larger key leaves first on a tie."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return self.value > other.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and self.value == other.value

    def __hash__(self) -> int:
        return hash(self.value)
