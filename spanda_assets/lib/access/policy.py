"""`AccessControl`: the one place that decides who may read what, and records it.

The rules are Cedar policies (`config/access/policies.cedar`), validated against the
entity schema (`config/access/schema.cedarschema`) when they are loaded: a policy that
names an attribute the schema lacks, or compares a set with a string, is refused before
it can decide anything. A site replaces both files by pointing SPANDA_ACCESS_POLICY_DIR
at a directory holding its own.

Each call to `authorize` is one `cedarpy.is_authorized_batch` call: the dataset request
and one request per column (each column is its own resource, with the dataset as its
parent), so masking fifty columns costs one evaluation, not fifty-one. A column is
granted only when its dataset is. Every call appends one line to the audit log before
it returns; a decision that cannot be logged raises instead (fail closed).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import cedarpy

from spanda_assets import settings
from spanda_assets.lib.access import entities as ent
from spanda_assets.lib.access import reasons as why
from spanda_assets.lib.access.audit import AuditLog
from spanda_assets.lib.access.model import (
    ACTIONS,
    ANONYMOUS,
    CHANNELS,
    COLUMN_ACTION,
    CONSENT_STATES,
    ROLES,
    AccessConfigError,
    Decision,
    Principal,
    Unauthenticated,
)
from spanda_assets.lib.access.tokens import TOKEN_PREFIX, TokenStore
from spanda_assets.lib.publish.datasets import (
    AccessRules,
    ColumnAccess,
    DatasetDeclaration,
    DataUseAgreement,
    Licence,
    Publisher,
)

ENV_ACCESS_POLICY_DIR = "SPANDA_ACCESS_POLICY_DIR"
POLICY_FILE = "policies.cedar"
SCHEMA_FILE = "schema.cedarschema"
PACKAGED_DIR = "config/access"
ACCESS_DIR = "access"  # under SPANDA_HOME: tokens and the audit log
_TABLE = re.compile(r"^(?P<namespace>[a-z][a-z0-9_]*)(?:\.[a-z][a-z0-9_]*)?$")
_MAX_ERROR = 400  # characters of a Cedar evaluation error kept in a reason


def access_dir(home: Path | None = None) -> Path:
    """Where the token store and the audit log live: SPANDA_HOME/access."""
    return (home or settings.spanda_home()) / ACCESS_DIR


@dataclass(frozen=True)
class PolicyFiles:
    """The policy and schema texts, and where each came from (for every message)."""

    policies: str
    schema: str
    policies_origin: str
    schema_origin: str

    @classmethod
    def load(cls, directory: Path | None = None) -> PolicyFiles:
        """From `directory`, else SPANDA_ACCESS_POLICY_DIR, else the packaged files."""
        raw = directory or (Path(d) if (d := os.environ.get(ENV_ACCESS_POLICY_DIR)) else None)
        if raw is None:
            base = resources.files("spanda_assets").joinpath(PACKAGED_DIR)
            return cls(
                policies=base.joinpath(POLICY_FILE).read_text("utf-8"),
                schema=base.joinpath(SCHEMA_FILE).read_text("utf-8"),
                policies_origin=f"spanda_assets/{PACKAGED_DIR}/{POLICY_FILE}",
                schema_origin=f"spanda_assets/{PACKAGED_DIR}/{SCHEMA_FILE}",
            )
        texts = []
        for name in (POLICY_FILE, SCHEMA_FILE):
            path = raw / name
            if not path.is_file():
                source = f"{ENV_ACCESS_POLICY_DIR}={raw}" if directory is None else str(raw)
                raise AccessConfigError(
                    f"{path} does not exist: the access policy directory ({source}) must hold "
                    f"{POLICY_FILE} and {SCHEMA_FILE}; copy both from spanda_assets/"
                    f"{PACKAGED_DIR} and edit them"
                )
            texts.append(path.read_text(encoding="utf-8"))
        return cls(texts[0], texts[1], str(raw / POLICY_FILE), str(raw / SCHEMA_FILE))

    @property
    def hash(self) -> str:
        """SHA-256 of the policy text and the schema text (NUL between): the audit log
        names the exact rules each decision was made under."""
        return hashlib.sha256(self.policies.encode() + b"\0" + self.schema.encode()).hexdigest()


def _line_of(text: str, policy_id: str) -> int | None:
    match = re.search(r'@id\(\s*"' + re.escape(policy_id) + r'"\s*\)', text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _where(files: PolicyFiles, cedar_id: str, names: dict[str, str]) -> str:
    name = names.get(cedar_id)
    if name is None:
        return f"policy {cedar_id} (no @id; Cedar numbers policies from 0 in file order)"
    line = _line_of(files.policies, name)
    return f"policy {name!r}" + (f" (line {line})" if line else "")


def compile_policies(files: PolicyFiles) -> tuple[cedarpy.PolicySet, cedarpy.Schema, list[str]]:
    """Parse the schema, validate the policies against it, and check every policy has a
    unique @id; returns (policy set, schema, the @ids in file order)."""
    try:
        schema = cedarpy.Schema.from_str(files.schema)
    except ValueError as exc:
        raise AccessConfigError(
            f"{files.schema_origin} is not a valid Cedar schema: {exc}"
        ) from None
    result = cedarpy.validate_policies(files.policies, schema)
    if not result.validation_passed:
        names = result.id_annotations_by_policy_id
        problems = [
            (f"{_where(files, e.policy_id, names)}: " if e.policy_id else "") + e.error
            for e in result.errors
        ]
        raise AccessConfigError(
            f"{files.policies_origin} does not validate against {files.schema_origin} "
            f"({len(problems)} problem(s)):\n  - " + "\n  - ".join(problems)
        )
    doc = json.loads(cedarpy.policies_to_json_str(files.policies))
    if doc.get("templates"):
        raise AccessConfigError(
            f"{files.policies_origin} holds policy templates (?principal/?resource): Spanda "
            "links none, so they would grant nothing; write them as plain policies"
        )
    ids: list[str] = []
    static = doc.get("staticPolicies", {})
    # Cedar's own ids are policy0, policy1, ... in file order; sort them as numbers
    for cedar_id in sorted(static, key=lambda k: (len(k), k)):
        policy = static[cedar_id]
        name = (policy.get("annotations") or {}).get("id")
        if not name:
            raise AccessConfigError(
                f'{files.policies_origin}: {_where(files, cedar_id, {})} has no @id("...") '
                "annotation; decisions and the audit log name policies by it, so give "
                "every policy one"
            )
        if name in ids:
            raise AccessConfigError(
                f"{files.policies_origin}: @id({name!r}) is used twice (line "
                f"{_line_of(files.policies, name)}); each policy needs its own id"
            )
        ids.append(name)
    return cedarpy.PolicySet.from_str(files.policies), schema, ids


@dataclass(frozen=True)
class _Outcome:
    allowed: bool
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...]


# A request of every shape AccessControl sends, evaluated once at load time: a schema
# that does not describe Spanda's entities fails there, not on the first real request.
_PROBE_DATASET = DatasetDeclaration(
    id="probe",
    title="probe",
    description="probe",
    creators=(),
    subjects=(),
    licence=Licence("CC0-1.0", "https://example.org"),
    dua=DataUseAgreement("dua", "dua", "https://example.org"),
    table="gold.probe",
    publisher=Publisher("probe"),
    access=AccessRules(columns={"c": ColumnAccess("quasi_identifier", ("research",))}),
)


class AccessControl:
    """Authenticates callers, decides their requests with the Cedar policy, and logs
    every decision. Safe to share between threads: the policy handles are immutable and
    the stores lock their files."""

    def __init__(self, files: PolicyFiles, home: Path | None = None) -> None:
        self.files = files
        self._policies, self._schema, self.policy_ids = compile_policies(files)
        self.policy_set_hash = files.hash
        self.directory = access_dir(home)
        self.tokens = TokenStore(self.directory)
        self.audit = AuditLog(self.directory)
        self._probe()

    @classmethod
    def load(cls, directory: Path | None = None, *, home: Path | None = None) -> AccessControl:
        """The policy from `directory`, SPANDA_ACCESS_POLICY_DIR or the packaged files;
        tokens and the audit log under `home` (default SPANDA_HOME)/access. Raises
        AccessConfigError naming the file and Cedar's errors when the policy is unusable."""
        return cls(PolicyFiles.load(directory), home)

    # --- authentication ----------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> Principal:
        """The caller an Authorization header names: ANONYMOUS without one, the token's
        holder for a valid `Bearer <token>`; Unauthenticated otherwise."""
        if authorization is None or not authorization.strip():
            return ANONYMOUS
        parts = authorization.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer" or not parts[1].strip():
            # nothing of the header is repeated: a token pasted without its scheme is
            # still a token
            raise Unauthenticated(
                "the Authorization header must be 'Bearer <token>' (a token from spanda "
                "access token create); send no header to read metadata anonymously"
            )
        return self.tokens.principal_for(parts[1].strip())

    # --- decisions ---------------------------------------------------------------------
    def authorize(
        self,
        principal: Principal,
        action: str,
        dataset: DatasetDeclaration,
        *,
        version: int | None = None,
        snapshot_id: int | None = None,
        purpose: str | None = None,
        consent_state: str = "current",
        columns: Sequence[str] = (),
        channel: str = "api",
    ) -> Decision:
        """May `principal` do `action` on `dataset` (and read which of `columns`)?

        One Cedar batch decides the dataset and every column; one audit line records it.
        `columns` are the columns whose values would be returned (pass them with a data
        action); a column is granted only when the dataset is. `version` and
        `snapshot_id` only go into the audit line.
        """
        _check_arguments(principal, action, channel, consent_state)
        if columns and action == "read_metadata":
            # columns are values: only a data action may grant them (metadata is public)
            raise ValueError("columns are decided with a data action, not read_metadata")
        purpose = _checked_purpose(purpose)
        cols = tuple(dict.fromkeys(columns))
        ctx = ent.context(purpose, consent_state, channel)
        user = ent.user_uid(principal)
        requests = [ent.request(user, action, ent.dataset_uid(dataset), ctx)]
        requests += [
            ent.request(user, COLUMN_ACTION, ent.column_uid(dataset, c), ctx) for c in cols
        ]
        entities = [ent.user_entity(principal), ent.dataset_entity(dataset)]
        entities += [ent.column_entity(dataset, c) for c in cols]
        outcomes = self._decide(requests, entities)
        head, per_column = outcomes[0], outcomes[1:]

        allowed = head.allowed
        granted = [allowed and o.allowed for o in per_column]
        columns_allowed = tuple(c for c, ok in zip(cols, granted, strict=True) if ok)
        columns_denied = tuple(c for c, ok in zip(cols, granted, strict=True) if not ok)
        policy_ids = list(head.policy_ids)
        reasons = [f"the policy could not be evaluated, so it denies: {e}" for e in head.errors]
        if allowed:
            for column, outcome, ok in zip(cols, per_column, granted, strict=True):
                policy_ids += outcome.policy_ids
                if not ok:
                    reasons += [f"column {column!r}: policy error: {e}" for e in outcome.errors]
                    reasons.append(why.column_denial(principal, dataset, column, purpose))
        elif not head.errors:
            reasons += why.dataset_denial(
                principal,
                action,
                dataset,
                purpose=purpose,
                consent_state=consent_state,
                channel=channel,
            ) or [
                f"no policy permits {action} of dataset {dataset.id!r} for principal "
                f"{principal.name!r} (role {principal.role})"
            ]
        resource = f"dataset/{dataset.id}" + (f"/v{version}" if version is not None else "")
        return self._record(
            principal,
            action,
            resource,
            allowed=allowed,
            columns_allowed=columns_allowed,
            columns_denied=columns_denied,
            policy_ids=tuple(dict.fromkeys(policy_ids)),
            reasons=tuple(reasons),
            purpose=purpose,
            consent_state=consent_state,
            snapshot_id=snapshot_id,
            channel=channel,
        )

    def authorize_namespace(
        self,
        principal: Principal,
        action: str,
        namespace: str,
        *,
        purpose: str | None = None,
        channel: str = "cli",
    ) -> Decision:
        """May `principal` do `action` on a lakehouse table outside the declared datasets?

        `namespace` is a namespace (`bronze`) or a table in one (`bronze.students`); the
        audit line names what was given. Bronze is for stewards, never through the API.
        """
        _check_arguments(principal, action, channel, "current")
        match = _TABLE.match(namespace)
        if not match:
            raise ValueError(
                f"{namespace!r} is not a namespace (bronze) or a table (bronze.students): "
                "lowercase letters, digits and '_'"
            )
        space = match["namespace"]
        ctx = ent.context(purpose, "current", channel)
        requests = [ent.request(ent.user_uid(principal), action, ent.table_uid(namespace), ctx)]
        entities = [ent.user_entity(principal), ent.table_entity(namespace, space)]
        (outcome,) = self._decide(requests, entities)
        reasons = [f"the policy could not be evaluated, so it denies: {e}" for e in outcome.errors]
        if not outcome.allowed and not outcome.errors:
            reasons += why.table_denial(principal, namespace, space, channel) or [
                f"no policy permits {action} on {namespace!r} for principal "
                f"{principal.name!r} (role {principal.role})"
            ]
        kind = "table" if "." in namespace else "namespace"
        return self._record(
            principal,
            action,
            f"{kind}/{namespace}",
            allowed=outcome.allowed,
            columns_allowed=(),
            columns_denied=(),
            policy_ids=outcome.policy_ids,
            reasons=tuple(reasons),
            purpose=purpose,
            consent_state="current",
            snapshot_id=None,
            channel=channel,
        )

    def _decide(
        self, requests: list[dict[str, Any]], entities: list[dict[str, Any]]
    ) -> list[_Outcome]:
        """One Cedar batch; an evaluation error denies (a forbid that failed to evaluate
        must not let a permit through)."""
        results = cedarpy.is_authorized_batch(
            requests, self._policies, entities, schema=self._schema
        )
        order = {name: i for i, name in enumerate(self.policy_ids)}
        out = []
        for result in results:
            diagnostics = result.diagnostics
            names = diagnostics.id_annotations_by_reason
            errors = tuple(str(e)[:_MAX_ERROR] for e in diagnostics.errors)
            out.append(
                _Outcome(
                    allowed=result.allowed and not errors,
                    # file order: Cedar reports the determining policies as a set
                    policy_ids=tuple(
                        sorted(
                            (names.get(r, r) for r in diagnostics.reasons),
                            key=lambda n: order.get(n, len(order)),
                        )
                    ),
                    errors=errors,
                )
            )
        return out

    def _record(
        self,
        principal: Principal,
        action: str,
        resource: str,
        *,
        allowed: bool,
        columns_allowed: tuple[str, ...],
        columns_denied: tuple[str, ...],
        policy_ids: tuple[str, ...],
        reasons: tuple[str, ...],
        purpose: str | None,
        consent_state: str,
        snapshot_id: int | None,
        channel: str,
    ) -> Decision:
        entry = self.audit.append(
            {
                "principal": principal.name,
                "role": principal.role,
                "token_id": principal.token_id,
                "action": action,
                "resource": resource,
                "purpose": purpose or None,
                "consent_state": consent_state,
                "decision": "allow" if allowed else "deny",
                "columns_denied": list(columns_denied),
                "policy_ids": list(policy_ids),
                "policy_set_hash": self.policy_set_hash,
                "snapshot_id": snapshot_id,
                "channel": channel,
                "reasons": list(reasons),
            }
        )
        return Decision(
            allowed=allowed,
            columns_allowed=columns_allowed,
            columns_denied=columns_denied,
            policy_ids=policy_ids,
            reasons=reasons,
            audit_hash=entry["hash"],
        )

    def _probe(self) -> None:
        principal = Principal("probe", "researcher", "probe", frozenset({"r"}), frozenset())
        user = ent.user_uid(principal)
        ctx = ent.context("research", "current", "cli")
        requests = [ent.request(user, a, ent.dataset_uid(_PROBE_DATASET), ctx) for a in ACTIONS] + [
            ent.request(user, COLUMN_ACTION, ent.column_uid(_PROBE_DATASET, "c"), ctx),
            ent.request(user, "query", ent.table_uid("bronze.t"), ctx),
        ]
        entities = [
            ent.user_entity(principal),
            ent.dataset_entity(_PROBE_DATASET),
            ent.column_entity(_PROBE_DATASET, "c"),
            ent.table_entity("bronze.t", "bronze"),
        ]
        errors = sorted({e for o in self._decide(requests, entities) for e in o.errors})
        if errors:
            raise AccessConfigError(
                f"{self.files.schema_origin} does not describe the entities and requests "
                "Spanda sends (User, Dataset, Column, Table; context purpose, consent_state, "
                f"channel; actions {', '.join((*ACTIONS, COLUMN_ACTION))}):\n  - "
                + "\n  - ".join(errors)
            )


_PURPOSE_TEXT = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _checked_purpose(purpose: str | None) -> str | None:
    """A stated purpose as the policy and the log may hold it. Anything that is not a
    purpose name (a pasted token, a sentence) is never repeated: it is logged and
    judged as an unknown purpose."""
    if purpose is None or not purpose.strip():
        return None
    purpose = purpose.strip()
    if _PURPOSE_TEXT.match(purpose) and not purpose.startswith(TOKEN_PREFIX):
        return purpose
    return "(not a purpose name)"


def _check_arguments(principal: Principal, action: str, channel: str, consent_state: str) -> None:
    # A typo here is a bug in the caller, not a denial to log.
    if action not in ACTIONS:
        raise ValueError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
    if channel not in CHANNELS:
        raise ValueError(f"channel {channel!r} is not one of {', '.join(CHANNELS)}")
    if consent_state not in CONSENT_STATES:
        raise ValueError(
            f"consent_state {consent_state!r} is not one of {', '.join(CONSENT_STATES)}"
        )
    if principal.role not in ROLES:
        raise ValueError(
            f"principal {principal.name!r} has role {principal.role!r}, not one of "
            f"{', '.join(ROLES)}"
        )
