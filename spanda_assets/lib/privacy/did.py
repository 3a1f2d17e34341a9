"""Decentralized identifiers for data subjects: did:key with Ed25519 keys.

`did:key:z` + base58btc(0xed 0x01 + 32-byte public key), so every Ed25519 DID
starts with `did:key:z6Mk`. The DID *is* the public key: resolving it needs no
registry and no network.

The platform stores only DIDs and public keys. Private keys belong to the data
subjects' wallets. For the embedded demo only (SPANDA_DEMO=1), a local wallet
under SPANDA_HOME/wallet derives each student's key from a master secret (HMAC),
so no per-student key files are needed and the same student always gets the
same DID. Outside demo mode the wallet refuses to open: whoever can derive a
subject's private key can sign in the subject's name.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError

# The multicodec code of an Ed25519 public key ("ed25519-pub", 0xed) as the unsigned
# varint that prefixes the key bytes. It is a fixed entry of the multicodec table, and
# two constant bytes do not justify the multiformats package and its dependencies.
ED25519_MULTICODEC = b"\xed\x01"
ED25519_KEY_BYTES = 32
BASE58BTC = "z"  # the multibase prefix of base58btc
DID_KEY_PREFIX = "did:key:"


class DidError(ValueError):
    """A DID or multibase value that is not what it claims to be."""


class DemoOnlyError(ConfigError):
    """A demo-only feature was asked for outside demo mode."""


def b58encode(data: bytes) -> str:
    """base58btc (the Bitcoin alphabet), without the multibase prefix."""
    return base58.b58encode(data).decode("ascii")


def b58decode(text: str) -> bytes:
    """Inverse of `b58encode`; anything outside the alphabet raises `DidError`."""
    if not text.isascii():
        bad = next(c for c in text if not c.isascii())
        raise DidError(f"{bad!r} is not a base58btc character")
    if text != text.rstrip():
        # the library forgives trailing whitespace; a DID or proof value must not carry any
        raise DidError("base58btc text must not end with whitespace")
    try:
        return base58.b58decode(text)
    except ValueError as exc:  # "Invalid character '0'"
        raise DidError(f"not base58btc: {exc}") from None


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def multibase_key(public: bytes) -> str:
    """The `z6Mk...` multibase form of an Ed25519 public key."""
    if len(public) != ED25519_KEY_BYTES:
        raise DidError(f"an Ed25519 public key has {ED25519_KEY_BYTES} bytes, got {len(public)}")
    return BASE58BTC + b58encode(ED25519_MULTICODEC + public)


def did_from_public_key(public: bytes) -> str:
    return DID_KEY_PREFIX + multibase_key(public)


def public_key_from_did(did: str) -> Ed25519PublicKey:
    """Resolve a did:key (optionally with a #fragment) to its Ed25519 public key."""
    base = did.split("#", 1)[0]
    if not base.startswith(DID_KEY_PREFIX):
        raise DidError(f"{did!r} is not a did:key: it must start with {DID_KEY_PREFIX!r}")
    multibase = base[len(DID_KEY_PREFIX) :]
    if not multibase.startswith(BASE58BTC):
        raise DidError(
            f"{did!r}: the key after {DID_KEY_PREFIX!r} must be multibase base58btc, "
            f"starting with {BASE58BTC!r}"
        )
    try:
        raw = b58decode(multibase[len(BASE58BTC) :])
    except DidError as exc:
        raise DidError(f"{did!r}: {exc}") from None
    if raw[: len(ED25519_MULTICODEC)] != ED25519_MULTICODEC:
        raise DidError(
            f"{did!r} does not hold an Ed25519 public key: its multicodec prefix is "
            f"0x{raw[:2].hex()}, not 0x{ED25519_MULTICODEC.hex()} (ed25519-pub); "
            "only Ed25519 did:keys are supported"
        )
    key = raw[len(ED25519_MULTICODEC) :]
    if len(key) != ED25519_KEY_BYTES:
        raise DidError(
            f"{did!r}: an Ed25519 public key has {ED25519_KEY_BYTES} bytes, this one has {len(key)}"
        )
    return Ed25519PublicKey.from_public_bytes(key)


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
    """The demo wallet: keys derived from one master secret under SPANDA_HOME/wallet.

    Demo only. In production the students' keys are made in their own wallets and
    the platform is given their DIDs (SPANDA_SUBJECT_DIDS), never a private key.
    """

    def __init__(self, root: Path | None = None) -> None:
        if not settings.demo_mode():
            raise DemoOnlyError(
                "the demo wallet derives every data subject's private key, so it runs only in "
                f"the embedded demo ({settings.ENV_DEMO}=1). In production the platform holds "
                "public keys only: list each student's did:key, made in their own wallet, in "
                f"the CSV file (sourced_id,did) that {settings.ENV_SUBJECT_DIDS} names"
            )
        self.root = root or settings.spanda_home() / "wallet"
        self._master = bytes.fromhex(settings.local_secret(self.root / "master.key"))

    def __repr__(self) -> str:
        return f"Wallet(root={self.root}, master=***)"

    def identity(self, label: str) -> Identity:
        seed = hmac.new(self._master, label.encode(), hashlib.sha256).digest()
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = public_key_bytes(private.public_key())
        return Identity(did_from_public_key(public), multibase_key(public), private)

    def student(self, sourced_id: str) -> Identity:
        return self.identity(f"student:{sourced_id}")

    def did_for(self, sourced_id: str) -> str | None:
        """The student's DID (the registry's view of a wallet: never the private key)."""
        return self.student(sourced_id).did
