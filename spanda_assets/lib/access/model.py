"""What access control hands its callers: who asks (`Principal`), the answer (`Decision`),
and the errors an HTTP API or the CLI turns into a status code or a message.

Kept free of Cedar and of files, so the API can import the types without loading a
policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from spanda_assets.lib.errors import SpandaError

ROLES: tuple[str, ...] = ("researcher", "steward", "public", "anonymous")
# Roles a token can carry: "anonymous" is what a caller without a token is.
TOKEN_ROLES: tuple[str, ...] = ("researcher", "steward", "public")
DATA_ACTIONS: tuple[str, ...] = ("download", "export", "query")
ACTIONS: tuple[str, ...] = ("read_metadata", *DATA_ACTIONS)
COLUMN_ACTION = "read_column"
CHANNELS: tuple[str, ...] = ("api", "cli")
CONSENT_STATES: tuple[str, ...] = ("current", "withdrawn")


class AccessConfigError(SpandaError):
    """The access policy or its schema cannot be used (unparsable, or fails validation)."""


class Unauthenticated(SpandaError):
    """The caller sent credentials that identify nobody: a wrong scheme, or a token that
    is unknown, revoked or expired. The message never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AuditLogError(SpandaError):
    """The audit log cannot take another line (a torn last line, a truncated tail): a
    decision that cannot be recorded is not made."""


class TokenStoreError(SpandaError):
    """The token store cannot be read or changed (unknown token id, corrupt file)."""


@dataclass(frozen=True)
class Principal:
    """Who asks, as the policy sees them.

    name         the token's principal (a person or a service), or "anonymous"
    role         researcher | steward | public | anonymous
    institution  the holder's institution (a restricted dataset is for its publisher's)
    purposes     the purposes the holder is approved for
    duas         ids of the data use agreements the holder has signed
    token_id     the short, non-secret id of the token used (None for anonymous)
    """

    name: str
    role: str
    institution: str = ""
    purposes: frozenset[str] = frozenset()
    duas: frozenset[str] = frozenset()
    token_id: str | None = None


ANONYMOUS = Principal(name="anonymous", role="anonymous")


@dataclass(frozen=True)
class Decision:
    """The answer to one request, as the audit log recorded it.

    allowed          the dataset (or table) request itself was granted
    columns_allowed  requested columns whose values may be returned (empty when denied)
    columns_denied   requested columns to mask or refuse
    policy_ids       the @id of every policy that determined the answer (Cedar's
                     reasons); empty when nothing permitted it (default deny)
    reasons          why, in words, for each denial (of the request or of a column)
    audit_hash       the hash of the audit line that recorded this decision
    """

    allowed: bool
    columns_allowed: tuple[str, ...]
    columns_denied: tuple[str, ...]
    policy_ids: tuple[str, ...]
    reasons: tuple[str, ...]
    audit_hash: str
