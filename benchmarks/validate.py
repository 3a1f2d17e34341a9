"""Validation cost, in one run: gold contracts on 1M posts beside the extract of the same
rows, and `spanda validate` on a OneRoster submission with 1M enrollments.

    python benchmarks/validate.py [--rows 1000000]

Each measurement runs in its own process (peak RSS is its own). The extract
figure is Spanda's bronze extract of the same 1M ForumPosts from SQLite
(benchmarks/ingest.py's cached database).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_extract(rows: int, work: Path) -> dict[str, float]:
    import ingest

    db = ingest.ensure_source(rows)
    result, seconds = ingest._spanda_extract(db, work)
    return {"seconds": seconds, "rows": result.rows_inserted}  # type: ignore[attr-defined]


def child_contracts(rows: int, work: Path) -> dict[str, float]:
    """gold.validated_posts of `rows` rows, then Pandera + GX gates + GX soft signals."""
    import ingest
    import pyarrow as pa
    import pyarrow.compute as pc

    from spanda_assets.lib.lakehouse import CatalogConfig, ensure_namespace, open_catalog
    from spanda_assets.lib.validation.contracts import gx_frame, load_suite, run_gx, run_pandera

    db = ingest.ensure_source(rows)
    catalog = open_catalog(
        CatalogConfig(uri=f"sqlite:///{work / 'cat.db'}", warehouse=(work / "wh").as_uri())
    )
    ensure_namespace(catalog, "gold")
    import connectorx as cx

    reader = cx.read_sql(
        f"sqlite://{db}",
        'SELECT PostID, StudentID, CourseID, Body FROM "ForumPosts"',
        return_type="arrow_stream",
        batch_size=250_000,
    )
    table = None
    for b in reader:
        n = b.num_rows
        t = pa.table(
            {
                "post_id": pc.binary_join_element_wise(
                    "ps_", pc.utf8_lpad(pc.cast(b["PostID"], pa.string()), 32, "0"), ""
                ),
                "subject_id": pc.binary_join_element_wise(
                    "ps_", pc.utf8_lpad(pc.cast(b["StudentID"], pa.string()), 32, "0"), ""
                ),
                "course_id": b["CourseID"],
                "body": b["Body"],
                "created_at_year": pa.array([2026] * n, pa.int32()),
            }
        )
        if table is None:
            table = catalog.create_table(("gold", "validated_posts"), schema=t.schema)
        table.append(t)
    assert table is not None
    courses = list(range(1, 401))
    # One-time imports (seconds for GX) are reported apart: they are per process, not per row.
    start = time.perf_counter()
    import great_expectations  # noqa: F401
    import pandera.pandas

    t_import = time.perf_counter() - start
    start = time.perf_counter()
    pandera = run_pandera("validated_posts", table, {"course_id": courses}, "post_id")
    t_pandera = time.perf_counter() - start
    suite = load_suite("validated_posts")
    start = time.perf_counter()
    frame = gx_frame(table, suite["columns"])
    results = run_gx("validated_posts", frame, work / "gx", "post_id")
    gates, soft = results["gate"], results["soft"]
    t_gx = time.perf_counter() - start
    return {
        "seconds": t_pandera + t_gx,
        "pandera_seconds": t_pandera,
        "gx_seconds": t_gx,
        "import_seconds": t_import,
        "rows": pandera.rows,
        "passed": float(pandera.passed and gates.passed and soft.passed),
    }


def child_validator(rows: int, work: Path) -> dict[str, float]:
    from spanda_assets.lib.submissions.sample import write_oneroster
    from spanda_assets.lib.submissions.validator import validate

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


CHILDREN = {"extract": child_extract, "contracts": child_contracts, "validator": child_validator}


def run(name: str, rows: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"spanda-{name}-") as work:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", name, "--rows", str(rows), "--work", work],
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
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.child:
        out = CHILDREN[args.child](args.rows, args.work)
        out["peak_rss_mb"] = _rss()
        print(json.dumps(out))
        return
    print(f"rows: {args.rows:,} (2 cores)\n")
    extract = run("extract", args.rows)
    contracts = run("contracts", args.rows)
    validator = run("validator", args.rows)
    rows = [
        ("bronze extract of the posts (reference)", extract["seconds"], extract["peak_rss_mb"]),
        ("gold contracts: Pandera", contracts["pandera_seconds"], None),
        ("gold contracts: GX gates + soft signals", contracts["gx_seconds"], None),
        ("gold contracts: total", contracts["seconds"], contracts["peak_rss_mb"]),
        ("(one-time import of GX and Pandera)", contracts["import_seconds"], None),
    ]
    print(f"{'step':<44}{'seconds':>9}{'peak RSS MB':>13}")
    for label, seconds, rss in rows:
        print(f"{label:<44}{seconds:>9.2f}" + (f"{rss:>13,.0f}" if rss else ""))
    ratio = contracts["seconds"] / extract["seconds"]
    passed = bool(contracts["passed"])
    print(f"\nvalidation / extract time: {ratio:.2f}x (target <= 1.5x); contracts passed: {passed}")
    n = int(validator["rows"])
    print(
        f"spanda validate, OneRoster with {n:,} rows: {validator['seconds']:.1f} s, "
        f"peak RSS {validator['peak_rss_mb']:,.0f} MB (target < 30 s, bounded memory)"
    )


if __name__ == "__main__":
    main()
