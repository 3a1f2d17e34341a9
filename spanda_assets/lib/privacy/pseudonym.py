"""Keyed, stable pseudonyms (HMAC-SHA256) and where the key comes from.

A pseudonym is `ps_` + `HMAC(key, namespace + ":" + value)`, truncated to 128
bits in hex. The same value gives the same pseudonym on every run, so joins across
silver tables still work; without the key it cannot be reversed or recomputed
(a plain hash of a student number could be, by hashing every number). The
namespace keeps a value's pseudonym in one column unlinkable to the same value
in another.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from pathlib import Path

import pyarrow as pa

from spanda_assets import settings
from spanda_assets.lib.errors import MissingSecretError

log = logging.getLogger(__name__)
ENV_PSEUDONYM_KEY = "SPANDA_PSEUDONYM_KEY"
ENV_DEMO = settings.ENV_DEMO
MIN_KEY_BYTES = 16
KEY_HEX_CHARS = 64  # the documented format: 256 random bits as hex, what token_hex(32) prints
PREFIX = "ps_"


demo_mode = settings.demo_mode


def _demo_key_path() -> Path:
    return settings.spanda_home() / "secrets" / "pseudonym.key"


def load_key() -> bytes:
    """The pseudonym key: SPANDA_PSEUDONYM_KEY, or in demo mode a generated one.

    Outside demo mode a missing key is refused: a silently generated key would
    change every pseudonym when the machine changes, breaking joins with data
    already published.
    """
    raw = (os.environ.get(ENV_PSEUDONYM_KEY) or "").strip()
    if raw:
        how = "e.g. from `python -c 'import secrets; print(secrets.token_hex(32))'`"
        if not all(c in "0123456789abcdefABCDEF" for c in raw):
            raise MissingSecretError(
                f"{ENV_PSEUDONYM_KEY} must be hexadecimal (64 or more hex characters), {how}"
            )
        if len(raw) < KEY_HEX_CHARS:
            raise MissingSecretError(
                f"{ENV_PSEUDONYM_KEY} is too short ({len(raw)} hex characters); use at least "
                f"{KEY_HEX_CHARS} (256 random bits), {how}"
            )
        return raw.encode("utf-8")
    if not demo_mode() and _demo_key_path().is_file():
        # This SPANDA_HOME was set up by `spanda demo`: its data is pseudonymized with that
        # key, and a daemon started on it later must keep the same pseudonyms.
        log.warning(
            "%s is not set: using the demo key of this SPANDA_HOME (%s); set the variable "
            "from your secret store for anything but the demo",
            ENV_PSEUDONYM_KEY,
            _demo_key_path(),
        )
        return _demo_key_path().read_text().strip().encode("utf-8")
    if not demo_mode():
        raise MissingSecretError(
            f"{ENV_PSEUDONYM_KEY} is not set. Silver tables are pseudonymized with a keyed hash "
            "and need a secret key that stays the same across runs: set it to 64 random hex "
            "characters (`python -c 'import secrets; print(secrets.token_hex(32))'`) from your "
            f"secret store. For the embedded demo, set {ENV_DEMO}=1 (`spanda demo` does) to use "
            "a generated key kept under SPANDA_HOME/secrets."
        )
    return settings.local_secret(_demo_key_path()).encode("utf-8")


class Pseudonymizer:
    """Stable keyed pseudonyms. Holds the key in memory only; never logs it."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise MissingSecretError("pseudonym key too short")
        self._key = key

    def __repr__(self) -> str:
        return "Pseudonymizer(key=***)"

    def one(self, namespace: str, value: object) -> str:
        msg = f"{namespace}:{value}".encode()
        # The prefix keeps a pseudonym from ever reading as a number (about one in
        # three million 32-hex-digit strings is all digits: an "account number").
        return PREFIX + hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:32]

    def array(self, namespace: str, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Pseudonymize a column; NULL stays NULL."""
        return pa.array(
            [None if v is None else self.one(namespace, v) for v in values.to_pylist()],
            type=pa.string(),
        )

    def subject_id(self, did: str) -> str:
        """The pseudonymous subject id of a data subject, derived from their DID."""
        return self.one("subject", did)
