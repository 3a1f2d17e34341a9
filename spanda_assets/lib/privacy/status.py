"""W3C Bitstring Status List v1.0 for consent receipts: the entry and the list credential.

A receipt's `credentialStatus` is a `BitstringStatusListEntry`: its
`statusPurpose` ("revocation"), its `statusListIndex` (a base-10 string) and the
URL of the `BitstringStatusListCredential` that holds its bit
(`statusListCredential`). The institution signs and publishes that list
credential; its `credentialSubject.encodedList` is the bitstring, GZIP-compressed,
base64url-encoded without padding and prefixed with the multibase code `u`.

Bit i is the (i mod 8)-th most significant bit of byte i // 8; 1 means revoked,
and revocation is never undone. A list holds at least 131,072 entries (16 KiB
before compression), and receipts get random indexes: a list tells a reader
nothing about which receipt, or how recent a receipt, a bit belongs to.

Pure functions: no storage, no network.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import re
import zlib
from collections.abc import Iterable
from typing import Any

from spanda_assets.lib.privacy.vc import VC_CONTEXT

MIN_BITS = 131_072  # 16 KiB: the specification's minimum, for herd privacy
MAX_BYTES = 16 * 1024 * 1024  # a published list larger than this is refused, not inflated
PURPOSE = "revocation"
ENTRY_TYPE = "BitstringStatusListEntry"
LIST_TYPE = "BitstringStatusList"
LIST_CREDENTIAL_TYPE = "BitstringStatusListCredential"
MULTIBASE_BASE64URL = "u"
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class StatusError(ValueError):
    """A status entry or status list that does not follow the specification."""


def size_for(indexes: Iterable[int]) -> int:
    """Bits a list needs for `indexes`: a multiple of the minimum, at least the minimum."""
    top = max(indexes, default=-1) + 1
    return max(1, -(-top // MIN_BITS)) * MIN_BITS


def bitstring(size_bits: int, revoked: Iterable[int]) -> bytes:
    if size_bits < MIN_BITS or size_bits % 8:
        raise StatusError(f"a status list holds a multiple of 8 and at least {MIN_BITS} bits")
    bits = bytearray(size_bits // 8)
    for i in revoked:
        if not 0 <= i < size_bits:
            raise StatusError(f"index {i} is outside a list of {size_bits} entries")
        bits[i // 8] |= 0x80 >> (i % 8)
    return bytes(bits)


def set_bits(bits: bytes) -> set[int]:
    """The indexes whose bit is 1."""
    return {
        i * 8 + j for i, byte in enumerate(bits) if byte for j in range(8) if byte & (0x80 >> j)
    }


def is_set(bits: bytes, index: int) -> bool:
    if not 0 <= index < len(bits) * 8:
        raise StatusError(f"statusListIndex {index} is outside the list ({len(bits) * 8} entries)")
    return bool(bits[index // 8] & (0x80 >> (index % 8)))


def encode(bits: bytes) -> str:
    """The `encodedList` value: multibase base64url (no padding) of the GZIP-compressed bits."""
    packed = gzip.compress(bits, mtime=0)  # mtime 0: the same bits give the same text
    return MULTIBASE_BASE64URL + base64.urlsafe_b64encode(packed).decode("ascii").rstrip("=")


def decode(encoded: Any) -> bytes:
    """Inverse of `encode`, refusing anything the specification does not allow."""
    if not isinstance(encoded, str) or not encoded.startswith(MULTIBASE_BASE64URL):
        raise StatusError("encodedList must be multibase base64url: a string starting with 'u'")
    text = encoded[1:]
    if not _BASE64URL.fullmatch(text):
        raise StatusError("encodedList holds characters outside base64url (no padding)")
    try:
        packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # 16+: a GZIP container
        bits = inflater.decompress(packed, MAX_BYTES + 1)
    except (ValueError, zlib.error) as exc:
        raise StatusError(f"encodedList is not GZIP-compressed base64url: {exc}") from None
    if len(bits) > MAX_BYTES or not inflater.eof:
        raise StatusError(f"encodedList is larger than {MAX_BYTES} bytes uncompressed, or cut off")
    if len(bits) * 8 < MIN_BITS:
        raise StatusError(
            f"the list holds {len(bits) * 8} entries; the specification's minimum is {MIN_BITS}"
        )
    return bits


def entry(list_url: str, index: int) -> dict[str, str]:
    """A receipt's `credentialStatus`."""
    return {
        "id": f"{list_url}#{index}",
        "type": ENTRY_TYPE,
        "statusPurpose": PURPOSE,
        "statusListIndex": str(index),
        "statusListCredential": list_url,
    }


def read_entry(credential: dict[str, Any]) -> tuple[str, int]:
    """(list URL, index) of a credential's revocation entry."""
    status = credential.get("credentialStatus")
    entries = status if isinstance(status, list) else [status] if status is not None else []
    ours = [
        e
        for e in entries
        if isinstance(e, dict) and e.get("type") == ENTRY_TYPE and e.get("statusPurpose") == PURPOSE
    ]
    if not ours:
        raise StatusError(
            f"no credentialStatus of type {ENTRY_TYPE} with statusPurpose {PURPOSE!r}: "
            "whether the receipt was revoked cannot be checked"
        )
    if len(ours) > 1:
        raise StatusError(f"more than one {PURPOSE} entry in credentialStatus")
    (found,) = ours
    index, url = found.get("statusListIndex"), found.get("statusListCredential")
    if not isinstance(index, str) or not index.isascii() or not index.isdigit():
        raise StatusError("statusListIndex must be a whole number written as a base-10 string")
    if not isinstance(url, str) or ":" not in url:
        raise StatusError("statusListCredential must be the URL of the status list")
    return url, int(index)


def list_credential(
    list_url: str, issuer_did: str, bits: bytes, valid_from: dt.datetime
) -> dict[str, Any]:
    """An unsigned BitstringStatusListCredential for `bits`."""
    return {
        "@context": [VC_CONTEXT],
        "id": list_url,
        "type": ["VerifiableCredential", LIST_CREDENTIAL_TYPE],
        "issuer": issuer_did,
        "validFrom": valid_from.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "credentialSubject": {
            "id": f"{list_url}#list",
            "type": LIST_TYPE,
            "statusPurpose": PURPOSE,
            "encodedList": encode(bits),
        },
    }


def read_list(credential: Any, list_url: str) -> bytes:
    """The bits of a (signature-checked) status list credential that claims to be `list_url`."""
    if not isinstance(credential, dict):
        raise StatusError("the status list is not a JSON object")
    types = credential.get("type") or []
    if LIST_CREDENTIAL_TYPE not in types:
        raise StatusError(f"the status list is not a {LIST_CREDENTIAL_TYPE}")
    if credential.get("id") != list_url:
        raise StatusError(f"the status list's id is {credential.get('id')!r}, not {list_url!r}")
    subject = credential.get("credentialSubject")
    if not isinstance(subject, dict) or subject.get("type") != LIST_TYPE:
        raise StatusError(f"the status list's credentialSubject is not a {LIST_TYPE}")
    if subject.get("statusPurpose") != PURPOSE:
        raise StatusError(
            f"the status list's statusPurpose is {subject.get('statusPurpose')!r}, not {PURPOSE!r}"
        )
    return decode(subject.get("encodedList"))
