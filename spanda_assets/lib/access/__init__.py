"""Who may read what: Cedar policies over the declared datasets, API tokens, and a
hash-chained audit log of every decision (ADR 0031, docs/access.md).

    ac = AccessControl.load()
    principal = ac.authenticate(request.headers.get("Authorization"))
    decision = ac.authorize(principal, "download", dataset, purpose="research",
                            columns=table.column_names)

No Dagster here: the HTTP API, the CLI and the assets call it alike.
"""

from spanda_assets.lib.access.audit import AuditLog, Verification
from spanda_assets.lib.access.model import (
    ACTIONS,
    ANONYMOUS,
    CHANNELS,
    CONSENT_STATES,
    DATA_ACTIONS,
    ROLES,
    TOKEN_ROLES,
    AccessConfigError,
    AuditLogError,
    Decision,
    Principal,
    TokenStoreError,
    Unauthenticated,
)
from spanda_assets.lib.access.policy import (
    ENV_ACCESS_POLICY_DIR,
    AccessControl,
    PolicyFiles,
    access_dir,
)
from spanda_assets.lib.access.tokens import TokenRecord, TokenStore

__all__ = [
    "ACTIONS",
    "ANONYMOUS",
    "CHANNELS",
    "CONSENT_STATES",
    "DATA_ACTIONS",
    "ENV_ACCESS_POLICY_DIR",
    "ROLES",
    "TOKEN_ROLES",
    "AccessConfigError",
    "AccessControl",
    "AuditLog",
    "AuditLogError",
    "Decision",
    "PolicyFiles",
    "Principal",
    "TokenRecord",
    "TokenStore",
    "TokenStoreError",
    "Unauthenticated",
    "Verification",
    "access_dir",
]
