"""Audits of gold.post_predictions (validity and drift) and the model's label-drift gate.

* `predictions_valid` (blocking): every staged row has a probability in [0, 1], the
  label that probability implies, a model version, and no post twice.
* `data_drift` (WARN by default): Evidently on a fixed-seed sample of the new batch
  against the champion's training posts: length, word count, course mix, the
  student's mean assessment score and text descriptors.
* `prediction_drift` (WARN): the distribution of p_urgent against the champion's
  scores of its own training posts.
* `estimated_performance` (WARN): F1 estimated from calibrated probabilities without
  labels (CBPE, after moving them to the batch's own urgent share by EM) must stay
  within SPANDA_MODEL_PERFORMANCE_DROP (0.10) of the same estimate on the champion's
  held-out posts.

SPANDA_DRIFT_SEVERITY=error makes the three drift audits blocking: a drifted batch is
then held on the audit branch instead of published. Each drift audit saves its
Evidently report under SPANDA_HOME/reports/drift and links it in the metadata.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np

from spanda_assets.defs.publishing import Audit, AuditFn

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from spanda_assets.lib.writes import Pending

ENV_DRIFT_SEVERITY = "SPANDA_DRIFT_SEVERITY"
ENV_PERFORMANCE_DROP = "SPANDA_MODEL_PERFORMANCE_DROP"
DEFAULT_PERFORMANCE_DROP = 0.10
MAX_ROWS = 5_000  # rows per side given to Evidently
SEED = 0
LABEL_DRIFT = "label_drift"

DRIFT_AUDITS: dict[str, tuple[str, bool]] = {
    "predictions_valid": (
        "Every staged prediction has p_urgent in [0, 1], the label it implies at the "
        "champion's decision threshold, a model version, and no post appears twice.",
        True,
    ),
    "data_drift": (
        "Evidently data drift of the new batch (fixed-seed sample of at most 5,000 posts) "
        "against the champion's training posts: length, word count, course mix, the "
        "student's mean assessment score, text descriptors. Hour and weekday are not "
        "monitored: past bronze only the year of a post's date exists (Safe Harbor).",
        False,
    ),
    "prediction_drift": (
        "Evidently drift of the new batch's p_urgent against the champion's scores of its "
        "training posts.",
        False,
    ),
    "estimated_performance": (
        "F1 estimated without labels from calibrated probabilities (confidence-based "
        "performance estimation, moved to the batch's own urgent share by EM) stays within "
        "SPANDA_MODEL_PERFORMANCE_DROP (0.10) of the same estimate on the champion's "
        "held-out posts.",
        False,
    ),
}


def drift_audit_specs() -> dict[str, tuple[str, bool]]:
    """The audits as declared: the drift audits are blocking when SPANDA_DRIFT_SEVERITY is
    error (read when the code location loads, so Dagster holds downstream runs too)."""
    blocking = severity_blocking()
    return {
        name: (description, is_blocking or (blocking and name != "predictions_valid"))
        for name, (description, is_blocking) in DRIFT_AUDITS.items()
    }


def severity_blocking() -> bool:
    """Drift audits block publication only when SPANDA_DRIFT_SEVERITY=error."""
    raw = os.environ.get(ENV_DRIFT_SEVERITY, "warn").strip().lower()
    if raw not in ("warn", "error"):
        from spanda_assets.lib.errors import ConfigError

        raise ConfigError(f"{ENV_DRIFT_SEVERITY}={raw!r}: expected warn or error")
    return raw == "error"


def report_path(name: str, run_id: str) -> Any:
    from spanda_assets import settings

    return settings.spanda_home() / "reports" / "drift" / f"{name}-{run_id[:8]}.html"


def _drift_metadata(result: Any) -> dict[str, Any]:
    md = result.metadata()
    out: dict[str, Any] = {
        "drifted": md["drifted"],
        "drift_share": round(md["drift_share"], 4),
        "drifted_columns": dg.MetadataValue.json(md["drifted_columns"]),
        "column_scores": dg.MetadataValue.json(md["columns"]),
        "methods": dg.MetadataValue.json(md["methods"]),
        "sampling": md["sampling"],
        "rows_reference": md["rows_reference"],
        "rows_current": md["rows_current"],
    }
    if md["report_path"]:
        out["report"] = dg.MetadataValue.path(md["report_path"])
    return out


def reference_frame(catalog: Catalog, champ: Any) -> tuple[Any, str]:
    """The champion's training posts (its labeled snapshot; main when expired), sampled."""
    from spanda_assets.lib.model.frame import LineageError, read_frame

    snap = champ.tags.get("spanda.labeled_snapshot_id")
    try:
        frame = read_frame(catalog, int(snap) if snap else None)
        note = f"gold.labeled_posts snapshot {frame.snapshot_id} (the champion's training data)"
    except LineageError:
        frame = read_frame(catalog)
        note = (
            f"gold.labeled_posts main snapshot {frame.snapshot_id}: the champion's own "
            "snapshot has expired"
        )
    rows = frame.table
    if rows.num_rows > MAX_ROWS:
        import pyarrow as pa

        idx = np.sort(np.random.default_rng(SEED).choice(rows.num_rows, MAX_ROWS, replace=False))
        rows = rows.take(pa.array(idx))
    return rows, note


def drift_audits(
    catalog: Catalog,
    client: Any,
    champ: Any,
    model: Any,
    run_id: str,
    blocking: bool,
    sample: Any = None,
) -> list[AuditFn]:
    """The audits of one scoring run (drift against `champ`, scored by `model`).

    `sample` is the run's own seeded sample of scored posts with their text: the drift
    audits compare it without reading gold again. Without it (the run scored nothing
    and audits rows an earlier run staged), they read the staged rows' features from
    the audit branch, and data drift goes without the text descriptors."""
    from spanda_assets.lib.model import drift
    from spanda_assets.lib.model.frame import (
        DRIFT_CATEGORICAL,
        DRIFT_NUMERIC,
        DRIFT_TEXT,
        drift_frame,
        mean_scores,
    )
    from spanda_assets.lib.model.predict import open_predictions
    from spanda_assets.lib.model.train import (
        ESTIMATED_F1_TAG,
        model_threshold,
        model_training_prior,
    )

    state: dict[str, Any] = {}
    threshold = model_threshold(champ)

    def batch() -> Any:
        if "batch" not in state:
            from spanda_assets.lib.model.predict import newest_batch

            state["batch"] = (
                sample
                if sample is not None and sample.num_rows
                else newest_batch(open_predictions(catalog), MAX_ROWS, SEED)
            )
        return state["batch"]

    def reference() -> Any:
        if "reference" not in state:
            state["reference"] = reference_frame(catalog, champ)
        return state["reference"]

    cuts: dict[str | None, float] = {str(champ.version): threshold}

    def cut_of(version: str | None) -> float:
        if version not in cuts:
            from spanda_assets.lib.model.registry import MODEL_NAME

            try:
                cuts[version] = model_threshold(client.get_model_version(MODEL_NAME, version))
            except Exception:  # a version deleted from the registry: judge at 0.5
                cuts[version] = 0.5
        return cuts[version]

    def valid(pending: Pending) -> Audit:
        import pyarrow as pa
        import pyarrow.compute as pc

        from spanda_assets.lib.incremental import read_files
        from spanda_assets.lib.writes import unpublished_files

        files = unpublished_files(pending.view, pending.after_sequence)
        bad: dict[str, int] = {"p_out_of_range": 0, "label_mismatch": 0, "no_model_version": 0}
        keys: list[str] = []
        rows = 0
        for b in read_files(
            pending.view, files, 50_000, ("post_key", "p_urgent", "label", "model_version")
        ):
            rows += b.num_rows
            p = b.column("p_urgent")
            bad["p_out_of_range"] += int(
                pc.sum(
                    pc.fill_null(
                        pc.invert(pc.and_(pc.greater_equal(p, 0.0), pc.less_equal(p, 1.0))), True
                    )
                ).as_py()
                or 0
            )
            # each row at the threshold of the version that scored it (rows an earlier
            # champion staged may still wait on the branch)
            versions = b.column("model_version").to_pylist()
            cuts = pa.array([cut_of(v) for v in versions], pa.float64())
            implied = pc.if_else(pc.greater_equal(p, cuts), "urgent", "not_urgent")
            bad["label_mismatch"] += int(
                pc.sum(pc.fill_null(pc.not_equal(implied, b.column("label")), True)).as_py() or 0
            )
            bad["no_model_version"] += int(
                pc.sum(pc.is_null(b.column("model_version"))).as_py() or 0
            )
            keys.extend(b.column("post_key").to_pylist())
        dup = len(keys) - len(set(keys))
        return Audit(
            "predictions_valid",
            passed=not any(bad.values()) and dup == 0,
            metadata={"rows_checked": rows, **bad, "posts_twice": dup},
            failing={**{k: v for k, v in bad.items() if v}, "posts_twice": dup},
        )

    def _none(name: str) -> Audit:
        return Audit(
            name,
            passed=True,
            blocking=blocking,
            metadata={"note": "no new posts in this run: nothing to compare"},
        )

    def data(pending: Pending) -> Audit:
        current = batch()
        if current.num_rows == 0:
            return _none("data_drift")
        ref_rows, note = reference()
        with_text = "body" in current.column_names
        subjects = [
            s for s in ref_rows["subject_id"].to_pylist() + current["subject_id"].to_pylist() if s
        ]
        scores = mean_scores(catalog, subjects)
        result = drift.data_drift(
            drift_frame(ref_rows, scores, with_text),
            drift_frame(current, scores, with_text),
            numerical=DRIFT_NUMERIC,
            categorical=DRIFT_CATEGORICAL,
            text=DRIFT_TEXT if with_text else (),
            report_path=report_path("data_drift", run_id),
            max_rows=MAX_ROWS,
            seed=SEED,
        )
        md = {**_drift_metadata(result), "reference": note}
        return Audit(
            "data_drift",
            not result.drifted,
            md,
            blocking,
            {"drifted_columns": result.drifted_columns},
        )

    def prediction(pending: Pending) -> Audit:
        current = batch()
        if current.num_rows == 0:
            return _none("prediction_drift")
        import pandas as pd

        ref_rows, note = reference()
        out = model.predict(pd.DataFrame({"body": ref_rows["body"].to_pylist()}))
        ref_p = np.asarray(out["p_urgent"], dtype=float)
        state["reference_p"] = ref_p
        result = drift.prediction_drift(
            ref_p,
            current["p_urgent"].to_numpy(),
            report_path=report_path("prediction_drift", run_id),
            max_rows=MAX_ROWS,
            seed=SEED,
        )
        md = {
            **_drift_metadata(result),
            "reference": note,
            "urgent_rate_reference": round(float((ref_p >= threshold).mean()), 4),
            "urgent_rate_current": round(
                float((current["p_urgent"].to_numpy() >= threshold).mean()), 4
            ),
        }
        return Audit(
            "prediction_drift", not result.drifted, md, blocking, {"drift_share": md["drift_share"]}
        )

    def performance(pending: Pending) -> Audit:
        current = batch()
        if current.num_rows == 0:
            return _none("estimated_performance")
        prior = model_training_prior(champ)
        est = drift.estimate_performance(current["p_urgent"].to_numpy(), threshold, prior)
        heldout = float(champ.tags.get("spanda.f1") or "nan")
        # Like with like: the same estimator on the champion's held-out posts, so its
        # own bias cancels (a version without that figure is compared with its F1).
        baseline = float(champ.tags.get(ESTIMATED_F1_TAG) or heldout)
        drop_limit = float(os.environ.get(ENV_PERFORMANCE_DROP) or DEFAULT_PERFORMANCE_DROP)
        drop = baseline - est["f1"] if np.isfinite(baseline) else 0.0
        md = {
            **{f"estimated_{k}": round(v, 4) for k, v in est.items() if k != "rows"},
            "rows": int(est["rows"]),
            "champion_heldout_f1": round(heldout, 4) if np.isfinite(heldout) else None,
            "champion_heldout_estimated_f1": round(baseline, 4) if np.isfinite(baseline) else None,
            "estimated_drop": round(drop, 4),
            "max_drop": drop_limit,
            "method": "confidence-based performance estimation from calibrated p_urgent"
            + (
                f", moved from the training share of urgent posts ({prior:.3f}) to the "
                "batch's own share estimated by EM"
                if prior is not None
                else " (the champion records no training share: no prior adjustment)"
            ),
            "training_urgent_share": round(prior, 4) if prior is not None else None,
            "decision_threshold": threshold,
        }
        return Audit(
            "estimated_performance",
            drop <= drop_limit,
            md,
            blocking,
            {"estimated_drop": round(drop, 4)},
        )

    return [valid, data, prediction, performance]


def label_drift_gate(catalog: Catalog, client: Any, result: Any, run_id: str) -> Audit:
    """Label mix of this frame against the champion's frame (before this run's promotion)."""
    from spanda_assets.lib.model import drift
    from spanda_assets.lib.model.frame import LineageError, read_frame

    before = result.champion_before
    if before is None:
        return Audit(LABEL_DRIFT, True, {"note": "no earlier champion: nothing to compare"}, False)
    from spanda_assets.lib.model.registry import MODEL_NAME

    mv = client.get_model_version(MODEL_NAME, before)
    snap = mv.tags.get("spanda.labeled_snapshot_id")
    try:
        ref = read_frame(catalog, int(snap)) if snap else None
    except LineageError:
        ref = None
    if ref is None:
        return Audit(
            LABEL_DRIFT, True, {"note": f"the labeled snapshot of v{before} has expired"}, False
        )
    out = drift.label_drift(
        ref.table["label"].to_pylist(),
        result.frame.table["label"].to_pylist(),
        report_path=report_path(LABEL_DRIFT, run_id),
        max_rows=MAX_ROWS,
        seed=SEED,
    )
    md = {**_drift_metadata(out), "reference": f"v{before}'s training labels (snapshot {snap})"}
    return Audit(LABEL_DRIFT, not out.drifted, md, False, {"drift_share": md["drift_share"]})
