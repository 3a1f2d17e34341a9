"""The registry of data subjects: one did:key per student, in the restricted bronze zone.

bronze.data_subjects holds student_id, DID and public key (never a private
key). Silver never sees DIDs: its subject_id is the keyed pseudonym of the DID.

Where the DIDs come from (`subject_keys`): in production, from the students'
own wallets, as a CSV file of `sourced_id,did` that SPANDA_SUBJECT_DIDS names;
a student missing from it is not registered (and so has no consent the
platform acts on). In the embedded demo, from the demo wallet.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pyarrow as pa

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError, SpandaError
from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.privacy.did import (
    DID_KEY_PREFIX,
    DemoOnlyError,
    DidError,
    Wallet,
    public_key_from_did,
)
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


class SubjectKeys(Protocol):
    """Where students' DIDs come from: a student's DID, or None if they have none yet."""

    def did_for(self, sourced_id: str) -> str | None: ...


class DidDirectory:
    """Students' DIDs as their wallets published them: a CSV file with columns sourced_id,did.

    Only public information: a did:key is the public key itself.
    """

    def __init__(self, dids: dict[str, str]) -> None:
        self.dids = dids

    @classmethod
    def from_file(cls, path: Path) -> DidDirectory:
        where = f"{settings.ENV_SUBJECT_DIDS}={path}"
        if not path.is_file():
            raise ConfigError(f"{where}: no such file")
        dids: dict[str, str] = {}
        owners: dict[str, str] = {}  # did -> sourced_id
        problems: list[str] = []
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not {"sourced_id", "did"} <= set(reader.fieldnames or ()):
                raise ConfigError(f"{where}: the header must name the columns sourced_id and did")
            for row in reader:
                line = reader.line_num
                sourced, did = (row["sourced_id"] or "").strip(), (row["did"] or "").strip()
                if not sourced:
                    problems.append(f"line {line}: no sourced_id")
                    continue
                try:
                    public_key_from_did(did)
                    if "#" in did:
                        raise DidError("a DID, not a DID URL: no '#fragment'")
                except DidError as exc:
                    problems.append(f"line {line}: {exc}")
                    continue
                if dids.setdefault(sourced, did) != did:
                    problems.append(f"line {line}: sourced_id {sourced!r} has two DIDs")
                elif owners.setdefault(did, sourced) != sourced:
                    # one DID, two students: their data would merge under one pseudonym
                    problems.append(
                        f"line {line}: {did} is already the DID of sourced_id {owners[did]!r}"
                    )
        if problems:
            raise ConfigError(f"{where}: " + "; ".join(problems))
        return cls(dids)

    def did_for(self, sourced_id: str) -> str | None:
        return self.dids.get(sourced_id)


def subject_keys() -> SubjectKeys:
    """The students' DIDs: SPANDA_SUBJECT_DIDS if set, else the demo wallet in demo mode.

    Production (no SPANDA_DEMO) without SPANDA_SUBJECT_DIDS is refused: the platform
    would otherwise have to make the students' private keys itself.
    """
    path = os.environ.get(settings.ENV_SUBJECT_DIDS)
    if path:
        return DidDirectory.from_file(Path(path))
    if not settings.demo_mode():
        raise DemoOnlyError(
            f"{settings.ENV_SUBJECT_DIDS} is not set. The platform holds only the data "
            "subjects' public keys: name a CSV file (columns sourced_id,did) of each student's "
            f"{DID_KEY_PREFIX} DID from their own wallet. The embedded demo "
            f"({settings.ENV_DEMO}=1) derives them from a demo wallet instead."
        )
    return Wallet()


def register_subjects(catalog: Catalog, keys: SubjectKeys) -> tuple[int, int, int]:
    """Give every student in bronze.students their DID; returns (new, total, without a DID).

    A registered DID never changes: a student's consent receipts name it.
    """
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
    registered = registry.scan(selected_fields=("student_id", "did")).to_arrow()
    known = set(registered.column("student_id").to_pylist())
    # One DID is one person: a DID already registered for another student is refused, or
    # their rows would merge under one pseudonym and erasing one would erase both.
    owner = dict(
        zip(
            registered.column("did").to_pylist(),
            registered.column("student_id").to_pylist(),
            strict=True,
        )
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows: dict[str, list[object]] = {n: [] for n in SCHEMA.names}
    missing = 0
    for sid, sourced in zip(
        roster.column("student_id").to_pylist(),
        roster.column("sourced_id").to_pylist(),
        strict=True,
    ):
        if sid in known:
            continue
        did = keys.did_for(str(sourced))
        if did is None:
            missing += 1
            continue
        if owner.setdefault(did, sid) != sid:
            raise SpandaError(
                f"student {sid} (sourced_id {sourced!r}) was given {did}, which is already the "
                f"DID of student {owner[did]}: each student needs their own DID; fix "
                f"{settings.ENV_SUBJECT_DIDS} and run again (nothing was registered)"
            )
        rows["student_id"].append(sid)
        rows["did"].append(did)
        rows["public_key_multibase"].append(did[len(DID_KEY_PREFIX) :])
        rows["registered_at"].append(now)
        known.add(sid)
    new = len(rows["student_id"])
    if new:
        registry.append(pa.table(rows, schema=SCHEMA))
    return new, len(known), missing


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


def is_registered(catalog: Catalog, did: str) -> bool:
    """Whether `did` is a registered data subject's DID."""
    registry = load_table_or_none(catalog, *SUBJECTS)
    if registry is None:
        raise SpandaError("bronze.data_subjects does not exist yet")
    rows = registry.scan(row_filter=eq_filter("did", did), selected_fields=("student_id",))
    return rows.to_arrow().num_rows > 0
