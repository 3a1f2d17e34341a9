"""Why a request was denied, in words a researcher can act on.

Cedar answers with the ids of the policies that decided, and nothing at all when no
policy permitted (default deny). The reasons are worked out here from the same
attributes the policy read, one sentence per unmet condition, naming the principal,
the dataset and the value that is missing, so "denied" always comes with what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from spanda_assets.lib.access.model import Principal
from spanda_assets.lib.publish.datasets import DatasetDeclaration

METADATA_ONLY_ROLES = ("public", "anonymous")


def _listed(values: Sequence[str] | frozenset[str]) -> str:
    return ", ".join(sorted(values)) or "none"


def _no_purpose(channel: str) -> str:
    if channel == "api":
        return "no purpose stated: send the X-Purpose header or ?purpose="
    return "no purpose stated: pass --purpose"


def bronze(principal: Principal, channel: str, what: str) -> str | None:
    """Why `what` (a dataset, table or namespace in bronze) is refused, or None for a
    steward outside the API."""
    if principal.role == "steward" and channel == "api":
        return (
            f"{what} is in bronze, which holds personal data: stewards read it through the "
            "spanda command on the host, never through the public API"
        )
    if principal.role != "steward":
        return (
            f"{what} is in bronze, which holds personal data: only stewards read it "
            f"(principal {principal.name!r} has role {principal.role})"
        )
    return None


def metadata_only(principal: Principal, channel: str) -> str:
    if principal.role == "anonymous":
        send = " and send it as an Authorization: Bearer <token> header" if channel == "api" else ""
        return (
            "no token was given: callers without one read metadata only; ask a steward for "
            f"a token (spanda access token create){send}"
        )
    return (
        f"principal {principal.name!r} has role {principal.role}, which reads metadata only; "
        "ask a steward for a researcher token"
    )


def dataset_denial(
    principal: Principal,
    action: str,
    dataset: DatasetDeclaration,
    *,
    purpose: str | None,
    consent_state: str,
    channel: str,
) -> list[str]:
    """Every condition of the policy that this request does not meet."""
    what = f"dataset {dataset.id!r} ({dataset.table})"
    if dataset.namespace == "bronze":
        reason = bronze(principal, channel, what)
        if reason:
            return [reason]
    if action == "read_metadata":
        return []
    if principal.role in METADATA_ONLY_ROLES:
        return [metadata_only(principal, channel)]
    reasons = []
    if consent_state == "withdrawn":
        reasons.append(
            f"the data subjects' consent for {what} is withdrawn (consent_state 'withdrawn'): "
            "no rows may be read"
        )
    if not purpose:
        reasons.append(_no_purpose(channel))
    else:
        if purpose not in principal.purposes:
            reasons.append(
                f"purpose {purpose!r} is not among the purposes principal {principal.name!r} "
                f"is approved for ({_listed(principal.purposes)})"
            )
        if purpose not in dataset.access.purposes:
            reasons.append(
                f"purpose {purpose!r} is not among the purposes dataset {dataset.id!r} may be "
                f"used for ({', '.join(dataset.access.purposes)}): what its subjects consented to"
            )
    if dataset.dua.id not in principal.duas:
        reasons.append(
            f"principal {principal.name!r} has not signed the data use agreement "
            f"{dataset.dua.id!r} of dataset {dataset.id!r} ({dataset.dua.url})"
        )
    if (
        dataset.access.tier != "open"
        and principal.role != "steward"
        and principal.institution != dataset.publisher.name
    ):
        reasons.append(
            f"dataset {dataset.id!r} is restricted to its publisher's institution "
            f"({dataset.publisher.name!r}); principal {principal.name!r} is from "
            f"{principal.institution!r}"
        )
    return reasons


def column_denial(
    principal: Principal, dataset: DatasetDeclaration, column: str, purpose: str | None
) -> str:
    """Why one column of a granted dataset is masked."""
    rule = dataset.access.column(column)
    where = f"column {column!r} of dataset {dataset.id!r}"
    if rule.sensitivity == "restricted":
        return (
            f"{where} is restricted: only stewards read it (principal {principal.name!r} "
            f"has role {principal.role})"
        )
    if rule.sensitivity == "quasi_identifier":
        stated = f"the stated purpose is {purpose!r}" if purpose else "no purpose was stated"
        return (
            f"{where} is a quasi-identifier, released only for {_listed(rule.purposes)}; {stated}"
        )
    return f"no policy permits reading {where}"


def table_denial(principal: Principal, table: str, namespace: str, channel: str) -> list[str]:
    """Why a request for a lakehouse table (or a whole namespace) outside the declared
    datasets is refused."""
    if namespace == "bronze":
        what = f"table {table!r}" if "." in table else "the namespace"
        reason = bronze(principal, channel, what)
        if reason:
            return [reason]
    if principal.role != "steward":
        what = f"table {table!r}" if "." in table else f"namespace {namespace!r}"
        return [
            f"{what} is not a declared dataset: tables outside the datasets are for stewards "
            f"only (principal {principal.name!r} has role {principal.role}); read published "
            "data through its dataset"
        ]
    return []
