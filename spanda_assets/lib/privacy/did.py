"""Decentralized identifiers for data subjects: did:key with Ed25519 keys.

`did:key:z` + base58btc(0xed 0x01 + 32-byte public key), so every Ed25519 DID
starts with `did:key:z6Mk`. The DID *is* the public key: resolving it needs no
registry and no network.

The platform stores only DIDs and public keys. Private keys belong to the data
subjects' wallets; for the demo, a local wallet under SPANDA_HOME/wallet derives
each student's key from a master secret (HMAC), so no per-student key files
are needed and the same student always gets the same DID.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spanda_assets import settings

_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(_ALPHABET)}
ED25519_MULTICODEC = b"\xed\x01"
DID_KEY_PREFIX = "did:key:"


class DidError(ValueError):
    """A DID or multibase value that is not what it claims to be."""


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(_ALPHABET[r])
    pad = len(data) - len(data.lstrip(b"\0"))
    return "1" * pad + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        if c not in _INDEX:
            raise DidError(f"{c!r} is not a base58btc character")
        n = n * 58 + _INDEX[c]
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    pad = len(text) - len(text.lstrip("1"))
    return b"\0" * pad + body


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def multibase_key(public: bytes) -> str:
    """The `z6Mk...` multibase form of an Ed25519 public key."""
    if len(public) != 32:
        raise DidError("an Ed25519 public key has 32 bytes")
    return "z" + b58encode(ED25519_MULTICODEC + public)


def did_from_public_key(public: bytes) -> str:
    return DID_KEY_PREFIX + multibase_key(public)


def public_key_from_did(did: str) -> Ed25519PublicKey:
    """Resolve a did:key (optionally with a #fragment) to its Ed25519 public key."""
    base = did.split("#", 1)[0]
    if not base.startswith(DID_KEY_PREFIX + "z"):
        raise DidError(f"{did!r} is not a did:key with a base58btc multibase key")
    raw = b58decode(base[len(DID_KEY_PREFIX) + 1 :])
    if raw[:2] != ED25519_MULTICODEC or len(raw) != 34:
        raise DidError(f"{did!r} does not hold an Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw[2:])


def verification_method(did: str) -> str:
    """did:key verification methods are the DID plus its own key as fragment."""
    return f"{did}#{did[len(DID_KEY_PREFIX) :]}"


def did_document(did: str) -> dict[str, object]:
    """The DID document a did:key resolves to (derived, never stored)."""
    public_key_from_did(did)  # validates
    vm = verification_method(did)
    return {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1"],
        "id": did,
        "verificationMethod": [
            {
                "id": vm,
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": did[len(DID_KEY_PREFIX) :],
            }
        ],
        "authentication": [vm],
        "assertionMethod": [vm],
    }


@dataclass(frozen=True)
class Identity:
    did: str
    public_key_multibase: str
    private_key: Ed25519PrivateKey


class Wallet:
    """The demo wallet: keys derived from one master secret under SPANDA_HOME/wallet."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or settings.spanda_home() / "wallet"
        self._master = bytes.fromhex(settings.local_secret(self.root / "master.key"))

    def identity(self, label: str) -> Identity:
        seed = hmac.new(self._master, label.encode(), hashlib.sha256).digest()
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = public_key_bytes(private.public_key())
        return Identity(did_from_public_key(public), multibase_key(public), private)

    def student(self, sourced_id: str) -> Identity:
        return self.identity(f"student:{sourced_id}")

    def controller(self) -> Identity:
        """The institution's own identity, which issues consent receipts."""
        return self.identity("controller")
