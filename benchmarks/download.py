"""Download throughput and peak memory of the HTTP API at 1M rows, beside a whole-table read.

    python benchmarks/download.py [--rows 1000000] [--files 8]

Builds gold.validated_posts with `--rows` synthetic rows (post text of 80-400
characters) in `--files` data files in a temporary SPANDA_HOME, publishes it as
version 1 (Parquet + CSV written, DOI minted by the offline provider), issues a
researcher token, starts the real server (`spanda serve`) on loopback and downloads
over HTTP:

* the published Parquet file as it is (every column permitted: the file is sent),
* a streamed Parquet, CSV and Arrow IPC download from the snapshot (the purpose keeps
  the quasi-identifier `subject_id` back, so the file cannot be sent as it is).

For each it prints rows/s, MB/s and the server's peak RSS (VmHWM of the server
process, measured fresh for each download by restarting the server). The peer is what
a service would do without streaming: pyiceberg's `scan().to_arrow()` of the same
snapshot, then one Parquet write to memory, in a child process of its own (peak RSS of
that process). The target: streaming 1M rows adds under 256 MB to the server's RSS
(the idle server, its imports loaded, is about 190 MB by itself), and the figure does
not grow with the table (try --rows 3000000).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gold_posts import bench_home, build_validated_posts  # noqa: E402
from served import spanda_serve  # noqa: E402

from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog  # noqa: E402
from spanda_assets.lib.publish.datasets import dataset_by_id, load_datasets  # noqa: E402
from spanda_assets.lib.publish.doi import provider_from_env  # noqa: E402
from spanda_assets.lib.publish.versions import (  # noqa: E402
    VersionStore,
    publish_dataset,
    publish_root,
)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def build(home: Path, rows: int, files: int) -> None:
    """gold.validated_posts with `rows` rows in `files` appends, published as version 1."""

    catalog = open_catalog(CatalogConfig.from_env())
    build_validated_posts(catalog, rows, files)
    dataset = dataset_by_id(load_datasets(), "validated_posts")
    outcome = publish_dataset(catalog, dataset, provider_from_env(), VersionStore(publish_root()))
    assert outcome.action == "published", outcome


def download(
    env: dict[str, str], token: str, query: str, purpose: str
) -> tuple[float, int, float, float]:
    """(seconds, bytes, server peak RSS MB, server RSS after start MB) of one download."""

    with spanda_serve(env) as (pid, base):
        base_rss = _peak_rss_mb(pid)
        started = time.perf_counter()
        size = 0
        headers = {"Authorization": f"Bearer {token}", "X-Purpose": purpose}
        url = f"{base}/datasets/validated_posts/versions/1/data?{query}"
        with httpx.stream("GET", url, headers=headers, timeout=600) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                size += len(chunk)
        seconds = time.perf_counter() - started
        return seconds, size, _peak_rss_mb(pid), base_rss


PEER = """
import io, sys, time, resource
import pyarrow.parquet as pq
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.publish.versions import VersionStore, publish_root
v = VersionStore(publish_root()).load("validated_posts").latest
start = time.perf_counter()
table = open_catalog(CatalogConfig.from_env()).load_table(("gold", "validated_posts"))
arrow = table.scan(snapshot_id=v.snapshot_id).to_arrow()
sink = io.BytesIO()
pq.write_table(arrow, sink, compression="zstd")
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(seconds, sink.tell(), peak, arrow.num_rows)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    with bench_home("spanda-bench-download-") as (home, env):
        started = time.perf_counter()
        build(home, args.rows, args.files)
        print(f"built and published {args.rows:,} rows in {time.perf_counter() - started:.0f} s")

        dua = dataset_by_id(load_datasets(), "validated_posts").dua.id
        token = subprocess.run(
            [str(Path(sys.executable).parent / "spanda"), "access", "token", "create",
             "--principal", "bench", "--role", "researcher", "--purpose", "research",
             "--purpose", "longitudinal_research", "--dua", dua],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        runs = [
            ("published Parquet file, sent as is", "format=parquet", "longitudinal_research"),
            ("streamed Parquet (subject_id withheld)", "format=parquet", "research"),
            ("streamed CSV (subject_id withheld)", "format=csv", "research"),
            ("streamed Arrow IPC (subject_id withheld)", "format=arrow", "research"),
        ]
        heading = f"download of {args.rows:,} rows"
        print(
            f"\n{heading:<46}{'rows/s':>12}{'MB/s':>9}{'MB sent':>9}{'peak RSS MB':>13}"
            f"{'idle RSS MB':>13}{'added MB':>10}"
        )
        for label, query, purpose in runs:
            seconds, size, peak, idle = download(env, token, query, purpose)
            print(
                f"{label:<46}{args.rows / seconds:>12,.0f}{size / seconds / 1e6:>9.1f}"
                f"{size / 1e6:>9.1f}{peak:>13.0f}{idle:>13.0f}{peak - idle:>10.0f}"
            )
        out = subprocess.run(
            [sys.executable, "-c", PEER], env=env, check=True, capture_output=True, text=True
        ).stdout.split()
        seconds, size, peak, rows = float(out[0]), int(out[1]), float(out[2]), int(out[3])
        print(
            f"{'peer: pyiceberg to_arrow() + one Parquet write':<46}{rows / seconds:>12,.0f}"
            f"{size / seconds / 1e6:>9.1f}{size / 1e6:>9.1f}{peak:>13.0f}{'':>13}"
        )
        print(
            "\ntarget: a download adds < 256 MB to the server (idle RSS is the imports: "
            "pyiceberg, pyarrow, FastAPI, Cedar); the peer holds the whole table"
        )


if __name__ == "__main__":
    main()
