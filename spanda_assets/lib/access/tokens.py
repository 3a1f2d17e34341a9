"""API tokens: issued once, stored only as their SHA-256, revocable, expiring.

A token is `spanda_` followed by 32 random bytes (`secrets.token_urlsafe(32)`, 256
bits): the prefix lets secret scanners and people recognise one in a log or a paste.
The store (`SPANDA_HOME/access/tokens.json`, mode 0600) keeps the token's SHA-256 and
what the policy needs to know of its holder: name, role, institution, the purposes they
are approved for and the data use agreements they signed. A fast hash is right here
(unlike for passwords): a 256-bit random secret cannot be guessed from its hash, and a
per-request lookup must be cheap (ADR 0031).

Changes take an exclusive lock and replace the file atomically, so concurrent
`spanda access token create` runs lose no token. `token_id` (`tok_` + 12 hex digits)
is a short name for listing and revoking; it tells nothing about the token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from spanda_assets.lib.access.model import (
    TOKEN_ROLES,
    Principal,
    TokenStoreError,
    Unauthenticated,
)
from spanda_assets.lib.access.storage import exclusive, replace_private

TOKENS_FILE = "tokens.json"
LOCK_FILE = ".tokens.lock"
TOKEN_PREFIX = "spanda_"
DEFAULT_EXPIRES_DAYS = 90
MAX_EXPIRES_DAYS = 3650
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")
# the same spelling as a dataset's `access: purposes:` (lib/publish/datasets.py)
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class TokenRecord:
    """One issued token as stored: its hash, never the token."""

    token_id: str
    sha256: str
    principal: str
    role: str
    institution: str
    purposes: tuple[str, ...]
    duas: tuple[str, ...]
    created_at: str
    expires_at: str | None
    revoked_at: str | None = None

    def state(self, now: dt.datetime | None = None) -> str:
        """active, revoked or expired."""
        if self.revoked_at:
            return "revoked"
        moment = now or dt.datetime.now(dt.UTC)
        if self.expires_at and _parse_iso(self.expires_at) <= moment:
            return "expired"
        return "active"

    def listing(self) -> dict[str, Any]:
        """What `spanda access token list` shows: everything but the hash."""
        out = {k: v for k, v in asdict(self).items() if k != "sha256"}
        out["purposes"], out["duas"] = list(self.purposes), list(self.duas)
        out["state"] = self.state()
        return out

    def as_principal(self) -> Principal:
        return Principal(
            name=self.principal,
            role=self.role,
            institution=self.institution,
            purposes=frozenset(self.purposes),
            duas=frozenset(self.duas),
            token_id=self.token_id,
        )


def _record(raw: Any, path: Path) -> TokenRecord:
    try:
        return TokenRecord(
            token_id=str(raw["token_id"]),
            sha256=str(raw["sha256"]),
            principal=str(raw["principal"]),
            role=str(raw["role"]),
            institution=str(raw["institution"]),
            purposes=tuple(str(p) for p in raw["purposes"]),
            duas=tuple(str(d) for d in raw["duas"]),
            created_at=str(raw["created_at"]),
            expires_at=raw.get("expires_at"),
            revoked_at=raw.get("revoked_at"),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise TokenStoreError(
            f"the token store {path} holds an entry without {exc}: it was edited by hand; "
            "restore it from a backup or revoke and re-issue the tokens"
        ) from None


class TokenStore:
    """The tokens issued on this host, in `directory` (SPANDA_HOME/access)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / TOKENS_FILE
        self._lock = directory / LOCK_FILE
        self._cache: tuple[tuple[int, int, int], dict[str, TokenRecord]] | None = None

    # --- reading -----------------------------------------------------------------------
    def records(self) -> list[TokenRecord]:
        """Every token ever issued here (revoked and expired ones too), oldest first."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        try:
            doc = json.loads(text)
            raw_tokens = doc["tokens"]
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenStoreError(
                f"the token store {self.path} is not the JSON document Spanda writes ({exc}); "
                "restore it from a backup"
            ) from None
        return [_record(r, self.path) for r in raw_tokens]

    def _by_hash(self) -> dict[str, TokenRecord]:
        """Hash -> record, re-read only when the file was replaced (a create or revoke
        elsewhere takes effect on the next request)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (st.st_ino, st.st_mtime_ns, st.st_size)
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        table = {r.sha256: r for r in self.records()}
        self._cache = (key, table)
        return table

    def principal_for(self, token: str) -> Principal:
        """The holder of `token`; Unauthenticated when it is unknown, revoked or expired.
        No message names the token."""
        record = self._by_hash().get(token_hash(token))
        if record is None:
            raise Unauthenticated(
                "unknown token: it was not issued here, or it was mistyped; ask a steward "
                "for one (spanda access token create)"
            )
        state = record.state()
        if state == "revoked":
            raise Unauthenticated(
                f"token {record.token_id} was revoked on {record.revoked_at}; ask a steward "
                "for a new one"
            )
        if state == "expired":
            raise Unauthenticated(
                f"token {record.token_id} expired on {record.expires_at}; ask a steward for "
                "a new one"
            )
        return record.as_principal()

    # --- changing ----------------------------------------------------------------------
    def _write(self, records: list[TokenRecord]) -> None:
        doc = {"version": 1, "tokens": [asdict(r) for r in records]}
        replace_private(self.path, (json.dumps(doc, indent=2) + "\n").encode())

    def create(
        self,
        principal: str,
        role: str,
        *,
        institution: str,
        purposes: tuple[str, ...] = (),
        duas: tuple[str, ...] = (),
        expires_days: int | None = DEFAULT_EXPIRES_DAYS,
    ) -> tuple[str, TokenRecord]:
        """Issue a token; returns (the token, its record). The token exists only in the
        return value: show it once and forget it."""
        problems = _create_problems(principal, role, institution, purposes, duas, expires_days)
        if problems:
            raise TokenStoreError("cannot issue the token: " + "; ".join(problems))
        now = dt.datetime.now(dt.UTC)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with exclusive(self._lock):
            records = self.records()
            taken = {r.token_id for r in records}
            token_id = "tok_" + secrets.token_hex(6)
            while token_id in taken:
                token_id = "tok_" + secrets.token_hex(6)
            record = TokenRecord(
                token_id=token_id,
                sha256=token_hash(token),
                principal=principal,
                role=role,
                institution=institution.strip(),
                purposes=tuple(dict.fromkeys(purposes)),
                duas=tuple(dict.fromkeys(d.strip() for d in duas)),
                created_at=_iso(now),
                expires_at=_iso(now + dt.timedelta(days=expires_days)) if expires_days else None,
            )
            self._write([*records, record])
        return token, record

    def revoke(self, token_id: str) -> tuple[TokenRecord, bool]:
        """Revoke `token_id`; returns (its record, whether this call revoked it: False
        when it already was)."""
        with exclusive(self._lock):
            records = self.records()
            for i, record in enumerate(records):
                if record.token_id == token_id:
                    if record.revoked_at:
                        return record, False
                    records[i] = replace(record, revoked_at=_iso(dt.datetime.now(dt.UTC)))
                    self._write(records)
                    return records[i], True
        known = ", ".join(r.token_id for r in records) or "none issued yet"
        raise TokenStoreError(
            f"no token {token_id!r} in {self.path} (known ids: {known}); spanda access token "
            "list shows them"
        )


def _create_problems(
    principal: str,
    role: str,
    institution: str,
    purposes: tuple[str, ...],
    duas: tuple[str, ...],
    expires_days: int | None,
) -> list[str]:
    problems = []
    if not _NAME.match(principal):
        problems.append(
            f"principal {principal!r} must be 1-128 letters, digits, '.', '_', '@' or '-' "
            "(a person's login or a service name, e.g. alice or etl-bot)"
        )
    elif principal == "anonymous":
        problems.append("'anonymous' names callers without a token; choose another principal")
    if role not in TOKEN_ROLES:
        problems.append(f"role {role!r} is not one of {', '.join(TOKEN_ROLES)}")
    if not institution.strip():
        problems.append("institution is empty; name the holder's institution")
    problems += [
        f"purpose {p!r} must be lowercase letters, digits and '_' (e.g. research), as in "
        "datasets.yaml"
        for p in purposes
        if not _PURPOSE.match(p)
    ]
    problems += [f"data use agreement id {d!r} is blank" for d in duas if not d.strip()]
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRES_DAYS:
        problems.append(f"expires_days {expires_days} must be between 1 and {MAX_EXPIRES_DAYS}")
    return problems
