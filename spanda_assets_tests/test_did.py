"""did:key against the W3C CCG test vectors, and the errors malformed DIDs raise.

The vectors (spanda_assets_tests/data/did_key/, see the README there) give each
Ed25519 key's seed, DID and DID document. Our DID document uses the `Multikey`
verification-method type of the current spec, the vectors the older
`Ed25519VerificationKey2018` (`publicKeyBase58`) and `JsonWebKey2020`
(`publicKeyJwk`), so the documents are compared on what all of them share: ids,
controller, the key itself, and the verification relationships.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from spanda_assets.lib.privacy.did import (
    DidError,
    did_document,
    did_from_public_key,
    multibase_key,
    public_key_bytes,
    public_key_from_did,
    verification_method,
)

VECTORS_FILE = Path(__file__).parent / "data" / "did_key" / "ed25519-x25519.json"
VECTORS: dict[str, dict[str, Any]] = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))
ED25519_VECTORS = [pytest.param(did, v, id=did[8:20]) for did, v in VECTORS.items()]
A_DID = next(iter(VECTORS))


def _public_key(vector: dict[str, Any]) -> bytes:
    """The raw key as the vector's document states it: base58btc or a JWK's base64url.

    Decoded without our own code, so a fault in it cannot hide here.
    """
    method = vector["didDocument"]["verificationMethod"][0]
    if "publicKeyJwk" in method:
        x = method["publicKeyJwk"]["x"]
        return base64.urlsafe_b64decode(x + "=" * (-len(x) % 4))
    return base58.b58decode(method["publicKeyBase58"])


def _fragment(vector: dict[str, Any]) -> str:
    """The multibase key, which the vector's verification method id has as its fragment."""
    return str(vector["didDocument"]["verificationMethod"][0]["id"]).split("#", 1)[1]


def test_the_vectors_are_all_there() -> None:
    assert len(VECTORS) == 5
    assert all(did.startswith("did:key:z6Mk") for did in VECTORS)


@pytest.mark.parametrize(("did", "vector"), ED25519_VECTORS)
def test_public_key_gives_the_vector_did(did: str, vector: dict[str, Any]) -> None:
    public = _public_key(vector)
    assert len(public) == 32
    assert did_from_public_key(public) == did
    assert multibase_key(public) == _fragment(vector)


@pytest.mark.parametrize(("did", "vector"), ED25519_VECTORS)
def test_seed_gives_the_vector_did(did: str, vector: dict[str, Any]) -> None:
    """The wallet's path: a 32-byte seed -> Ed25519 key -> DID."""
    private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(vector["seed"]))
    assert did_from_public_key(public_key_bytes(private.public_key())) == did


@pytest.mark.parametrize(("did", "vector"), ED25519_VECTORS)
def test_did_resolves_to_the_vector_public_key(did: str, vector: dict[str, Any]) -> None:
    public = public_key_from_did(did)
    assert public.public_bytes_raw() == _public_key(vector)
    assert did_from_public_key(public.public_bytes_raw()) == did
    # a DID URL with a fragment resolves to the same key
    vm = vector["didDocument"]["verificationMethod"][0]["id"]
    assert public_key_from_did(vm).public_bytes_raw() == _public_key(vector)


@pytest.mark.parametrize(("did", "vector"), ED25519_VECTORS)
def test_did_document_matches_the_vector(did: str, vector: dict[str, Any]) -> None:
    expected = vector["didDocument"]
    expected_vm = expected["verificationMethod"][0]
    doc = did_document(did)
    assert doc["id"] == expected["id"] == did
    methods = doc["verificationMethod"]
    assert isinstance(methods, list)
    (vm,) = methods
    assert vm["id"] == expected_vm["id"] == verification_method(did)
    assert vm["controller"] == expected_vm["controller"]
    assert vm["type"] == "Multikey"
    assert vm["publicKeyMultibase"] == _fragment(vector)
    multibase = vm["publicKeyMultibase"]
    assert multibase.startswith("z")
    assert base58.b58decode(multibase[1:]) == b"\xed\x01" + _public_key(vector)
    assert doc["authentication"] == expected["authentication"]
    assert doc["assertionMethod"] == expected["assertionMethod"]


def _did_of(raw: bytes) -> str:
    return "did:key:z" + base58.b58encode(raw).decode("ascii")


# The X25519 key-agreement key of the first vector: a real did:key, but not Ed25519.
X25519_DID = "did:key:" + VECTORS[A_DID]["keyAgreementKeyPair"]["id"].removeprefix("#")
KEY = _public_key(VECTORS[A_DID])


@pytest.mark.parametrize(
    ("did", "message"),
    [
        ("did:web:example.edu", r"is not a did:key: it must start with 'did:key:'"),
        ("", r"is not a did:key"),
        ("did:key:", r"must be multibase base58btc, starting with 'z'"),
        (A_DID.replace(":z", ":"), r"must be multibase base58btc, starting with 'z'"),
        (A_DID.replace(":z", ":u"), r"must be multibase base58btc"),
        (A_DID[:-1] + "0", r"Invalid character '0'"),
        (A_DID[:12] + "O" + A_DID[13:], r"Invalid character 'O'"),
        (A_DID[:12] + "l" + A_DID[13:], r"Invalid character 'l'"),
        ("did:key:z0OIl", r"not base58btc"),
        (A_DID + "é", r"'é' is not a base58btc character"),
        (A_DID + "\n", r"must not end with whitespace"),
        (" " + A_DID, r"is not a did:key"),
        (X25519_DID, r"multicodec prefix is 0xec01, not 0xed01 \(ed25519-pub\)"),
        (_did_of(b"\xe7\x01" + bytes(33)), r"multicodec prefix is 0xe701"),
        (_did_of(b"\xed"), r"multicodec prefix is 0xed, not 0xed01"),
        ("did:key:z", r"multicodec prefix is 0x, not 0xed01"),
        (_did_of(b"\xed\x01" + KEY[:31]), r"has 32 bytes, this one has 31"),
        (_did_of(b"\xed\x01" + KEY + b"\0"), r"has 32 bytes, this one has 33"),
        (_did_of(b"\xed\x01"), r"has 32 bytes, this one has 0"),
    ],
)
def test_malformed_did_is_explained(did: str, message: str) -> None:
    with pytest.raises(DidError, match=message) as info:
        public_key_from_did(did)
    assert repr(did) in str(info.value)  # the message names the DID it rejects
    with pytest.raises(DidError):
        did_document(did)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_public_key_of_the_wrong_size_is_refused(size: int) -> None:
    with pytest.raises(DidError, match=f"has 32 bytes, got {size}"):
        did_from_public_key(bytes(size))
