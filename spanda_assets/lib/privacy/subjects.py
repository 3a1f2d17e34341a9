"""The registry of data subjects: one did:key per student, in the restricted bronze zone.

bronze.data_subjects holds student_id, DID and public key (never a private
key). Silver never sees DIDs: its subject_id is the keyed pseudonym of the DID.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pyarrow as pa

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.privacy.did import Wallet
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.writes import eq_filter

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

SUBJECTS = ("bronze", "data_subjects")
SCHEMA = pa.schema(
    [
        pa.field("student_id", pa.int64(), nullable=False),
        pa.field("did", pa.string(), nullable=False),
        pa.field("public_key_multibase", pa.string(), nullable=False),
        pa.field("registered_at", pa.timestamp("us")),
    ]
)


def register_subjects(catalog: Catalog, wallet: Wallet) -> tuple[int, int]:
    """Give every student in bronze.students a DID; returns (new, total)."""
    students = load_table_or_none(catalog, "bronze", "students")
    if students is None:
        raise SpandaError("bronze.students does not exist yet: materialize bronze/students first")
    roster = students.scan(selected_fields=("student_id", "sourced_id")).to_arrow()
    registry = load_table_or_none(catalog, *SUBJECTS)
    if registry is None:
        registry = catalog.create_table_if_not_exists(
            SUBJECTS, schema=SCHEMA, properties={"commit.retry.num-retries": "0"}
        )
        with registry.update_schema() as upd:
            upd.set_identifier_fields("student_id")
    known = set(registry.scan(selected_fields=("student_id",)).to_arrow().column(0).to_pylist())
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows: dict[str, list[object]] = {n: [] for n in SCHEMA.names}
    for sid, sourced in zip(
        roster.column("student_id").to_pylist(),
        roster.column("sourced_id").to_pylist(),
        strict=True,
    ):
        if sid in known:
            continue
        identity = wallet.student(str(sourced))
        rows["student_id"].append(sid)
        rows["did"].append(identity.did)
        rows["public_key_multibase"].append(identity.public_key_multibase)
        rows["registered_at"].append(now)
        known.add(sid)
    new = len(rows["student_id"])
    if new:
        registry.append(pa.table(rows, schema=SCHEMA))
    return new, len(known)


def subject_ids(catalog: Catalog, pseudonymizer: Pseudonymizer) -> dict[int, str]:
    """student_id -> subject_id (keyed pseudonym of the student's DID)."""
    registry = load_table_or_none(catalog, *SUBJECTS)
    if registry is None:
        raise SpandaError(
            "bronze.data_subjects does not exist yet: materialize bronze/data_subjects first"
        )
    t = registry.scan(selected_fields=("student_id", "did")).to_arrow()
    return {
        sid: pseudonymizer.subject_id(did)
        for sid, did in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True)
    }


def did_of(catalog: Catalog, student_id: int) -> str:
    registry = load_table_or_none(catalog, *SUBJECTS)
    if registry is None:
        raise SpandaError("bronze.data_subjects does not exist yet")
    t = registry.scan(
        row_filter=eq_filter("student_id", student_id), selected_fields=("did",)
    ).to_arrow()
    if not t.num_rows:
        raise SpandaError(f"student {student_id} has no DID in bronze.data_subjects")
    return str(t.column(0)[0].as_py())
