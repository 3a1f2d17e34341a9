"""Label-quality audits of gold.labeled_posts, run on the staged rows before publication.

* `split_disjoint` (blocking): no student's posts on both sides of the train/test
  split, and no post twice. The split is a function of the student pseudonym, so
  this holds by construction; the audit proves it on the data.
* `minimum_labels_per_class` (WARN here): a class with fewer labels than
  SPANDA_MIN_LABELS_PER_CLASS is published but marked; training refuses it.
* `annotator_agreement` (WARN): Krippendorff's alpha (nominal) on the posts two or
  more annotators labeled in this run, with Cohen's and Fleiss' kappa beside it.
* `likely_mislabeled` (WARN): confident learning (cleanlab, out-of-fold TF-IDF +
  logistic regression) over the whole labeled set; the flagged post keys are listed
  for a second look. Keys only: no text leaves the table through metadata.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import dagster as dg

from spanda_assets.defs.publishing import Audit, AuditFn
from spanda_assets.settings import (
    DEFAULT_MIN_LABELS_PER_CLASS,
    ENV_MIN_LABELS_PER_CLASS,
    min_labels_per_class,
)

if TYPE_CHECKING:
    from spanda_assets.lib.labeling.labeled import LabeledResult
    from spanda_assets.lib.writes import Pending

ALPHA_FLOOR = 0.6
MIN_OVERLAP = 20  # posts annotated by two or more people before agreement is judged
MIN_PER_CLASS_FOR_CLEANLAB = 50  # below it, the out-of-fold model is too weak to accuse
MISLABELED_CEILING = 0.05  # share of flagged labels above which the audit warns
FLAGGED_SHOWN = 50

AUDIT_DESCRIPTIONS: dict[str, tuple[str, bool]] = {
    "split_disjoint": (
        "No student's posts in both the train and the test split, and no post twice: the "
        "held-out set never contains a student the model trained on.",
        True,
    ),
    "minimum_labels_per_class": (
        f"Every label has at least {ENV_MIN_LABELS_PER_CLASS} "
        f"(default {DEFAULT_MIN_LABELS_PER_CLASS}) "
        "resolved posts. Published either way; training refuses a set that fails it.",
        False,
    ),
    "annotator_agreement": (
        f"Krippendorff's alpha (nominal) on this run's overlap sample is at least "
        f"{ALPHA_FLOOR}; Cohen's and Fleiss' kappa are shown beside it.",
        False,
    ),
    "likely_mislabeled": (
        "Confident learning (cleanlab) on out-of-fold predictions flags at most "
        f"{MISLABELED_CEILING:.0%} of labels as likely wrong; the flagged post keys are "
        "listed for review.",
        False,
    ),
}


def _rows(pending: Pending, columns: tuple[str, ...]) -> Any:
    if pending.view.current_snapshot() is None:
        import pyarrow as pa

        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pending.view.scan(selected_fields=columns).to_arrow()


def label_audits(result: LabeledResult) -> list[AuditFn]:
    """The audits of one run: `result` carries this run's annotations for agreement."""

    def split_disjoint(pending: Pending) -> Audit:
        rows = _rows(pending, ("post_key", "subject_id", "split"))
        keys = rows.column("post_key").to_pylist()
        splits: dict[str, set[str]] = {}
        for subject, split in zip(
            rows.column("subject_id").to_pylist(), rows.column("split").to_pylist(), strict=True
        ):
            splits.setdefault(subject or "", set()).add(split)
        straddling = sorted(s for s, sides in splits.items() if len(sides) > 1)
        duplicated = sorted(k for k, n in Counter(keys).items() if n > 1)
        by_split = Counter(rows.column("split").to_pylist())
        return Audit(
            "split_disjoint",
            passed=not straddling and not duplicated,
            metadata={
                "train_posts": by_split.get("train", 0),
                "test_posts": by_split.get("test", 0),
                "students": len(splits),
                "students_in_both_splits": len(straddling),
                "duplicated_posts": len(duplicated),
            },
            failing={"students_in_both_splits": straddling[:20], "duplicated": duplicated[:20]},
        )

    def minimum_labels(pending: Pending) -> Audit:
        from spanda_assets.lib.labeling.quality import minimum_per_class

        rows = _rows(pending, ("label",))
        counts = Counter(rows.column("label").to_pylist())
        need = min_labels_per_class()
        short = minimum_per_class(counts, need)
        return Audit(
            "minimum_labels_per_class",
            passed=not short,
            blocking=False,
            metadata={"by_label": dict(counts), "minimum": need},
            failing={s.label: {"have": s.have, "need": s.need} for s in short},
        )

    def agreement(pending: Pending) -> Audit:
        from spanda_assets.lib.labeling.agreement import agreement as figures

        annotations = result.annotations
        if annotations is None or annotations.num_rows == 0:
            return Audit(
                "annotator_agreement",
                passed=True,
                blocking=False,
                metadata={"overlap_posts": 0, "note": "no annotations changed in this run"},
            )
        got = figures(annotations)
        alpha = got.get("krippendorff_alpha")
        by_post: dict[str, list[str]] = {}
        for r in annotations.select(["post_key", "label"]).to_pylist():
            if r["label"] is not None:
                by_post.setdefault(r["post_key"], []).append(r["label"])
        overlap_labels = {
            label for labels in by_post.values() if len(labels) > 1 for label in labels
        }
        if got.get("overlap_posts", 0) < MIN_OVERLAP or len(overlap_labels) < 2:
            # Too few posts seen twice, or one label only: chance agreement is undefined
            # and alpha says nothing (the kappa paradox); reported, not judged.
            return Audit(
                "annotator_agreement",
                passed=True,
                blocking=False,
                metadata={
                    **{k: v for k, v in got.items() if not isinstance(v, list | dict)},
                    "note": f"fewer than {MIN_OVERLAP} posts annotated twice, or one label only",
                },
            )
        md = {
            k: dg.MetadataValue.json(v) if isinstance(v, list | dict) else v for k, v in got.items()
        }
        return Audit(
            "annotator_agreement",
            passed=alpha is None or alpha >= ALPHA_FLOOR,
            blocking=False,
            metadata={**md, "alpha_floor": ALPHA_FLOOR},
            failing={"krippendorff_alpha": alpha, "alpha_floor": ALPHA_FLOOR},
        )

    def mislabeled(pending: Pending) -> Audit:
        from spanda_assets.lib.labeling.quality import (
            LABEL_ISSUES_SCHEMA,
            likely_mislabeled,
            minimum_per_class,
        )

        rows = _rows(pending, ("post_key", "body", "label"))
        counts = Counter(rows.column("label").to_pylist())
        if minimum_per_class(counts, MIN_PER_CLASS_FOR_CLEANLAB):
            result.flagged = LABEL_ISSUES_SCHEMA.empty_table()
            return Audit(
                "likely_mislabeled",
                passed=True,
                blocking=False,
                metadata={
                    "labels": rows.num_rows,
                    "note": f"fewer than {MIN_PER_CLASS_FOR_CLEANLAB} labels of a class: the "
                    "cross-validated model is too weak to judge labels",
                },
            )
        flagged = likely_mislabeled(rows)
        result.flagged = flagged
        share = flagged.num_rows / max(rows.num_rows, 1)
        keys = flagged.column("post_key").to_pylist()[:FLAGGED_SHOWN]
        return Audit(
            "likely_mislabeled",
            passed=share <= MISLABELED_CEILING,
            blocking=False,
            metadata={
                "labels": rows.num_rows,
                "flagged": flagged.num_rows,
                "flagged_share": round(share, 4),
                "review_queue": dg.MetadataValue.json(keys),
            },
            failing={"flagged": flagged.num_rows, "flagged_share": round(share, 4)},
        )

    return [split_disjoint, minimum_labels, agreement, mislabeled]
