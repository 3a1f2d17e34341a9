"""Distinct keys in sorted order with bounded memory: an external sort that spills to disk.

An export lists each user once, in a fixed order, while reading the tables one data
file at a time; holding every pseudonym in a Python set would make memory grow with
the number of students. Keys are collected in Arrow arrays; once `run_keys` are held,
their distinct values are sorted and written as one run (an Arrow IPC file). Reading
back merges the runs (heapq.merge) one batch per run at a time, dropping duplicates.

Memory: at most `run_keys` keys before a spill, then one batch of `READ_ROWS` keys per
run while merging. The order is Arrow's byte order of UTF-8, which is Python's code
point order, so the result depends only on the set of keys, never on how they were
split into runs or batches.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

RUN_KEYS = 1_000_000
READ_ROWS = 65_536


class SortedKeys:
    """Collects string keys in any order; `sorted_unique()` yields each once, in order."""

    def __init__(self, directory: Path, run_keys: int = RUN_KEYS) -> None:
        self.directory = directory
        self.run_keys = run_keys
        self._pending: list[pa.Array] = []
        self._held = 0
        self._runs: list[Path] = []

    @property
    def runs(self) -> int:
        """How many runs were spilled to disk so far."""
        return len(self._runs)

    def add(self, keys: pa.Array | pa.ChunkedArray) -> None:
        """Add keys (nulls are ignored)."""
        values = pc.cast(keys.drop_null(), pa.large_string())
        chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
        for chunk in chunks:
            self._pending.append(chunk)
            self._held += len(chunk)
        if self._held >= self.run_keys:
            self._spill()

    def _distinct_sorted(self) -> pa.Array:
        if not self._pending:
            return pa.array([], pa.large_string())
        values = pc.unique(pa.concat_arrays(self._pending))
        self._pending, self._held = [], 0
        return values.take(pc.sort_indices(values))

    def _spill(self) -> None:
        values = self._distinct_sorted()
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"run-{len(self._runs):06d}.arrow"
        schema = pa.schema([pa.field("key", pa.large_string())])
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for start in range(0, len(values), READ_ROWS):
                writer.write_batch(pa.record_batch([values.slice(start, READ_ROWS)], schema=schema))
        self._runs.append(path)

    def sorted_unique(self) -> Iterator[str]:
        """Every key added, once, in sorted order."""
        if not self._runs:
            yield from self._distinct_sorted().to_pylist()
            return
        if self._held:
            self._spill()
        previous: str | None = None
        for key in heapq.merge(*(_read(run) for run in self._runs)):
            if key != previous:
                yield key
                previous = key


def _read(path: Path) -> Iterator[str]:
    with pa.memory_map(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        for i in range(reader.num_record_batches):
            yield from reader.get_batch(i).column(0).to_pylist()
