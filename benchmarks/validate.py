"""Validation cost, in one run: the gold contracts (Pandera + Great Expectations) beside
the extract of the same rows, on a full load and on an increment, and `spanda validate`
on a OneRoster submission with 1M enrollments.

    python benchmarks/validate.py [--rows 1000000] [--new-rows 10000]

The reference ("peer") for the contracts is Spanda's own bronze extract of the
same posts from SQLite (benchmarks/ingest.py's cached database): the issue's
target is that validation adds at most 1.5x the extract time. Each measurement
runs in its own process (peak RSS is its own). Fixed costs per process (imports
of GX and Pandera, their first call) are printed apart: they do not grow with
rows. In a Dagster run the Pandera check and the GX check are separate steps
and run side by side on two cores; the total below is their serial sum.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_extract(rows: int, new_rows: int, work: Path) -> dict[str, float]:
    import ingest

    db = ingest.ensure_source(rows)
    result, seconds = ingest._spanda_extract(db, work)
    increment = ingest.child_spanda_incremental(db, work, new_rows)
    return {
        "seconds": seconds,
        "rows": result.rows_inserted,  # type: ignore[attr-defined]
        "increment_seconds": increment["seconds"],
        "increment_rows": increment["rows"],
    }


def _gold_posts(batch: Any, year: int = 2026) -> Any:
    """ForumPosts rows shaped like gold.validated_posts (pseudonym-like keys)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    def pseudonym(ids: Any) -> Any:
        return pc.binary_join_element_wise(
            "ps_", pc.utf8_lpad(pc.cast(ids, pa.string()), 32, "0"), ""
        )

    return pa.table(
        {
            "post_id": pseudonym(batch["PostID"]),
            "subject_id": pseudonym(batch["StudentID"]),
            "course_id": batch["CourseID"],
            "body": batch["Body"],
            "created_at_year": pa.array([year] * batch.num_rows, pa.int32()),
            # stored by gold's publish step (GoldSpec.derived), computed here the same way
            "body_length": pc.cast(pc.utf8_length(batch["Body"]), pa.int32()),
        }
    )


def _validate(table: Any, work: Path, after: int = 0) -> dict[str, float]:
    """Pandera, then GX gates + soft signals, as the asset checks run them."""
    from spanda_assets.lib.validation.contracts import gx_frame, load_suite, run_gx, run_pandera

    courses = list(range(1, 401))
    start = time.perf_counter()
    pandera = run_pandera("validated_posts", table, {"course_id": courses}, "post_id", after)
    t_pandera = time.perf_counter() - start
    start = time.perf_counter()
    frame = gx_frame(table, load_suite("validated_posts")["columns"], after)
    results = run_gx("validated_posts", frame, work / "gx", "post_id")
    t_gx = time.perf_counter() - start
    passed = pandera.passed and all(r.passed for r in results.values())
    return {
        "pandera": t_pandera,
        "gx": t_gx,
        "total": t_pandera + t_gx,
        "rows": float(pandera.rows),
        "passed": float(passed),
    }


def child_contracts(rows: int, new_rows: int, work: Path) -> dict[str, float]:
    """gold.validated_posts of `rows` rows: contracts on all of it, then on `new_rows` more."""
    import connectorx as cx
    import ingest

    from spanda_assets.lib.lakehouse import CatalogConfig, ensure_namespace, open_catalog

    db = ingest.ensure_source(rows)
    catalog = open_catalog(
        CatalogConfig(uri=f"sqlite:///{work / 'cat.db'}", warehouse=(work / "wh").as_uri())
    )
    ensure_namespace(catalog, "gold")
    reader = cx.read_sql(
        f"sqlite://{db}",
        'SELECT PostID, StudentID, CourseID, Body FROM "ForumPosts"',
        return_type="arrow_stream",
        batch_size=250_000,
    )
    table = None
    for b in reader:
        t = _gold_posts(b)
        if table is None:
            table = catalog.create_table(("gold", "validated_posts"), schema=t.schema)
        table.append(t)
    assert table is not None

    # Fixed cost per process: imports, then a first call on a 1,000-row table.
    start = time.perf_counter()
    import great_expectations  # noqa: F401
    import pandera.pandas  # noqa: F401

    t_import = time.perf_counter() - start
    warm = catalog.create_table(("gold", "warm_up"), schema=table.schema().as_arrow())
    warm.append(table.scan(limit=1000).to_arrow())
    start = time.perf_counter()
    _validate(warm, work)  # also creates the GX project and its Data Docs site, once
    t_first = time.perf_counter() - start

    full = _validate(table, work)

    # The increment: `new_rows` more posts in a new data file; the checks start after
    # the sequence number they last passed at.
    snap = table.current_snapshot()
    assert snap is not None and snap.sequence_number is not None
    passed_at = snap.sequence_number
    extra = cx.read_sql(
        f"sqlite://{db}",
        f'SELECT PostID + {rows} AS PostID, StudentID, CourseID, Body FROM "ForumPosts" '
        f"LIMIT {new_rows}",
        return_type="arrow",
    )
    extra = _gold_posts(extra)
    table.append(extra.cast(table.schema().as_arrow()))
    increment = _validate(table, work, after=passed_at)
    return {
        "import_seconds": t_import,
        "first_call_seconds": t_first,
        **{f"full_{k}": v for k, v in full.items()},
        **{f"increment_{k}": v for k, v in increment.items()},
    }


# Silver's writer commits its rows with its run position; gold reads only a silver table
# that has published a run.
SILVER_RUN = {"spanda.bronze-sequence": "1"}


def child_gold(rows: int, new_rows: int, work: Path) -> dict[str, float]:
    """silver.forum_posts -> gold.validated_posts (rules, quarantine, consent), full then
    incremental: the publish step that runs before the contracts."""
    import connectorx as cx
    import ingest
    import pyarrow as pa
    import pyarrow.compute as pc

    from spanda_assets.lib.lakehouse import CatalogConfig, ensure_namespace, open_catalog
    from spanda_assets.lib.validation.gold import SPECS
    from spanda_assets.lib.validation.publish import GoldConsent, stage_gold
    from spanda_assets.lib.writes import publish

    def publish_gold(*args: Any, **kwargs: Any) -> Any:
        """One gold run whose audit passed: staged, then published."""
        result = stage_gold(*args, **kwargs)
        publish(catalog.load_table(("gold", "validated_posts")))
        return result

    db = ingest.ensure_source(rows)
    catalog = open_catalog(
        CatalogConfig(uri=f"sqlite:///{work / 'cat.db'}", warehouse=(work / "wh").as_uri())
    )
    ensure_namespace(catalog, "silver")
    query = 'SELECT PostID, StudentID, CourseID, Body FROM "ForumPosts"'
    silver = None
    subjects: set[str] = set()
    courses: set[int] = set()
    for b in cx.read_sql(f"sqlite://{db}", query, return_type="arrow_stream", batch_size=250_000):
        t = _gold_posts(b).drop_columns(["body_length"])
        subjects.update(pc.unique(t["subject_id"]).to_pylist())
        courses.update(pc.unique(t["course_id"]).to_pylist())
        if silver is None:
            silver = catalog.create_table(("silver", "forum_posts"), schema=t.schema)
        silver.append(t, snapshot_properties=SILVER_RUN)
    assert silver is not None
    catalog.create_table(
        ("silver", "courses"), schema=pa.schema([pa.field("course_id", pa.int64())])
    ).append(pa.table({"course_id": pa.array(sorted(courses), pa.int64())}))
    catalog.create_table(
        ("silver", "students"), schema=pa.schema([pa.field("subject_id", pa.large_string())])
    ).append(pa.table({"subject_id": pa.array(sorted(subjects), pa.large_string())}))
    # Every subject consented; no consent change between the runs.
    consent = GoldConsent(active=subjects, watermark=0, changed_since=lambda _: set())
    spec = SPECS["validated_posts"]

    start = time.perf_counter()
    full = publish_gold(catalog, spec, consent, upsert=False)
    t_full = time.perf_counter() - start

    extra = cx.read_sql(
        f"sqlite://{db}",
        f'SELECT PostID + {rows} AS PostID, StudentID, CourseID, Body FROM "ForumPosts" '
        f"LIMIT {new_rows}",
        return_type="arrow",
    )
    silver.append(
        _gold_posts(extra).drop_columns(["body_length"]).cast(silver.schema().as_arrow()),
        snapshot_properties=SILVER_RUN,
    )
    start = time.perf_counter()
    inc = publish_gold(catalog, spec, consent, upsert=False)
    t_inc = time.perf_counter() - start
    return {
        "full_seconds": t_full,
        "full_rows": full.rows_read,
        "increment_seconds": t_inc,
        "increment_rows": inc.rows_read,
        "incremental": float(not inc.full_rebuild),
        "total_rows": inc.total_rows,
    }


def child_validator(rows: int, new_rows: int, work: Path) -> dict[str, float]:
    from spanda_assets.lib.submissions.sample import write_oneroster
    from spanda_assets.lib.submissions.validate import validate

    root = write_oneroster(
        work / "submission", users=max(100, rows // 50), enrollments=rows, classes=500
    )
    start = time.perf_counter()
    report = validate(root)
    return {
        "seconds": time.perf_counter() - start,
        "rows": report.rows_checked,
        "passed": float(report.valid),
    }


CHILDREN = {
    "extract": child_extract,
    "gold": child_gold,
    "contracts": child_contracts,
    "validator": child_validator,
}


def run(name: str, rows: int, new_rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"spanda-{name}-") as work:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                name,
                "--rows",
                str(rows),
                "--new-rows",
                str(new_rows),
                "--work",
                work,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "GX_ANALYTICS_ENABLED": "false"},
        )
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--new-rows", type=int, default=10_000)
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        out = CHILDREN[args.child](args.rows, args.new_rows, args.work)
        out["peak_rss_mb"] = _rss()
        print(json.dumps(out))
        return
    print(f"rows: {args.rows:,}, increment: {args.new_rows:,} (2 cores)\n")
    ex = run("extract", args.rows, args.new_rows)
    g = run("gold", args.rows, args.new_rows)
    c = run("contracts", args.rows, args.new_rows)
    validator = run("validator", args.rows, args.new_rows)

    print(f"{'':<34}{'full load':>14}{'increment':>14}")
    print(f"{'rows':<34}{args.rows:>14,}{int(c['increment_rows']):>14,}")
    table = [
        ("bronze extract (the reference)", ex["seconds"], ex["increment_seconds"]),
        ("gold publish: rules, quarantine", g["full_seconds"], g["increment_seconds"]),
        ("contracts: Pandera", c["full_pandera"], c["increment_pandera"]),
        ("contracts: GX gates + soft", c["full_gx"], c["increment_gx"]),
        ("contracts: total", c["full_total"], c["increment_total"]),
    ]
    for label, full, inc in table:
        print(f"{label + ' (s)':<34}{full:>14.2f}{inc:>14.2f}")
    full_ratio = c["full_total"] / ex["seconds"]
    inc_ratio = c["increment_total"] / ex["increment_seconds"]
    print(f"{'validation / extract':<34}{full_ratio:>13.2f}x{inc_ratio:>13.2f}x   (target <= 1.5x)")
    assert g["incremental"] and g["increment_rows"] == c["increment_rows"]
    print(
        f"gold publish read {int(g['increment_rows']):,} silver rows for the increment "
        f"(table: {int(g['total_rows']):,}), peak RSS {g['peak_rss_mb']:,.0f} MB"
    )
    print(
        f"\nfixed per process, not per row: imports {c['import_seconds']:.2f} s, first call on "
        f"1,000 rows {c['first_call_seconds']:.2f} s"
    )
    print(
        f"peak RSS: extract {ex['peak_rss_mb']:,.0f} MB, contracts {c['peak_rss_mb']:,.0f} MB; "
        f"contracts passed: {bool(c['full_passed'] and c['increment_passed'])}"
    )
    n = int(validator["rows"])
    print(
        f"\nspanda validate, OneRoster with {n:,} rows: {validator['seconds']:.1f} s, "
        f"peak RSS {validator['peak_rss_mb']:,.0f} MB (target < 30 s, bounded memory)"
    )


if __name__ == "__main__":
    main()
