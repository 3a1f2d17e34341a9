"""silver.consent_records and silver.consent_quarantine, rebuilt from the valid events.

Consent events are few (a handful per student), so each run rewrites both
tables in one overwrite each: simple, idempotent, and always consistent with
bronze.consent_events. Both are staged on their audit branch; the asset
publishes them after the residual-PII scan of the records passed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from spanda_assets.lib.privacy.consent import ConsentState, record
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.writes import AUDIT, NO_RETRY, open_audit, replace_all

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

RECORDS = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("subject_id", pa.string()),
        pa.field("purpose", pa.string()),
        pa.field("state", pa.string()),
        pa.field("event_year", pa.int32()),
        pa.field("collection_method", pa.string()),
        pa.field("notice_version", pa.string()),
        pa.field("is_current", pa.bool_()),
        pa.field("record", pa.string()),
    ]
)
QUARANTINE = pa.schema(
    [pa.field("record_id", pa.string(), nullable=False), pa.field("reason", pa.string())]
)


@dataclass
class StagedRecords:
    records: Table
    quarantine: Table
    summary: dict[str, Any]


def _stage(catalog: Catalog, name: str, rows: pa.Table) -> Table:
    table = catalog.create_table_if_not_exists(
        ("silver", name), schema=rows.schema, properties={NO_RETRY: "0"}
    )
    open_audit(table)
    with table.transaction() as tx:
        replace_all(tx, table, rows, branch=AUDIT)
    return table


def stage_consent_records(
    catalog: Catalog,
    valid: pa.Table,
    quarantined: list[dict[str, Any]],
    states: dict[tuple[int, str], ConsentState],
    pseudonymizer: Pseudonymizer,
    subjects: dict[int, str],
) -> StagedRecords:
    """Stage both tables on their audit branches (rewritten whole: consent events are few)."""
    current = {s.event_id for s in states.values()}
    cols: dict[str, list[Any]] = {n: [] for n in RECORDS.names}
    for row in valid.to_pylist():
        rid = pseudonymizer.one("consent_events.consent_event_id", row["consent_event_id"])
        subject = subjects.get(row["student_id"])
        year = row["recorded_at"].year
        cols["record_id"].append(rid)
        cols["subject_id"].append(subject)
        cols["purpose"].append(row["purpose"])
        cols["state"].append(row["state"])
        cols["event_year"].append(year)
        cols["collection_method"].append(row["collection_method"])
        cols["notice_version"].append(row["notice_version"])
        cols["is_current"].append(row["consent_event_id"] in current)
        cols["record"].append(
            json.dumps(
                record(
                    record_id=rid,
                    subject=subject or "",
                    purpose=row["purpose"],
                    state=row["state"],
                    time=str(year),
                    collection_method=row["collection_method"],
                    notice_version=row["notice_version"],
                ),
                sort_keys=True,
            )
        )
    records = _stage(catalog, "consent_records", pa.table(cols, schema=RECORDS))
    q = pa.table(
        {
            "record_id": [
                pseudonymizer.one("consent_events.consent_event_id", r["consent_event_id"])
                for r in quarantined
            ],
            "reason": [r["reason"] for r in quarantined],
        },
        schema=QUARANTINE,
    )
    quarantine = _stage(catalog, "consent_quarantine", q)
    active: dict[str, int] = {}
    for (_, purpose), s in states.items():
        if s.state == "given":
            active[purpose] = active.get(purpose, 0) + 1
    reasons: dict[str, int] = {}
    for r in quarantined:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    summary = {
        "dagster/row_count": len(cols["record_id"]),
        "records": len(cols["record_id"]),
        "quarantined": len(quarantined),
        "quarantine_reasons": json.dumps(reasons) if reasons else "none",
        **{f"active_{p}": n for p, n in sorted(active.items())},
    }
    return StagedRecords(records, quarantine, summary)
