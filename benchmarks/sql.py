"""`spanda sql` beside a pyiceberg scan: a count and a group-by over 1M gold rows.

    python benchmarks/sql.py [--rows 1000000] [--files 8] [--repetitions 3]

Builds gold.validated_posts with `--rows` synthetic rows (benchmarks/gold_posts.py) in
a temporary SPANDA_HOME, then answers two questions three ways, each in a fresh child
process (so every figure includes opening the catalog, and the peak RSS is that
query's alone):

* `spanda sql` as a user runs it: the CLI, its access decision and audit line, DuckDB
  with the iceberg extension reading the snapshot's Parquet files;
* pyiceberg, projected: `scan(selected_fields=...)` of only the columns the question
  needs, then pyarrow's count / `group_by`;
* pyiceberg, whole rows: `scan().to_arrow()` then the same, which is what a script
  that does not think about projection does.

The questions: `count(*)`, and posts, mean length and distinct authors per course. The
answers of the three are compared before any figure is printed. Figures are the median
wall time over `--repetitions` runs and the largest peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gold_posts import bench_home, build_validated_posts  # noqa: E402

from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog  # noqa: E402

COUNT = "SELECT count(*) AS posts FROM gold.validated_posts"
GROUP = (
    "SELECT course_id, count(*) AS posts, avg(body_length) AS mean_length, "
    "count(DISTINCT subject_id) AS authors FROM gold.validated_posts "
    "GROUP BY course_id ORDER BY course_id"
)

# The peer, in a child process: argv[1] is "count" or "group", argv[2] "projected" or
# "whole". Prints the answer as JSON rows, like `spanda sql --format json`.
PEER = """
import json, sys
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
question, read = sys.argv[1], sys.argv[2]
table = open_catalog(CatalogConfig.from_env()).load_table(("gold", "validated_posts"))
fields = {"count": ("post_id",), "group": ("course_id", "body_length", "subject_id")}
scan = table.scan(selected_fields=fields[question]) if read == "projected" else table.scan()
arrow = scan.to_arrow()
if question == "count":
    rows = [{"posts": arrow.num_rows}]
else:
    grouped = arrow.group_by("course_id").aggregate(
        [([], "count_all"), ("body_length", "mean"), ("subject_id", "count_distinct")]
    ).sort_by("course_id")
    rows = [
        {"course_id": c, "posts": n, "mean_length": m, "authors": a}
        for c, n, m, a in zip(*(grouped[k].to_pylist() for k in (
            "course_id", "count_all", "body_length_mean", "subject_id_count_distinct"
        )))
    ]
print(json.dumps(rows))
"""


# In one process, after a first run of each (imports loaded, catalog open, extension
# loaded): the query engines' own time. argv[1] is the repetitions; prints JSON seconds.
WARM = """
import json, statistics, sys, time
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.sql import run_query
catalog = open_catalog(CatalogConfig.from_env())
COUNT, GROUP = sys.argv[2], sys.argv[3]

def duck(sql):
    with run_query(sql, catalog=catalog) as result:
        return sum(b.num_rows for b in result.batches())

def iceberg(question):
    table = catalog.load_table(("gold", "validated_posts"))
    if question == "count":
        return table.scan(selected_fields=("post_id",)).to_arrow().num_rows
    arrow = table.scan(selected_fields=("course_id", "body_length", "subject_id")).to_arrow()
    return arrow.group_by("course_id").aggregate(
        [([], "count_all"), ("body_length", "mean"), ("subject_id", "count_distinct")]
    ).num_rows

ops = {
    "sql count": lambda: duck(COUNT), "sql group": lambda: duck(GROUP),
    "iceberg count": lambda: iceberg("count"), "iceberg group": lambda: iceberg("group"),
}
out = {}
for name, op in ops.items():
    op()
    times = []
    for _ in range(int(sys.argv[1])):
        start = time.perf_counter()
        op()
        times.append(time.perf_counter() - start)
    out[name] = statistics.median(times)
print(json.dumps(out))
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, float, Any]:
    """(wall seconds, peak RSS MB, JSON rows) of one child, its peak from wait4."""
    read_end, write_end = os.pipe()
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # the child: stdout to the pipe, stderr kept for errors
        os.close(read_end)
        os.dup2(write_end, 1)
        os.execve(args[0], args, env)
    os.close(write_end)
    with os.fdopen(read_end) as reader:
        out = reader.read()
    _, status, usage = os.wait4(pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args[:3])} exited with {os.waitstatus_to_exitcode(status)}")
    return seconds, usage.ru_maxrss / 1024, json.loads(out)


def normalised(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
    """Rows comparable across engines: floats to 6 places, keys in a fixed order."""
    return [
        tuple(round(v, 6) if isinstance(v, float) else v for _, v in sorted(r.items()))
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    spanda = str(Path(sys.executable).parent / "spanda")
    with bench_home("spanda-bench-sql-") as (_, env):
        started = time.perf_counter()
        build_validated_posts(open_catalog(CatalogConfig.from_env()), args.rows, args.files)
        print(f"built gold.validated_posts, {args.rows:,} rows in {args.files} files, "
              f"in {time.perf_counter() - started:.0f} s")  # fmt: skip

        ways = {
            "spanda sql (DuckDB + iceberg extension)": lambda q, sql: [
                spanda, "sql", sql, "--format", "json"
            ],
            "peer: pyiceberg scan, projected + pyarrow": lambda q, sql: [
                sys.executable, "-c", PEER, q, "projected"
            ],
            "peer: pyiceberg scan().to_arrow() + pyarrow": lambda q, sql: [
                sys.executable, "-c", PEER, q, "whole"
            ],
        }  # fmt: skip
        print(f"\n{'':<46}{'count(*)':>22}{'group by course':>24}")
        print(f"{'':<46}{'median s':>11}{'peak MB':>11}{'median s':>12}{'peak MB':>12}")
        answers: dict[str, list[list[tuple[object, ...]]]] = {"count": [], "group": []}
        for label, argv in ways.items():
            cells: list[str] = []
            for question, sql in (("count", COUNT), ("group", GROUP)):
                times, peaks = [], []
                for _ in range(args.repetitions):
                    seconds, peak, rows = run(argv(question, sql), env)
                    times.append(seconds)
                    peaks.append(peak)
                answers[question].append(normalised(rows))
                width = 11 if question == "count" else 12
                cells.append(f"{statistics.median(times):>{width}.2f}{max(peaks):>{width}.0f}")
            print(f"{label:<46}{''.join(cells)}")
        for question, found in answers.items():
            if any(a != found[0] for a in found[1:]):
                raise SystemExit(f"the engines disagree on the {question} question: {found}")
        _, _, warm = run([sys.executable, "-c", WARM, str(args.repetitions), COUNT, GROUP], env)
        print("\nin one process, warm (imports, catalog and extension loaded), median s")
        print(f"{'spanda sql (DuckDB + iceberg extension)':<46}{warm['sql count']:>22.3f}"
              f"{warm['sql group']:>24.3f}")  # fmt: skip
        print(f"{'peer: pyiceberg scan, projected + pyarrow':<46}{warm['iceberg count']:>22.3f}"
              f"{warm['iceberg group']:>24.3f}")  # fmt: skip
        groups = len(answers["group"][0])
        print(f"\nall three agree: {answers['count'][0][0][0]:,} posts, {groups} courses")
        print("each figure is a fresh process: start-up, catalog, access decision (spanda sql),")
        print("scan and answer")


if __name__ == "__main__":
    main()
