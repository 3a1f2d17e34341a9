"""The whole chain's wall time on the embedded default beside a REST catalog over S3.

    python benchmarks/chain.py [--size small] [--repeat]

Runs `spanda demo --no-ui` (seed, bronze -> silver -> gold with write-audit-publish,
the labeled set, training and scoring, publication, the submissions inbox) in a fresh
SPANDA_HOME twice over:

* embedded: the SQLite catalog and a local warehouse directory (the defaults);
* REST + S3: SeaweedFS's `weed mini` on loopback, the Iceberg REST catalog reached with
  OAuth2 client credentials and every table's files in its S3 (as the test suite runs it).

Each phase is timed from the demo's own progress lines. With `--repeat` the demo runs a
second time on the same home with no new source rows: what a scheduled run costs when
nothing changed (it should be a small fraction of the first).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spanda_assets_tests.servers import weed_server  # noqa: E402

# The demo's progress lines that open each phase, in order, and the phase's name.
PHASES = (
    ("materializing the asset graph", "seed"),
    ("all assets materialized", "bronze -> silver -> gold"),
    ("training post_urgency", "labeled set"),
    ("publishing the declared datasets", "train + score"),
    ("processing the submissions inbox", "publish"),
)
LAST = "submissions"


def run_demo(env: dict[str, str], size: str) -> dict[str, float]:
    """Seconds per phase (and 'total') of one `spanda demo --no-ui`."""
    spanda = str(Path(sys.executable).parent / "spanda")
    started = time.perf_counter()
    mark, times = started, {}
    phases = iter(PHASES)
    marker, name = next(phases)
    proc = subprocess.Popen(
        [spanda, "demo", "--no-ui", "--size", size, "--api-port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = [*tail[-39:], line]
        if marker and line.startswith(marker):
            now = time.perf_counter()
            times[name] = now - mark
            mark = now
            marker, name = next(phases, ("", LAST))
    if proc.wait() != 0:
        raise SystemExit("spanda demo failed:\n" + "".join(tail))
    end = time.perf_counter()
    times[name] = end - mark
    times["total"] = end - started
    return times


@contextlib.contextmanager
def embedded() -> Iterator[dict[str, str]]:
    yield {}


@contextlib.contextmanager
def rest_and_s3() -> Iterator[dict[str, str]]:
    with weed_server() as weed:
        yield weed.env(weed.create_table_bucket("bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", choices=["tiny", "small", "medium"])
    parser.add_argument("--repeat", action="store_true", help="run again with nothing new")
    args = parser.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    results: dict[str, dict[str, float]] = {}
    backends = (("embedded (SQLite + files)", embedded), ("REST + S3 (weed)", rest_and_s3))
    for label, backend in backends:
        with tempfile.TemporaryDirectory(prefix="spanda-bench-chain-") as tmp, backend() as lake:
            env = base | lake | {"SPANDA_HOME": str(Path(tmp) / "home")}
            results[label] = run_demo(env, args.size)
            print(f"{label}: {results[label]['total']:.0f} s", flush=True)
            if args.repeat:
                again = run_demo(env, args.size)
                results[f"{label}, nothing new"] = again
                print(f"{label}, nothing new: {again['total']:.0f} s", flush=True)

    names = [name for _, name in PHASES] + [LAST, "total"]
    print(f"\nchain wall time, seconds (`spanda demo --no-ui --size {args.size}`)")
    print(f"{'':<38}" + "".join(f"{n[:12]:>13}" for n in names))
    for label, times in results.items():
        print(f"{label:<38}" + "".join(f"{times.get(n, 0.0):>13.1f}" for n in names))


if __name__ == "__main__":
    main()
