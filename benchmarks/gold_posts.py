"""A synthetic gold.validated_posts of any size, for the benchmarks that read gold.

The download and SQL benchmarks both need a large gold table shaped like the real one
(pseudonymous ids, a course, post text of 80-400 characters, the year and the length)
without running the chain to get it: the chain's own speed is measured elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from spanda_assets.lib.lakehouse import ensure_namespace

_VOCABULARY = (
    "assignment due tomorrow question about the lecture slides quiz grade extension please "
    "help understand problem set week module reading discussion deadline submit portal error "
    "cannot access video recording office hours thanks everyone group project"
)
WORDS = tuple(_VOCABULARY.split(" "))
SCHEMA = pa.schema(
    [
        ("post_id", pa.string()),
        ("subject_id", pa.string()),
        ("course_id", pa.string()),
        ("body", pa.string()),
        ("created_at_year", pa.int32()),
        ("body_length", pa.int32()),
    ]
)


@contextlib.contextmanager
def bench_home(prefix: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A temporary SPANDA_HOME (the embedded demo defaults) and the environment of the
    benchmark's child processes, set in this process too; removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
        env |= {"SPANDA_HOME": str(home), "SPANDA_DEMO": "1"}
        os.environ.update(env)
        yield home, env


def build_validated_posts(catalog: Catalog, rows: int, files: int, seed: int = 7) -> Table:
    """gold.validated_posts with `rows` rows over 40 courses, in `files` appends (one data
    file each), deterministic for a seed."""
    ensure_namespace(catalog, "gold")
    rng = random.Random(seed)
    table = catalog.create_table(("gold", "validated_posts"), schema=SCHEMA)
    per_file = rows // files
    for f in range(files):
        n = per_file if f < files - 1 else rows - per_file * (files - 1)
        bodies = [
            " ".join(rng.choices(WORDS, k=rng.randint(12, 60)))[: rng.randint(80, 400)]
            for _ in range(n)
        ]
        start = f * per_file
        batch = pa.table(
            {
                "post_id": [f"ps_{i:032x}" for i in range(start, start + n)],
                "subject_id": [f"ps_{rng.getrandbits(128):032x}" for _ in range(n)],
                "course_id": [f"c{rng.randint(1, 40)}" for _ in range(n)],
                "body": bodies,
                "created_at_year": pa.array(
                    [rng.randint(2019, 2026) for _ in range(n)], pa.int32()
                ),
                "body_length": pa.array([len(b) for b in bodies], pa.int32()),
            },
            schema=SCHEMA,
        )
        table.append(batch)
    return table
