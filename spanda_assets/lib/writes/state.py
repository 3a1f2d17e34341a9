"""Run state: the position of an incremental writer, in its snapshot and a property copy."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pyarrow as pa

from spanda_assets.lib.writes.rows import MAIN

if TYPE_CHECKING:
    from pyiceberg.table import Table, Transaction


STATE_PREFIX = "spanda.state."


def state_property(branch: str) -> str:
    return f"{STATE_PREFIX}{branch}"


def close_run(
    tx: Transaction, schema: pa.Schema, state: Mapping[str, str], branch: str = MAIN
) -> None:
    """End a run's transaction with its position: an (empty) append whose summary carries
    `state`, and the same state in the table property that survives expiry."""
    tx.append(schema.empty_table(), snapshot_properties=dict(state), branch=branch)
    remember_state(tx, state, branch)


STATE_SNAPSHOT = "spanda.snapshot-id"


def remember_state(tx: Transaction, state: Mapping[str, str], branch: str = MAIN) -> None:
    """The property copy of `state`, staged in the transaction that writes the rows (call
    it after the run's last staged snapshot: the copy names that snapshot)."""
    snap = tx.table_metadata.snapshot_by_name(branch)
    doc = {**state, STATE_SNAPSHOT: str(snap.snapshot_id) if snap is not None else ""}
    tx.set_properties({state_property(branch): json.dumps(doc, sort_keys=True)})


def read_state(
    table: Table | None, marker: str, keys: Iterable[str], branch: str = MAIN
) -> dict[str, str]:
    """The position of the newest run on `branch` ({} before the first run).

    The newest snapshot whose summary carries `marker` answers. When the walk
    back finds none, the property copy answers if the snapshot it names was
    expired (expiry cut the walk short); if that snapshot still exists, it is
    not an ancestor of the head, so the branch was rolled back to before it,
    and there is no position.
    """
    if table is None:
        return {}
    wanted = list(keys)
    snap = table.snapshot_by_name(branch)
    while snap is not None:
        summary = snap.summary
        if summary is not None and summary[marker]:
            return {k: str(summary[k]) for k in wanted if summary[k] is not None}
        snap = table.snapshot_by_id(snap.parent_snapshot_id) if snap.parent_snapshot_id else None
    raw = table.properties.get(state_property(branch))
    if not raw or table.snapshot_by_name(branch) is None:
        return {}
    saved = json.loads(raw)
    carrier = saved.get(STATE_SNAPSHOT)
    if not saved.get(marker) or (carrier and table.snapshot_by_id(int(carrier)) is not None):
        return {}
    return {k: str(saved[k]) for k in wanted if saved.get(k) is not None}
