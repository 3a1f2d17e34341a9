"""Access decisions: one Cedar batch per request beside one Cedar call per column, and
the audit log's append rate.

    python benchmarks/access.py [--columns 50] [--repetitions 200] [--appends 2000]

A download of a dataset with `--columns` columns needs `1 + columns` decisions: the
dataset, and each column as its own resource (public, quasi-identifier or restricted,
in turn). They are timed three ways, each `--repetitions` times, against the packaged
policy and schema (parsed once, as `AccessControl` holds them):

* one batch: a single `cedarpy.is_authorized_batch` call with every request (what
  `AccessControl.authorize` does);
* separate calls: `1 + columns` `cedarpy.is_authorized` calls, the entities passed as
  JSON each time (the straightforward loop);
* separate, entities parsed once: the same calls with a pre-parsed `cedarpy.Entities`
  handle, to show how much of the difference is entity parsing.

Then `AccessControl.authorize` end to end (the batch, the reasons, and the audit line
appended, fsynced and anchored), and the audit log's append rate: one writer, then
four processes appending to the same log at once (one chain, under its file lock).
Figures are wall time on this machine; the log lives in a temporary directory on the
same file system as /tmp.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import cedarpy  # noqa: E402

from spanda_assets.lib.access import AccessControl, AuditLog, Principal  # noqa: E402
from spanda_assets.lib.access import entities as ent  # noqa: E402
from spanda_assets.lib.publish.datasets import (  # noqa: E402
    AccessRules,
    ColumnAccess,
    DatasetDeclaration,
    load_datasets,
)

SENSITIVITIES = ("public", "quasi_identifier", "restricted")


def wide_dataset(columns: int) -> DatasetDeclaration:
    """The first declared dataset, widened to `columns` columns of mixed sensitivity."""
    base = load_datasets()[0]
    names = [f"col_{i:03d}" for i in range(columns)]
    rules = {
        name: ColumnAccess(SENSITIVITIES[i % 3], ("longitudinal_research",))
        for i, name in enumerate(names)
    }
    return dataclasses.replace(
        base,
        columns=dict.fromkeys(names, "synthetic column"),
        access=AccessRules(tier="open", purposes=("research",), columns=rules),
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def append_many(directory: str, count: int) -> None:
    log = AuditLog(Path(directory))
    for i in range(count):
        log.append(record(i))


def record(i: int) -> dict[str, Any]:
    return {
        "principal": "alice",
        "role": "researcher",
        "token_id": "tok_0123456789ab",
        "action": "download",
        "resource": f"dataset/validated_posts/v{i % 9 + 1}",
        "purpose": "research",
        "consent_state": "current",
        "decision": "allow",
        "columns_denied": ["subject_id"],
        "policy_ids": ["data-for-approved-purpose", "column-public"],
        "policy_set_hash": "0" * 64,
        "snapshot_id": 4_611_686_018_427_387_904 + i,
        "channel": "api",
        "reasons": ["column 'subject_id' of dataset 'validated_posts' is a quasi-identifier"],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--repetitions", type=int, default=200)
    parser.add_argument("--appends", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="spanda-access-") as tmp:
        ac = AccessControl.load(home=Path(tmp) / "home")
        dataset = wide_dataset(args.columns)
        columns = list(dataset.columns)
        alice = Principal(
            "alice", "researcher", "Elsewhere", frozenset({"research"}), frozenset({dataset.dua.id})
        )
        ctx = ent.context("research", "current", "api")
        user = ent.user_uid(alice)
        requests = [ent.request(user, "download", ent.dataset_uid(dataset), ctx)]
        requests += [
            ent.request(user, "read_column", ent.column_uid(dataset, c), ctx) for c in columns
        ]
        entities = [ent.user_entity(alice), ent.dataset_entity(dataset)]
        entities += [ent.column_entity(dataset, c) for c in columns]
        policies, schema = ac._policies, ac._schema  # the handles authorize() uses

        def batch() -> list[bool]:
            results = cedarpy.is_authorized_batch(requests, policies, entities, schema=schema)
            return [r.allowed for r in results]

        def separate() -> list[bool]:
            return [
                cedarpy.is_authorized(r, policies, entities, schema=schema).allowed
                for r in requests
            ]

        def separate_parsed() -> list[bool]:
            # with the schema: it adds the action groups (download in data) to the entities
            handle = cedarpy.Entities.from_json_str(json.dumps(entities), schema=schema)
            return [
                cedarpy.is_authorized(r, policies, handle, schema=schema).allowed for r in requests
            ]

        assert batch() == separate() == separate_parsed()  # the same decisions
        granted = sum(batch()[1:])
        modes: list[tuple[str, Callable[[], Any]]] = [
            ("one batch", batch),
            (f"{len(requests)} separate calls", separate),
            (f"{len(requests)} calls, entities once", separate_parsed),
            (
                "authorize() + audit",
                lambda: ac.authorize(
                    alice, "download", dataset, purpose="research", columns=columns
                ),
            ),
        ]
        print(
            f"policy {ac.policy_set_hash[:12]}: 1 dataset + {len(columns)} columns "
            f"({granted} granted), {args.repetitions} repetitions each\n"
        )
        header = f"{'mode':<30} {'p50 ms':>8} {'p95 ms':>8} {'requests/s':>12}"
        print(header)
        print("-" * len(header))
        medians = {}
        for name, fn in modes:
            for _ in range(5):
                fn()  # warm up
            samples = [timed(fn) for _ in range(args.repetitions)]
            p50, p95 = percentiles(samples)
            medians[name] = p50
            print(f"{name:<30} {p50:8.2f} {p95:8.2f} {1000 / p50:12,.0f}")
        print(
            f"\none batch is {medians[modes[1][0]] / medians['one batch']:.1f}x faster than "
            "separate calls at the median"
        )

        log_dir = Path(tmp) / "audit-one"
        start = time.perf_counter()
        append_many(str(log_dir), args.appends)
        single = args.appends / (time.perf_counter() - start)
        assert AuditLog(log_dir).verify().ok

        shared = Path(tmp) / "audit-shared"
        per_writer = args.appends // args.writers
        ctx_mp = multiprocessing.get_context("spawn")
        procs = [
            ctx_mp.Process(target=append_many, args=(str(shared), per_writer))
            for _ in range(args.writers)
        ]
        start = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        elapsed = time.perf_counter() - start  # process start-up included
        check = AuditLog(shared).verify()
        assert check.ok and check.entries == per_writer * args.writers, check
        print(
            f"\naudit append (fsync + anchor): {single:,.0f} lines/s with one writer; "
            f"{check.entries / elapsed:,.0f} lines/s with {args.writers} processes on one "
            f"log (start-up included), chain verified"
        )


if __name__ == "__main__":
    main()
