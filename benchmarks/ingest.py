"""Ingestion benchmark: SQLite ForumPosts -> Iceberg, Spanda beside its peers, in one run.

    python benchmarks/ingest.py                 # 1M posts (seeded once, cached)
    python benchmarks/ingest.py --posts 5000000 --only spanda   # memory at 5M

Each contender runs in its own child process so that its peak RSS is its own:

  spanda       Spanda's incremental extract into bronze.forum_posts (full load)
  raw          the raw limit: connectorx -> Arrow stream -> one Parquet file
  dlt          dlt's sql_table (pyarrow backend) -> filesystem destination as Iceberg

Then the incremental case: 1,000 new posts on top of the loaded table, timed
as extract work (query, dedupe at the watermark, write, commit), and the time
it takes to load the Dagster definitions. Figures print side by side; nothing
is asserted (the targets are in the issue; the tests check correctness).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("SPANDA_BENCH_DIR", tempfile.gettempdir())) / "spanda-bench"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count(db: Path) -> int:
    con = sqlite3.connect(db)
    try:
        return int(con.execute('SELECT COUNT(*) FROM "ForumPosts"').fetchone()[0])
    finally:
        con.close()


# ----------------------------------------------------------------------------- children


def _warm_imports() -> None:
    """Import what the timed extract imports lazily, as the raw and dlt children do up front.

    Import time (about a second, once per process) is not per-row cost; the
    Dagster definitions load is measured separately below.
    """
    import connectorx  # noqa: F401
    import pyiceberg.io.pyarrow
    import pyiceberg.table  # noqa: F401


def _spanda_extract(db: Path, work: Path) -> tuple[object, float]:
    """One extract of forum_posts from `db` into the catalog under `work`, timed."""
    _warm_imports()
    from spanda_assets.lib.extract import extract_table
    from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
    from spanda_assets.lib.readers import make_reader
    from spanda_assets.lib.source_db import make_engine
    from spanda_assets.lib.sources import load_sources
    from spanda_assets.settings import DEFAULT_BATCH_ROWS, DEFAULT_COMMIT_ROWS

    url = f"sqlite:///{db}"
    catalog = open_catalog(
        CatalogConfig(uri=f"sqlite:///{work / 'catalog.db'}", warehouse=(work / "wh").as_uri())
    )
    source = next(s for s in load_sources() if s.name == "forum_posts")
    engine = make_engine(url)
    start = time.perf_counter()
    result = extract_table(
        engine=engine,
        reader=make_reader("auto", url, engine),
        catalog=catalog,
        source=source,
        batch_rows=DEFAULT_BATCH_ROWS,
        commit_rows=DEFAULT_COMMIT_ROWS,
    )
    return result, time.perf_counter() - start


def child_spanda(db: Path, work: Path) -> dict[str, float]:
    result, seconds = _spanda_extract(db, work)
    return {"rows": result.rows_inserted, "seconds": seconds, "extract_seconds": result.seconds}  # type: ignore[attr-defined]


def child_spanda_incremental(db: Path, work: Path, new_rows: int = 1000) -> dict[str, float]:
    """`new_rows` new posts after a full load: cost of the increment alone."""
    con = sqlite3.connect(db)
    top = int(con.execute('SELECT MAX(PostID) FROM "ForumPosts"').fetchone()[0])
    con.executemany(
        'INSERT INTO "ForumPosts" VALUES (?, ?, ?, ?, ?)',
        [
            (
                top + i,
                1 + i % 100,
                1 + i % 10,
                f"new post {i} about recursion",
                "2027-01-01 00:00:00.000000",
            )
            for i in range(1, new_rows + 1)
        ],
    )
    con.commit()
    con.close()
    try:
        result, seconds = _spanda_extract(db, work)
    finally:
        con = sqlite3.connect(db)
        con.execute('DELETE FROM "ForumPosts" WHERE PostID > ?', (top,))
        con.commit()
        con.close()
    return {
        "rows": result.rows_inserted,  # type: ignore[attr-defined]
        "seconds": seconds,
        "extract_seconds": result.seconds,  # type: ignore[attr-defined]
        "table_rows": result.total_rows,  # type: ignore[attr-defined]
    }


def child_raw(db: Path, work: Path) -> dict[str, float]:
    import connectorx as cx
    import pyarrow.parquet as pq

    start = time.perf_counter()
    reader = cx.read_sql(
        f"sqlite://{db}",
        'SELECT * FROM "ForumPosts"',
        return_type="arrow_stream",
        batch_size=100_000,
    )
    rows = 0
    with pq.ParquetWriter(work / "raw.parquet", reader.schema, compression="zstd") as out:
        for batch in reader:
            out.write_batch(batch)
            rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - start}


def child_dlt(db: Path, work: Path) -> dict[str, float]:
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["DLT_DATA_DIR"] = str(work / "dlt-data")
    os.environ["DLT_PROJECT_DIR"] = str(work)
    import dlt
    from dlt.sources.sql_database import sql_table

    start = time.perf_counter()
    pipeline = dlt.pipeline(
        pipeline_name="bench",
        pipelines_dir=str(work / "dlt-pipelines"),
        destination=dlt.destinations.filesystem(bucket_url=(work / "dlt-lake").as_uri()),
        dataset_name="bronze",
    )
    resource_ = sql_table(
        credentials=f"sqlite:///{db}", table="ForumPosts", backend="pyarrow", chunk_size=100_000
    )
    info = pipeline.run(resource_, table_format="iceberg")
    seconds = time.perf_counter() - start
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("forum_posts", 0)
    del info
    return {"rows": rows, "seconds": seconds}


def child_defs_load(db: Path, work: Path) -> dict[str, float]:
    start = time.perf_counter()
    from spanda_assets.definitions import defs

    defs()
    return {"rows": 0, "seconds": time.perf_counter() - start}


CHILDREN = {
    "spanda": child_spanda,
    "spanda_incremental": child_spanda_incremental,
    "raw": child_raw,
    "dlt": child_dlt,
    "defs_load": child_defs_load,
}


# ----------------------------------------------------------------------------- parent


def ensure_source(posts: int) -> Path:
    db = CACHE / f"posts-{posts}.db"
    if db.exists() and _count(db) == posts:
        return db
    from spanda_assets.lib.seed import SeedSizes, seed

    CACHE.mkdir(parents=True, exist_ok=True)
    if db.exists():
        db.unlink()
    print(f"seeding {posts:,} posts into {db} (once; cached for later runs) ...", flush=True)
    start = time.perf_counter()
    seed(
        f"sqlite:///{db}",
        SeedSizes(students=max(200, posts // 50), courses=400, posts=posts, results=1),
        ground_truth=CACHE / f"gt-{posts}",
    )
    print(f"  seeded in {time.perf_counter() - start:.0f}s", flush=True)
    return db


def run_child(name: str, db: Path, work: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", name, "--db", str(db), "--work", str(work)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--only", choices=sorted(CHILDREN), action="append")
    parser.add_argument("--child", choices=sorted(CHILDREN))
    parser.add_argument("--db", type=Path)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()

    if args.child:
        out = CHILDREN[args.child](args.db, args.work)
        out["peak_rss_mb"] = _peak_rss_mb()
        print(json.dumps(out))
        return

    db = ensure_source(args.posts)
    size_mb = db.stat().st_size / 2**20
    print(f"\nsource: {args.posts:,} ForumPosts in SQLite ({size_mb:,.0f} MiB), 2 cores\n")
    order = args.only or ["raw", "spanda", "dlt", "spanda_incremental", "defs_load"]
    results: dict[str, dict[str, float]] = {}
    work_root = Path(tempfile.mkdtemp(prefix="spanda-bench-"))
    spanda_work = work_root / "spanda"
    try:
        for name in order:
            work = spanda_work if name.startswith("spanda") else work_root / name
            if name == "spanda_incremental" and not (spanda_work / "catalog.db").exists():
                work.mkdir(parents=True, exist_ok=True)
                run_child("spanda", db, work)
            work.mkdir(parents=True, exist_ok=True)
            print(f"running {name} ...", flush=True)
            results[name] = run_child(name, db, work)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)

    labels = {
        "raw": "raw limit: connectorx -> Parquet",
        "spanda": "Spanda extract -> Iceberg",
        "dlt": "dlt sql_table -> Iceberg",
    }
    print(f"\n{'path':<36}{'rows':>12}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>13}")
    for name in ("raw", "spanda", "dlt"):
        if name in results:
            r = results[name]
            rate = r["rows"] / r["seconds"] if r["seconds"] else 0
            print(
                f"{labels[name]:<36}{int(r['rows']):>12,}{r['seconds']:>10.2f}{rate:>12,.0f}"
                f"{r['peak_rss_mb']:>13,.0f}"
            )
    if "spanda" in results:
        s = results["spanda"]["rows"] / results["spanda"]["seconds"]
        if "dlt" in results:
            d = results["dlt"]["rows"] / results["dlt"]["seconds"]
            print(f"\nSpanda / dlt rows/s:       {s / d:.2f}x   (target >= 3x)")
        if "raw" in results:
            raw = results["raw"]["rows"] / results["raw"]["seconds"]
            print(f"Spanda / raw limit rows/s: {s / raw:.0%}   (target >= 50%)")
    if "spanda_incremental" in results:
        r = results["spanda_incremental"]
        before = int(r["table_rows"]) - int(r["rows"])
        print(
            f"incremental: +{int(r['rows']):,} posts onto {before:,}: "
            f"{r['extract_seconds']:.2f}s of extract work (target < 2 s)"
        )
    if "defs_load" in results:
        print(f"Dagster definitions load: {results['defs_load']['seconds']:.2f}s (target < 3 s)")


if __name__ == "__main__":
    main()
