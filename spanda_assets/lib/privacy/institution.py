"""The institution's identity: the key that signs consent receipts and status lists, and the
DID that verifiers trust (the trust anchor).

The signing key is a secret, looked up in this order:

1. SPANDA_INSTITUTION_KEY: the key itself, from the secret store;
2. SPANDA_INSTITUTION_KEY_FILE: a file holding it (a mounted secret);
3. a SPANDA_HOME that `spanda demo` set up: its demo key, with a warning (as for the
   pseudonym key, so a daemon started later on the same home keeps its issuer);
4. demo mode (SPANDA_DEMO=1): a key generated under SPANDA_HOME/secrets.

Anything else is refused. A key is 64 hex characters (the 32-byte Ed25519 seed,
what `spanda consent keygen` writes) or an Ed25519 private key in PEM (PKCS #8,
`openssl genpkey -algorithm ed25519`). The key is never logged, printed or put in
an error message.

The trust anchor is SPANDA_INSTITUTION_DID, or else the DID of the signing key:
a verifier needs only the DID, never the key.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError, MissingSecretError
from spanda_assets.lib.privacy.did import (
    DID_KEY_PREFIX,
    DidError,
    did_from_public_key,
    public_key_bytes,
    public_key_from_did,
)

log = logging.getLogger(__name__)
SEED_HEX_CHARS = 64


@dataclass(frozen=True)
class Signer:
    """The institution's DID and private key. Its repr never shows the key."""

    did: str
    key: Ed25519PrivateKey = field(repr=False)


def demo_key_path() -> Path:
    return settings.spanda_home() / "secrets" / "institution.key"


def parse_key(text: str, where: str) -> Ed25519PrivateKey:
    """A key from its text (hex seed or PEM); errors say `where`, never the text."""
    raw = text.strip()
    if raw.startswith("-----BEGIN"):
        try:
            key = load_pem_private_key(raw.encode("ascii"), password=None)
        except (ValueError, TypeError, UnicodeEncodeError):
            raise ConfigError(f"{where} is not an unencrypted PEM private key (PKCS #8)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{where} holds a {type(key).__name__}, not an Ed25519 key")
        return key
    if len(raw) != SEED_HEX_CHARS or not all(c in "0123456789abcdefABCDEF" for c in raw):
        raise ConfigError(
            f"{where} must be an Ed25519 key: {SEED_HEX_CHARS} hex characters (the 32-byte "
            "seed, as `spanda consent keygen` writes it) or a PEM private key"
        )
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(raw))


def _signer(key: Ed25519PrivateKey) -> Signer:
    return Signer(did_from_public_key(public_key_bytes(key.public_key())), key)


def load_signer() -> Signer:
    """The institution's signing key (see the module docstring for where it comes from)."""
    if raw := os.environ.get(settings.ENV_INSTITUTION_KEY, "").strip():
        signer = _signer(parse_key(raw, settings.ENV_INSTITUTION_KEY))
    elif path := os.environ.get(settings.ENV_INSTITUTION_KEY_FILE, "").strip():
        where = f"{settings.ENV_INSTITUTION_KEY_FILE}={path}"
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise ConfigError(f"{where}: cannot read the key file ({reason})") from None
        signer = _signer(parse_key(text, where))
    elif settings.demo_mode():
        # Only in demo mode: outside it, a key file lying in SPANDA_HOME would let whoever
        # can write there choose the trust anchor.
        signer = _signer(parse_key(settings.local_secret(demo_key_path()), str(demo_key_path())))
    else:
        raise MissingSecretError(
            f"{settings.ENV_INSTITUTION_KEY} (or {settings.ENV_INSTITUTION_KEY_FILE}) is not set. "
            "Consent receipts and the revocation list are signed with the institution's Ed25519 "
            "key: create one with `spanda consent keygen --out FILE`, keep it in your secret "
            f"store, and give it to the platform. The embedded demo ({settings.ENV_DEMO}=1) "
            "generates its own under SPANDA_HOME/secrets."
        )
    configured = configured_did()
    if configured is not None and configured != signer.did:
        raise ConfigError(
            f"the institution key is not the key of {settings.ENV_INSTITUTION_DID}={configured} "
            f"(it is {signer.did}): receipts it signs would fail verification"
        )
    return signer


def configured_did() -> str | None:
    """SPANDA_INSTITUTION_DID, checked to be an Ed25519 did:key, or None if unset."""
    did = os.environ.get(settings.ENV_INSTITUTION_DID, "").strip()
    if not did:
        return None
    try:
        public_key_from_did(did)
    except DidError as exc:
        raise ConfigError(f"{settings.ENV_INSTITUTION_DID}: {exc}") from None
    if "#" in did:
        raise ConfigError(f"{settings.ENV_INSTITUTION_DID} must be a DID, without a '#fragment'")
    return did


def institution_did() -> str:
    """The trust anchor: the only issuer whose receipts and status lists are accepted."""
    configured = configured_did()
    if configured is not None:
        return configured
    try:
        return load_signer().did
    except MissingSecretError:
        raise MissingSecretError(
            f"{settings.ENV_INSTITUTION_DID} is not set, and no institution key to derive it "
            f"from: set it to the institution's {DID_KEY_PREFIX} DID (what `spanda consent "
            "keygen` printed); verifying needs no private key"
        ) from None


def keygen(path: Path) -> str:
    """Write a new institution key to `path` (mode 0600 from the first byte); its DID.

    Never replaces an existing file: every receipt signed with the old key would stop
    verifying, and its revocations could no longer be signed.
    """
    key = Ed25519PrivateKey.generate()
    if not settings.create_private_file(path, (key.private_bytes_raw().hex() + "\n").encode()):
        raise ConfigError(f"{path} already exists: keygen never replaces a key")
    return _signer(key).did
