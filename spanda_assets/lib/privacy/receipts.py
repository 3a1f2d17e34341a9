"""Issued consent receipts, and the revocation lists the institution publishes for them.

`bronze.consent_receipts` (restricted: it ties a receipt to a student) records
each receipt `spanda consent issue` signs: its id, the status list that holds
its bit and its random index there, and the student, purpose and consent event
it states.

`silver.consent_status_lists` holds one signed Bitstring Status List credential
per list: what `spanda consent verify` checks a receipt's status against. It
holds bits only, no row of any subject. `publish_status_lists` rebuilds every
list from the truth, on every consent change (the `silver/consent_status_lists`
asset), after each issue and after each erasure: a receipt of given consent is
revoked once a later valid event for the same student and purpose is anything
but `given` (a withdrawal), once the event it states is no longer on record,
or once the student is erased. A bit, once set, stays set. When the list's URL
is a `file:` URL (the embedded default under SPANDA_HOME), the signed list is
also written there.

Both tables are written to main directly, not through write-audit-publish: a
revocation held back for an audit would keep a withdrawn consent looking valid.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.privacy import status, vc
from spanda_assets.lib.privacy.consent import ACTIVE, load_consent
from spanda_assets.lib.privacy.erasure import erased_students
from spanda_assets.lib.writes import NO_RETRY, eq_filter, replace_all

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

    from spanda_assets.lib.privacy.institution import Signer

REGISTRY = ("bronze", "consent_receipts")
REGISTRY_SCHEMA = pa.schema(
    [
        pa.field("receipt_id", pa.string(), nullable=False),
        pa.field("status_list", pa.string(), nullable=False),
        pa.field("status_index", pa.int64(), nullable=False),
        pa.field("student_id", pa.int64(), nullable=False),
        pa.field("purpose", pa.string(), nullable=False),
        pa.field("consent_event_id", pa.int64(), nullable=False),
        pa.field("state", pa.string(), nullable=False),
        pa.field("issued_at", pa.timestamp("us"), nullable=False),
    ]
)
LISTS = ("silver", "consent_status_lists")
LISTS_SCHEMA = pa.schema(
    [
        pa.field("status_list", pa.string(), nullable=False),
        pa.field("status_purpose", pa.string(), nullable=False),
        pa.field("size_bits", pa.int64(), nullable=False),
        pa.field("revoked", pa.int64(), nullable=False),
        pa.field("credential", pa.string(), nullable=False),
        pa.field("published_at", pa.timestamp("us"), nullable=False),
    ]
)
ATTEMPTS = 5  # commits refused because another writer got there first, tried again


def _free_index(used: set[int]) -> int:
    """A random unused index, in a range kept at most half full so a draw rarely repeats."""
    capacity = status.MIN_BITS * (1 + 2 * len(used) // status.MIN_BITS)
    while (index := secrets.randbelow(capacity)) in used:
        pass
    return index


def register_receipt(
    catalog: Catalog,
    *,
    receipt_id: str,
    list_url: str,
    student_id: int,
    purpose: str,
    consent_event_id: int,
    state: str,
) -> int:
    """Record a receipt about to be issued; its index in the status list at `list_url`."""
    ensure_namespace(catalog, "bronze")
    table = catalog.create_table_if_not_exists(
        REGISTRY, schema=REGISTRY_SCHEMA, properties={NO_RETRY: "0"}
    )
    for _ in range(ATTEMPTS):
        used = table.scan(
            row_filter=eq_filter("status_list", list_url), selected_fields=("status_index",)
        )
        index = _free_index(set(used.to_arrow().column(0).to_pylist()))
        row = {
            "receipt_id": [receipt_id],
            "status_list": [list_url],
            "status_index": [index],
            "student_id": [student_id],
            "purpose": [purpose],
            "consent_event_id": [consent_event_id],
            "state": [state],
            "issued_at": [dt.datetime.now(dt.UTC).replace(tzinfo=None)],
        }
        try:
            # the commit is refused if another issue committed since the scan: draw again
            table.append(pa.table(row, schema=REGISTRY_SCHEMA))
            return index
        except CommitFailedException:
            table = catalog.load_table(REGISTRY)
    raise SpandaError("could not record the receipt: the register kept changing; try again")


def issued(catalog: Catalog) -> pa.Table | None:
    """Every issued receipt, or None if none ever was."""
    table = load_table_or_none(catalog, *REGISTRY)
    if table is None or table.current_snapshot() is None:
        return None
    return table.scan().to_arrow()


def revoked(catalog: Catalog, receipts: pa.Table) -> dict[str, set[int]]:
    """Per status list, the indexes of receipts whose stated consent no longer holds."""
    valid, _, _ = load_consent(catalog)
    erased = erased_students(catalog)
    history: dict[tuple[int, str], dict[int, tuple[Any, str]]] = defaultdict(dict)
    for e in valid.select(
        ["consent_event_id", "student_id", "purpose", "state", "recorded_at"]
    ).to_pylist():
        order = (e["recorded_at"], e["consent_event_id"])
        history[(e["student_id"], e["purpose"])][e["consent_event_id"]] = (order, e["state"])
    out: dict[str, set[int]] = defaultdict(set)
    for r in receipts.to_pylist():
        bits = out[r["status_list"]]  # every list is published, revoked bits or not
        if r["state"] != ACTIVE:
            continue  # a receipt of a withdrawal stays true
        events = history.get((r["student_id"], r["purpose"]), {})
        stated = events.get(r["consent_event_id"])
        if (
            r["student_id"] in erased
            or stated is None
            or any(order > stated[0] and state != ACTIVE for order, state in events.values())
        ):
            bits.add(r["status_index"])
    return dict(out)


def _previous(table: Table) -> dict[str, bytes]:
    """The bits each list had: a revocation is never undone, even if its cause is gone."""
    out: dict[str, bytes] = {}
    for row in table.scan(selected_fields=("status_list", "credential")).to_arrow().to_pylist():
        with contextlib.suppress(ValueError, status.StatusError):
            out[row["status_list"]] = status.read_list(
                json.loads(row["credential"]), row["status_list"]
            )
    return out


def publish_status_lists(catalog: Catalog, signer: Signer) -> dict[str, int]:
    """Rebuild, sign and publish every status list; revoked receipts per list."""
    if issued(catalog) is None:
        return {}
    ensure_namespace(catalog, "silver")
    table = catalog.create_table_if_not_exists(
        LISTS, schema=LISTS_SCHEMA, properties={NO_RETRY: "0"}
    )
    for _ in range(ATTEMPTS):
        receipts = issued(catalog)
        if receipts is None:  # never: receipts are not removed from the register
            return {}
        now = dt.datetime.now(dt.UTC)
        by_list: dict[str, list[int]] = defaultdict(list)
        for url, index in zip(
            receipts.column("status_list").to_pylist(),
            receipts.column("status_index").to_pylist(),
            strict=True,
        ):
            by_list[url].append(index)
        revoked_now = revoked(catalog, receipts)
        previous = _previous(table)
        rows: dict[str, list[Any]] = {n: [] for n in LISTS_SCHEMA.names}
        signed: dict[str, dict[str, Any]] = {}
        for url in sorted(by_list):
            before = previous.get(url, b"")
            size = max(status.size_for(by_list[url]), len(before) * 8)
            bits = status.bitstring(size, revoked_now.get(url, set()) | status.set_bits(before))
            credential = vc.sign(
                status.list_credential(url, signer.did, bits, now), signer.key, signer.did
            )
            signed[url] = credential
            rows["status_list"].append(url)
            rows["status_purpose"].append(status.PURPOSE)
            rows["size_bits"].append(size)
            rows["revoked"].append(len(status.set_bits(bits)))
            rows["credential"].append(json.dumps(credential, sort_keys=True))
            rows["published_at"].append(now.replace(tzinfo=None))
        try:
            # refused if another publish committed since `_previous` read the table: rebuild
            with table.transaction() as tx:
                replace_all(tx, table, pa.table(rows, schema=LISTS_SCHEMA))
            break
        except CommitFailedException:
            table = catalog.load_table(LISTS)
    else:
        raise SpandaError("could not publish the status lists: they kept changing; try again")
    for url, credential in signed.items():
        _write_if_local(url, credential)
    return dict(zip(rows["status_list"], rows["revoked"], strict=True))


def _write_if_local(url: str, credential: dict[str, Any]) -> None:
    """A `file:` list URL is published by writing the file: whole or not at all."""
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return
    path = Path(url2pathname(parsed.path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(credential, f, indent=2, sort_keys=True)
            f.write("\n")
        os.chmod(tmp, 0o644)  # a public document
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def status_list(catalog: Catalog, url: str) -> dict[str, Any] | None:
    """The signed status list the platform published under `url`, or None."""
    table = load_table_or_none(catalog, *LISTS)
    if table is None:
        return None
    rows = table.scan(row_filter=eq_filter("status_list", url), selected_fields=("credential",))
    found = rows.to_arrow().column(0).to_pylist()
    return json.loads(found[0]) if found else None
