"""Whether a consent receipt can be relied on: the questions `spanda consent verify` asks.

1. Integrity: signed by the key its issuer names, and unchanged since (`vc.verify`).
2. Issuer: that issuer is the institution, the trust anchor (SPANDA_INSTITUTION_DID).
   Anyone can make a did:key and sign a well-formed receipt with it: integrity
   alone proves nothing about who issued it.
3. Validity period: now lies between `validFrom` and `validUntil` (when given).
4. Subject: `credentialSubject.id` is a registered data subject (bronze.data_subjects).
5. Status: the subject's data was not erased (the erasure register answers at once,
   whether or not the list was republished since), and the receipt's bit in the
   revocation list the institution published (W3C Bitstring Status List) is 0. The
   list must itself pass 1 and 2.

Each answer has its own verdict, which is also the command's exit code. The
lookups (registry, published lists) are passed in, so the rules are tested
without a lakehouse.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from spanda_assets import settings
from spanda_assets.lib.privacy import status, vc


class Verdict(enum.IntEnum):
    """The exit codes of `spanda consent verify` (2 is Click's, for usage and setup errors)."""

    VALID = 0
    TAMPERED = 1
    WRONG_ISSUER = 3
    UNKNOWN_SUBJECT = 4
    REVOKED = 5
    STATUS_UNKNOWN = 6
    NOT_IN_FORCE = 7

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", " ")


@dataclass(frozen=True)
class Finding:
    verdict: Verdict
    reason: str
    issuer: str = ""
    subject: str = ""
    status: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.VALID


def check_receipt(
    document: Any,
    *,
    institution_did: str,
    is_registered: Callable[[str], bool],
    find_list: Callable[[str], Any],
    is_erased: Callable[[str], bool] = lambda _: False,
    now: dt.datetime | None = None,
) -> Finding:
    """Check a receipt against the institution's DID, the subject registry and its status
    list (`find_list(url)`: the list the platform published under `url`, or None)."""
    integrity = vc.verify(document)
    issuer, subject = integrity.issuer, integrity.subject
    if not integrity.ok:
        if integrity.foreign_signer:
            return Finding(Verdict.WRONG_ISSUER, integrity.reason, issuer, subject)
        return Finding(Verdict.TAMPERED, integrity.reason, issuer, subject)
    if issuer != institution_did:
        return Finding(
            Verdict.WRONG_ISSUER,
            f"issued by {issuer}, not by the institution ({institution_did}, "
            f"{settings.ENV_INSTITUTION_DID}): its signature holds, but anyone can make a "
            "did:key and sign with it",
            issuer,
            subject,
        )
    period = _outside_period(document, now or dt.datetime.now(dt.UTC))
    if period:
        return Finding(Verdict.NOT_IN_FORCE, period, issuer, subject)
    if not is_registered(subject):
        return Finding(
            Verdict.UNKNOWN_SUBJECT,
            f"the subject {subject} is not a registered data subject (bronze.data_subjects)",
            issuer,
            subject,
        )
    if is_erased(subject):
        return Finding(
            Verdict.REVOKED,
            "revoked: the student's data was erased (erasure register), so no consent they "
            "gave holds any more",
            issuer,
            subject,
            "erased",
        )
    try:
        url, index = status.read_entry(document)
    except status.StatusError as exc:
        return Finding(Verdict.STATUS_UNKNOWN, str(exc), issuer, subject)
    where = f"status list {url}, index {index}"
    listed = find_list(url)
    if listed is None:
        return Finding(
            Verdict.STATUS_UNKNOWN,
            f"the platform has published no status list {url}: revocation cannot be checked",
            issuer,
            subject,
            where,
        )
    proof = vc.verify_proof(listed, "status list")
    if not proof.ok or proof.issuer != institution_did:
        why = proof.reason if not proof.ok else f"it is issued by {proof.issuer}"
        return Finding(
            Verdict.STATUS_UNKNOWN,
            f"the status list {url} is not the institution's: {why}",
            issuer,
            subject,
            where,
        )
    try:
        revoked = status.is_set(status.read_list(listed, url), index)
    except status.StatusError as exc:
        return Finding(Verdict.STATUS_UNKNOWN, f"{where}: {exc}", issuer, subject, where)
    if revoked:
        return Finding(
            Verdict.REVOKED,
            "revoked by the institution: the consent this receipt states no longer holds (it "
            "was withdrawn after the receipt was issued, or the student's data was erased)",
            issuer,
            subject,
            where,
        )
    return Finding(
        Verdict.VALID,
        "signed by the issuer, content unchanged since signing; the issuer is the "
        "institution, the subject is registered, and the receipt is not revoked",
        issuer,
        subject,
        f"not revoked ({where})",
    )


def _outside_period(document: Any, now: dt.datetime) -> str:
    """Why the receipt is not in force now (empty when it is): before `validFrom` or
    after `validUntil`, both signed with the rest of the receipt."""
    for key, too_early in (("validFrom", True), ("validUntil", False)):
        raw = document.get(key) if isinstance(document, dict) else None
        if raw is None:
            continue
        try:
            when = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            return f"{key} {raw!r} is not an XML Schema dateTime"
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if (now < when) if too_early else (now > when):
            return f"not in force: {key} is {raw}, and it is {now:%Y-%m-%dT%H:%M:%SZ}"
    return ""
