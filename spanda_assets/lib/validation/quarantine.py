"""gold.quarantine: the rows a gold table holds back, as keys, rule names and reasons.

One table serves every gold table (column `table_name`), and never holds a
row's content, only what a steward needs to find and fix it at the source. It
is written directly, not through an audit branch: each gold run commits its
quarantine changes just before its own gold commit and records the resulting
quarantine snapshot there (`spanda.quarantine-snapshot`). A crash between the
two leaves gold at its previous state; the retry reads the quarantine as of
that recorded snapshot and re-derives the same changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.expressions import And, BooleanExpression, Or
from pyiceberg.table import Table

from spanda_assets.lib.validation.gold import QUARANTINE_SCHEMA
from spanda_assets.lib.writes import eq_filter, in_filter

QUARANTINE = ("gold", "quarantine")


def quarantined(quarantine: Table, name: str, snapshot: str | None = None) -> pa.Table:
    """`name`'s quarantine entries, now or at `snapshot` (the quarantine is small)."""
    snapshot_id = int(snapshot) if snapshot else None
    if snapshot_id is not None and quarantine.snapshot_by_id(snapshot_id) is None:
        snapshot_id = None  # expired: the current state is the best remaining record
    if snapshot_id is None and quarantine.current_snapshot() is None:
        return QUARANTINE_SCHEMA.empty_table()
    rows = quarantine.scan(
        row_filter=eq_filter("table_name", name), snapshot_id=snapshot_id
    ).to_arrow()
    return rows.select(QUARANTINE_SCHEMA.names) if "subject_id" in rows.column_names else rows


@dataclass
class QuarantineChanges:
    """What one gold run changes in its table's quarantine entries, written in one commit.

    `held` is the quarantine as the table's last gold commit saw it, `current`
    as it is now; they differ only after a crash between the two commits. A
    key with an entry in either that this run handles loses its old entry; if
    it still fails, the run adds a new one, so no entry is ever left stale.
    """

    table: Table
    name: str
    held: pa.Table
    current: pa.Table
    held_keys: pa.Array
    new: list[pa.Table] = field(default_factory=list)
    drop_keys: set[str] = field(default_factory=set)
    drop_subjects: set[str] = field(default_factory=set)

    @classmethod
    def start(cls, table: Table, name: str, snapshot: str | None) -> QuarantineChanges:
        held = quarantined(table, name, snapshot)
        current = quarantined(table, name)
        both = [pc.cast(t.column("row_key"), pa.string()) for t in (held, current)]
        keys = pc.unique(pa.chunked_array([c for col in both for c in col.chunks], pa.string()))
        return cls(table=table, name=name, held=held, current=current, held_keys=keys)

    def hold(self, rows: pa.Table) -> None:
        """New entries: rows that failed a rule in this run."""
        self.new.append(rows)

    def handled(self, keys: pa.Array) -> set[str]:
        """Mark `keys` as handled this run; returns those that had an entry (now dropped)."""
        was_held = set(keys.filter(pc.is_in(keys, value_set=self.held_keys)).to_pylist())
        self.drop_keys.update(was_held)
        return was_held

    def held_by(self, rules: list[str]) -> set[str]:
        """Keys held, as of the last gold commit, by any of `rules`."""
        rows = self.held.filter(pc.is_in(self.held["rule"], pa.array(rules, pa.string())))
        return set(rows.column("row_key").to_pylist())

    def write(self, *, replace_table: bool) -> str:
        """Commit this run's changes; returns the quarantine's new snapshot id.

        Every key written is deleted first, so a retry never duplicates an entry.
        `replace_table` (a full gold rebuild) drops all of the table's entries.
        """
        q = self.table
        target = pa.schema([pa.field(f.name, f.type, f.nullable) for f in q.schema().as_arrow()])
        new = pa.concat_tables(self.new) if self.new else QUARANTINE_SCHEMA.empty_table()
        new = new.cast(target)
        tx = q.transaction()
        mine = eq_filter("table_name", self.name)
        if replace_table:
            if self.current.num_rows:
                tx.delete(delete_filter=mine)
        else:
            condition = self._stale(new)
            if condition is not None:
                tx.delete(delete_filter=And(mine, condition))
        if new.num_rows:
            tx.append(new)
        tx.commit_transaction()
        q.refresh()
        snap = q.current_snapshot()
        return str(snap.snapshot_id) if snap is not None else ""

    def _stale(self, new: pa.Table) -> BooleanExpression | None:
        """The entries to delete, named only by keys and subjects that have one: the
        filter stays as small as the quarantine, whatever the size of the increment."""
        current = self.current
        wanted = pa.array(sorted(self.drop_keys | set(new["row_key"].to_pylist())), pa.string())
        keys = set(current.filter(pc.is_in(current["row_key"], wanted))["row_key"].to_pylist())
        subjects = pa.array(sorted(self.drop_subjects), pa.string())
        mask = pc.fill_null(pc.is_in(current["subject_id"], subjects), False)
        gone = set(current.filter(mask)["subject_id"].to_pylist())
        parts: list[BooleanExpression] = []
        if keys:
            parts.append(in_filter("row_key", keys))
        if gone:
            parts.append(in_filter("subject_id", gone))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else Or(*parts)
