"""How far annotators agree on the posts more than one of them labeled (the overlap sample).

Three figures, because readers know different ones: Krippendorff's alpha (nominal; any
number of annotators, missing labels allowed), Cohen's kappa for the pair of annotators
who share the most posts (scikit-learn), and Fleiss' kappa over posts with the same
number of labels (statsmodels). Krippendorff's alpha is written out here: the
`krippendorff` package is GPL-3.0, and the nominal formula is a few lines.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as _fleiss

from spanda_assets.lib.labeling.rules import LABELS


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data; each unit is the values it received.

    With o_ck the coincidence matrix (each unit adds its ordered pairs of values from
    different coders, weighted 1 / (m_u - 1)), n_c its margins and n their sum,
    alpha = 1 - (n - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k
    (Krippendorff, "Computing Krippendorff's Alpha-Reliability", 2011). Units with fewer
    than two values are not pairable and are left out. None when nothing is pairable or
    every value is the same (no variation: agreement is undefined, not perfect).
    """
    observed_disagreement = 0.0
    margins: Counter[Hashable] = Counter()
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        counts = Counter(unit)
        # ordered pairs of different values in this unit: m^2 - sum of squared counts
        observed_disagreement += (m * m - sum(c * c for c in counts.values())) / (m - 1)
        margins.update(counts)
    n = sum(margins.values())
    expected = n * n - sum(c * c for c in margins.values())  # sum over c != k of n_c n_k
    if n < 2 or expected == 0:
        return None
    return 1 - (n - 1) * observed_disagreement / expected


def fleiss_kappa(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a posts x labels table of counts (same number of labels per post)."""
    table = np.asarray(counts, dtype=np.float64)
    if table.shape[0] == 0 or len(set(table.sum(axis=1))) != 1 or table.sum(axis=1)[0] < 2:
        return None
    value = float(_fleiss(table, method="fleiss"))
    return None if math.isnan(value) else value


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two annotators' labels on the same posts (None if undefined)."""
    if len(first) < 2:
        return None
    value = float(cohen_kappa_score(list(first), list(second)))
    return None if math.isnan(value) else value


def _by_post(annotations: pa.Table, labels: Sequence[str]) -> dict[str, dict[str, str]]:
    """post -> annotator -> label, valid annotations only; an annotator's latest counts."""
    rows = annotations.select(
        ["post_key", "completed_by", "label", "was_cancelled", "annotation_id"]
    ).to_pylist()
    out: dict[str, dict[str, str]] = {}
    for row in sorted(rows, key=lambda r: r["annotation_id"]):
        if row["was_cancelled"] or row["label"] not in labels:
            continue
        out.setdefault(row["post_key"], {})[str(row["completed_by"])] = row["label"]
    return out


def agreement(annotations: pa.Table, labels: Sequence[str] = LABELS) -> dict[str, Any]:
    """Agreement figures on the overlap sample of an annotation table (ANNOTATION_SCHEMA).

    Fleiss' kappa needs the same number of labels on every post: it uses the most common
    number k among overlap posts, and the first k annotators (by annotation id) of posts
    with more.
    """
    per_post = _by_post(annotations, labels)
    overlap = {k: v for k, v in per_post.items() if len(v) >= 2}
    result: dict[str, Any] = {
        "overlap_posts": len(overlap),
        "krippendorff_alpha": krippendorff_alpha_nominal(
            [list(v.values()) for v in overlap.values()]
        ),
        "cohen_kappa": None,
        "cohen_pair": None,
        "cohen_posts": 0,
        "fleiss_kappa": None,
        "fleiss_posts": 0,
        "fleiss_raters": 0,
    }
    if not overlap:
        return result
    shared: Counter[tuple[str, str]] = Counter()
    for who in overlap.values():
        shared.update(itertools.combinations(sorted(who), 2))
    (a, b), n_shared = min(shared.items(), key=lambda item: (-item[1], item[0]))
    pairs = [(v[a], v[b]) for v in overlap.values() if a in v and b in v]
    result["cohen_pair"] = [a, b]
    result["cohen_posts"] = n_shared
    result["cohen_kappa"] = cohen_kappa([p[0] for p in pairs], [p[1] for p in pairs])
    k = Counter(len(v) for v in overlap.values()).most_common(1)[0][0]
    index = {label: i for i, label in enumerate(labels)}
    table: np.ndarray[Any, np.dtype[np.float64]] = np.zeros((0, len(labels)))
    rows = []
    for who in overlap.values():
        if len(who) >= k:
            row = np.zeros(len(labels))
            for label in list(who.values())[:k]:
                row[index[label]] += 1
            rows.append(row)
    if rows:
        table = np.vstack(rows)
    result["fleiss_kappa"] = fleiss_kappa(table)
    result["fleiss_posts"] = len(rows)
    result["fleiss_raters"] = k
    return result
