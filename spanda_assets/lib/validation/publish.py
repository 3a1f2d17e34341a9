"""Write gold.validated_<name> and its share of gold.quarantine from silver, atomically."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.validation.gold import QUARANTINE_SCHEMA, GoldSpec, split

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

QUARANTINE = ("gold", "quarantine")


@dataclass
class GoldResult:
    valid: int = 0
    quarantined: int = 0
    without_consent: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    snapshot_id: int | None = None


def publish_gold(catalog: Catalog, spec: GoldSpec, active_subjects: set[str]) -> GoldResult:
    """Rebuild the validated table from silver in one transaction, batch by batch.

    The first batch overwrites, the others append, all in one commit: readers
    see the old table or the new one, never half of it. The quarantine rows
    for this table are replaced in a second commit on gold.quarantine.
    """
    from spanda_assets.lib.extract import NO_RETRY
    from spanda_assets.lib.lakehouse import ensure_namespace, eq_filter, replace_all

    ensure_namespace(catalog, "gold")
    source = catalog.load_table(("silver", spec.source))
    refs = {
        "course_id": catalog.load_table(("silver", "courses"))
        .scan(selected_fields=("course_id",))
        .to_arrow()
        .column(0)
        .combine_chunks(),
        "subject_id": catalog.load_table(("silver", "students"))
        .scan(selected_fields=("subject_id",))
        .to_arrow()
        .column(0)
        .combine_chunks(),
    }
    allowed = pa.array(sorted(active_subjects), pa.string())
    result = GoldResult(failures={r.name: 0 for r in spec.rules})
    quarantine_parts: list[pa.Table] = []
    target = None
    tx = None
    first = True
    for batch in source.scan().to_arrow_batch_reader():
        rows = pa.Table.from_batches([batch])
        consented = rows.filter(
            pc.fill_null(pc.is_in(rows["subject_id"], value_set=allowed), False)
        )
        result.without_consent += rows.num_rows - consented.num_rows
        parts = split(spec, consented, refs)
        for name, n in parts.failures.items():
            result.failures[name] += n
        quarantine_parts.append(parts.quarantine)
        valid = parts.valid
        if target is None:
            schema = pa.schema(
                [pa.field(f.name, f.type, nullable=f.name != spec.key) for f in valid.schema]
            )
            table = catalog.create_table_if_not_exists(
                ("gold", spec.name), schema=schema, properties={NO_RETRY: "0"}
            )
            target = pa.schema(
                [pa.field(f.name, f.type, nullable=f.nullable) for f in table.schema().as_arrow()]
            )
            tx = table.transaction()
        valid = valid.cast(target)
        assert tx is not None
        if first:
            replace_all(tx, catalog.load_table(("gold", spec.name)), valid)
            first = False
        else:
            tx.append(valid)
        result.valid += valid.num_rows
    if tx is None:  # silver is empty: an empty gold table
        spec_schema = source.schema().as_arrow()
        cols = list(spec.columns) or spec_schema.names
        empty = pa.schema([spec_schema.field(c) for c in cols]).empty_table()
        table = catalog.create_table_if_not_exists(("gold", spec.name), schema=empty.schema)
        tx = table.transaction()
        replace_all(tx, table, empty)
    tx.commit_transaction()

    quarantine = catalog.create_table_if_not_exists(QUARANTINE, schema=QUARANTINE_SCHEMA)
    q = pa.concat_tables(quarantine_parts) if quarantine_parts else QUARANTINE_SCHEMA.empty_table()
    result.quarantined = q.num_rows
    qtx = quarantine.transaction()
    stale = quarantine.scan(
        row_filter=eq_filter("table_name", spec.name), selected_fields=("rule",)
    )
    if quarantine.current_snapshot() is not None and stale.to_arrow().num_rows:
        qtx.delete(delete_filter=eq_filter("table_name", spec.name))
    if q.num_rows:
        qtx.append(q)
    qtx.commit_transaction()

    table = catalog.load_table(("gold", spec.name))
    snap = table.current_snapshot()
    result.snapshot_id = snap.snapshot_id if snap else None
    return result
