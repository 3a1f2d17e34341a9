"""Consent receipts as W3C Verifiable Credentials with the eddsa-jcs-2022 cryptosuite.

Signing (Data Integrity, eddsa-jcs-2022): the proof options (with the
document's @context) and the credential without its proof are each
canonicalized with JCS (RFC 8785) and hashed with SHA-256; the Ed25519
signature covers proof hash || document hash. No JSON-LD context is fetched.

`verify` checks integrity only: that the receipt was signed by the key its
issuer names and not changed since. Whether that issuer is to be trusted, the
subject is registered and the receipt is not revoked is `lib/privacy/trust`'s
question. Both say why a receipt fails, in words a person can act on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spanda_assets.lib.privacy.did import (
    DidError,
    b58decode,
    b58encode,
    public_key_from_did,
    verification_method,
)

VC_CONTEXT = "https://www.w3.org/ns/credentials/v2"
CRYPTOSUITE = "eddsa-jcs-2022"


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str
    issuer: str = ""
    subject: str = ""
    # the proof was made with a key that is not the issuer's own (a forgery, not damage)
    foreign_signer: bool = False


def _hash_data(document: dict[str, Any], proof_options: dict[str, Any]) -> bytes:
    config = {**proof_options, "@context": document.get("@context")}
    unsigned = {k: v for k, v in document.items() if k != "proof"}
    return (
        hashlib.sha256(rfc8785.dumps(config)).digest()
        + hashlib.sha256(rfc8785.dumps(unsigned)).digest()
    )


def consent_receipt(
    *,
    issuer_did: str,
    subject_did: str,
    record: dict[str, Any],
    valid_from: dt.datetime,
    credential_id: str | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An unsigned VC 2.0 credential stating one consent record about `subject_did`,
    with its revocation entry (`credentialStatus`) when `status` is given."""
    document: dict[str, Any] = {
        "@context": [VC_CONTEXT],
        "id": credential_id or new_credential_id(),
        "type": ["VerifiableCredential", "ConsentReceipt"],
        "issuer": issuer_did,
        "validFrom": valid_from.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "credentialSubject": {"id": subject_did, "consentRecord": record},
    }
    if status is not None:
        document["credentialStatus"] = status
    return document


def new_credential_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def sign(document: dict[str, Any], key: Ed25519PrivateKey, signer_did: str) -> dict[str, Any]:
    options = {
        "type": "DataIntegrityProof",
        "cryptosuite": CRYPTOSUITE,
        "created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "verificationMethod": verification_method(signer_did),
        "proofPurpose": "assertionMethod",
    }
    signature = key.sign(_hash_data(document, options))
    return {**document, "proof": {**options, "proofValue": "z" + b58encode(signature)}}


def verify_proof(document: Any, what: str = "credential") -> Verification:
    """Check that a credential was signed by the key its issuer names and not changed since."""
    if not isinstance(document, dict):
        return Verification(False, "not a JSON object")
    proof = document.get("proof")
    if not isinstance(proof, dict):
        return Verification(False, f"no 'proof': the {what} was never signed")
    if proof.get("type") != "DataIntegrityProof" or proof.get("cryptosuite") != CRYPTOSUITE:
        return Verification(
            False,
            f"proof is {proof.get('type')}/{proof.get('cryptosuite')}; expected "
            f"DataIntegrityProof/{CRYPTOSUITE}",
        )
    if proof.get("proofPurpose") != "assertionMethod":
        return Verification(False, "proofPurpose must be assertionMethod")
    issuer = document.get("issuer")
    issuer_did = issuer.get("id") if isinstance(issuer, dict) else issuer
    claims = document.get("credentialSubject")
    subject = str(claims.get("id", "")) if isinstance(claims, dict) else ""
    vm = str(proof.get("verificationMethod", ""))
    if not isinstance(issuer_did, str) or vm.split("#", 1)[0] != issuer_did:
        return Verification(
            False,
            f"signed with {vm.split('#', 1)[0] or 'no key'}, which is not the issuer "
            f"{issuer_did}: a {what} must be signed by its issuer",
            str(issuer_did),
            subject,
            foreign_signer=True,
        )
    value = str(proof.get("proofValue", ""))
    if not value.startswith("z"):
        return Verification(False, "proofValue must be multibase base58btc ('z...')")
    try:
        public = public_key_from_did(vm)
        signature = b58decode(value[1:])
    except DidError as exc:
        return Verification(False, f"cannot read the signing key or signature: {exc}")
    options = {k: v for k, v in proof.items() if k != "proofValue"}
    try:
        public.verify(signature, _hash_data(document, options))
    except (InvalidSignature, rfc8785.CanonicalizationError):
        return Verification(
            False,
            f"signature does not match the content: the {what} was changed after it was "
            "signed, or signed with another key than the issuer's",
            issuer_did,
            subject,
        )
    return Verification(
        True, "signed by the issuer, content unchanged since signing", issuer_did, subject
    )


def verify(document: Any) -> Verification:
    """Check a signed consent receipt's integrity; say why it fails."""
    result = verify_proof(document, "receipt")
    if result.ok and not result.subject.startswith("did:key:z6Mk"):
        return Verification(
            False, "credentialSubject.id must be the student's did:key", result.issuer
        )
    return result
