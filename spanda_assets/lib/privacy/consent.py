"""Consent events to ISO/IEC TS 27560-style consent records, and who may be in a dataset.

Consent is affirmative: a student is in a dataset only if their latest valid
event for its purpose is `given`. An event that names an unknown purpose, an
unknown state or an unknown student is never read as consent: it is
quarantined with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.privacy.erasure import erased_students

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

PURPOSES = ("research", "model_training")
STATES = ("given", "withdrawn", "refused", "expired")
ACTIVE = "given"
SCHEMA_VERSION = "ISO/IEC TS 27560:2023"
CONTROLLER = {"name": "Spanda demo institution", "contact": "Privacy Office of the controller"}
PII_CATEGORIES = ["identity", "contact", "education record", "forum contributions"]


@dataclass(frozen=True)
class ConsentState:
    state: str
    event_id: int
    recorded_at: Any


def validate_events(
    events: pa.Table, known_students: set[int]
) -> tuple[pa.Table, list[dict[str, Any]]]:
    """Split bronze consent events into valid ones and quarantined ones with reasons."""
    keep: list[bool] = []
    quarantined: list[dict[str, Any]] = []
    for row in events.select(
        ["consent_event_id", "student_id", "purpose", "state", "recorded_at"]
    ).to_pylist():
        reasons = []
        if row["purpose"] not in PURPOSES:
            reasons.append(f"unknown purpose {row['purpose']!r} (known: {', '.join(PURPOSES)})")
        if row["state"] not in STATES:
            reasons.append(f"unknown state {row['state']!r} (known: {', '.join(STATES)})")
        if row["student_id"] not in known_students:
            # The student number itself stays out of the reason: silver is de-identified.
            reasons.append("unknown student (no registered data subject)")
        if row["recorded_at"] is None:
            reasons.append("no RecordedAt time")
        keep.append(not reasons)
        if reasons:
            quarantined.append(
                {
                    "consent_event_id": row["consent_event_id"],
                    "reason": "; ".join(reasons),
                }
            )
    return events.filter(pa.array(keep, pa.bool_())), quarantined


def latest_states(valid: pa.Table) -> dict[tuple[int, str], ConsentState]:
    """The latest valid event per (student, purpose), by time then event id."""
    out: dict[tuple[int, str], ConsentState] = {}
    for row in valid.select(
        ["consent_event_id", "student_id", "purpose", "state", "recorded_at"]
    ).to_pylist():
        key = (row["student_id"], row["purpose"])
        current = out.get(key)
        order = (row["recorded_at"], row["consent_event_id"])
        if current is None or order > (current.recorded_at, current.event_id):
            out[key] = ConsentState(row["state"], row["consent_event_id"], row["recorded_at"])
    return out


def active_students(states: dict[tuple[int, str], ConsentState], purpose: str) -> set[int]:
    return {sid for (sid, p), s in states.items() if p == purpose and s.state == ACTIVE}


def record(
    *,
    record_id: str,
    subject: str,
    purpose: str,
    state: str,
    time: str,
    collection_method: str | None,
    notice_version: str | None,
) -> dict[str, Any]:
    """One consent record in the shape of ISO/IEC TS 27560 (schema, subject, processing, event)."""
    return {
        "schemaVersion": SCHEMA_VERSION,
        "recordId": record_id,
        "dataSubject": subject,
        "processing": {
            "purposes": [purpose],
            "piiCategories": PII_CATEGORIES,
            "controllers": [CONTROLLER],
            "jurisdiction": "US (FERPA)",
            "storageLocation": "Spanda lakehouse",
            "retention": "until withdrawal, then erased from derived datasets",
            "withdrawalMethod": "contact the controller or the learning platform's privacy page",
            "notice": {"version": notice_version, "language": "en"},
        },
        "event": {"time": time, "state": state, "collectionMethod": collection_method},
    }


def load_consent(
    catalog: Catalog,
) -> tuple[pa.Table, list[dict[str, Any]], dict[tuple[int, str], ConsentState]]:
    """Valid consent events, quarantined ones with reasons, and the latest state per purpose.

    Read from the restricted zone (bronze.consent_events, bronze.data_subjects):
    consent is decided on the legal record, not on a de-identified copy. A
    student in the erasure register (bronze.erasure_requests) has no consent
    left, whatever their events say, and their events are not records any more.
    """
    events = catalog.load_table(("bronze", "consent_events")).scan().to_arrow()
    erased = erased_students(catalog)
    if erased:
        gone = pc.is_in(events.column("student_id"), pa.array(sorted(erased), pa.int64()))
        events = events.filter(pc.invert(pc.fill_null(gone, False)))
    registry = catalog.load_table(("bronze", "data_subjects"))
    known = set(registry.scan(selected_fields=("student_id",)).to_arrow().column(0).to_pylist())
    valid, quarantined = validate_events(events, known)
    return valid, quarantined, latest_states(valid)
