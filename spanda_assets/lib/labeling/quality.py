"""Label quality: enough labels per class to train on, and labels that are likely wrong.

Likely mislabeled posts are found by confident learning (cleanlab 2.x): a TF-IDF +
logistic-regression model is fitted on k-1 folds and predicts the held-out fold, so
every post gets a probability from a model that never saw its label; cleanlab then
flags the posts whose label disagrees with what the rest of the labeled set implies,
ranked by how little the model believes the given label. The flags are a review
queue for people, never an automatic relabel.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline

from spanda_assets.lib.labeling.rules import LABELS

LABEL_ISSUES_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("label", pa.string()),  # the label people gave
        ("suggested", pa.string()),  # what the out-of-fold model predicts instead
        ("label_quality", pa.float64()),  # the model's probability of the given label
    ]
)


def text_classifier(seed: int = 0) -> Pipeline:
    """Word and word-pair TF-IDF into a class-balanced logistic regression.

    Small and fast on a few thousand posts; the balance keeps the rare `urgent` class
    from being flagged wholesale as noise in an unbalanced labeled set.
    """
    return make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed),
    )


def out_of_fold_probabilities(
    texts: Sequence[str], labels: Sequence[str], *, folds: int = 5, seed: int = 0
) -> np.ndarray:
    """P(label) for each post from a model fitted without that post (columns in LABELS order)."""
    y = np.asarray([LABELS.index(label) for label in labels])
    smallest = min(Counter(y.tolist()).values())
    folds = max(2, min(folds, smallest))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return np.asarray(
        cross_val_predict(
            text_classifier(seed), list(texts), y, cv=cv, method="predict_proba", n_jobs=1
        )
    )


def likely_mislabeled(labeled: pa.Table, *, folds: int = 5, seed: int = 0) -> pa.Table:
    """Posts whose label confident learning doubts, least plausible first.

    `labeled` has `post_key`, `body` and `label` (resolved labels in LABELS). Needs both
    classes with at least two posts each, as cross-validation does.
    """
    texts = labeled.column("body").to_pylist()
    labels = labeled.column("label").to_pylist()
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        raise ValueError(f"labels outside {list(LABELS)}: {unknown}")
    shortfall = minimum_per_class(Counter(labels), 2)
    if shortfall:
        raise ValueError(f"too few labels for cross-validation: {shortfall}")
    probs = out_of_fold_probabilities(texts, labels, folds=folds, seed=seed)
    y = np.asarray([LABELS.index(label) for label in labels])
    ranked = find_label_issues(
        labels=y,
        pred_probs=probs,
        filter_by="prune_by_noise_rate",
        return_indices_ranked_by="self_confidence",
        n_jobs=1,
    )
    quality = get_label_quality_scores(y, probs, method="self_confidence")
    keys = labeled.column("post_key").to_pylist()
    return pa.Table.from_pylist(
        [
            {
                "post_key": keys[i],
                "label": labels[i],
                "suggested": LABELS[int(np.argmax(probs[i]))],
                "label_quality": float(quality[i]),
            }
            for i in ranked
        ],
        schema=LABEL_ISSUES_SCHEMA,
    )


@dataclass(frozen=True)
class ClassShortfall:
    label: str
    have: int
    need: int


def minimum_per_class(
    counts: Mapping[str, int], minimum: int, labels: Sequence[str] = LABELS
) -> list[ClassShortfall]:
    """The classes with fewer than `minimum` labels (empty: enough of every class).

    Every label in `labels` is checked, so a class nobody has chosen yet shows as 0.
    """
    return [
        ClassShortfall(label=label, have=int(counts.get(label, 0)), need=minimum)
        for label in labels
        if counts.get(label, 0) < minimum
    ]
