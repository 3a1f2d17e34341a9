"""Cedar entities and requests built from a principal, a dataset declaration, its columns
or a lakehouse table, in the shape `config/access/schema.cedarschema` describes.

Uids are always the structured `{"type", "id"}` form: a principal's name or a column's
name goes to Cedar as data, never through its surface syntax, so no name can change
the meaning of a request.
"""

from __future__ import annotations

from typing import Any

from spanda_assets.lib.access.model import Principal
from spanda_assets.lib.publish.datasets import DatasetDeclaration

Uid = dict[str, str]


def uid(kind: str, ident: str) -> Uid:
    return {"type": kind, "id": ident}


def user_uid(principal: Principal) -> Uid:
    return uid("User", principal.name)


def dataset_uid(dataset: DatasetDeclaration) -> Uid:
    return uid("Dataset", dataset.id)


def column_uid(dataset: DatasetDeclaration, column: str) -> Uid:
    # one column entity per dataset: subject_id of two datasets may differ in sensitivity
    return uid("Column", f"{dataset.id}/{column}")


def table_uid(table: str) -> Uid:
    return uid("Table", table)


def user_entity(principal: Principal) -> dict[str, Any]:
    return {
        "uid": user_uid(principal),
        "attrs": {
            "role": principal.role,
            "institution": principal.institution,
            "purposes": sorted(principal.purposes),
            "duas": sorted(principal.duas),
        },
        "parents": [],
    }


def dataset_entity(dataset: DatasetDeclaration) -> dict[str, Any]:
    return {
        "uid": dataset_uid(dataset),
        "attrs": {
            "namespace": dataset.namespace,
            "tier": dataset.access.tier,
            "licence": dataset.licence.id,
            "dua": dataset.dua.id,
            "purposes": list(dataset.access.purposes),
            "publisher": dataset.publisher.name,
        },
        "parents": [],
    }


def column_entity(dataset: DatasetDeclaration, column: str) -> dict[str, Any]:
    rule = dataset.access.column(column)
    return {
        "uid": column_uid(dataset, column),
        "attrs": {"sensitivity": rule.sensitivity, "purposes": list(rule.purposes)},
        "parents": [dataset_uid(dataset)],
    }


def table_entity(table: str, namespace: str) -> dict[str, Any]:
    return {"uid": table_uid(table), "attrs": {"namespace": namespace}, "parents": []}


def context(purpose: str | None, consent_state: str, channel: str) -> dict[str, str]:
    return {"purpose": purpose or "", "consent_state": consent_state, "channel": channel}


def request(principal: Uid, action: str, resource: Uid, ctx: dict[str, str]) -> dict[str, Any]:
    return {
        "principal": principal,
        "action": uid("Action", action),
        "resource": resource,
        "context": ctx,
    }
