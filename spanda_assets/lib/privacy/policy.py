"""The declarative column policy: which bronze column becomes what in silver.

Fail closed: a bronze column the policy does not classify stops silver with an
error naming the table and column. Silence would let a new source column (a
`Pronouns` or a `MotherMaidenName`) flow into the de-identified layer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pyarrow as pa
import yaml

from spanda_assets.lib.errors import SpandaError

ACTIONS = (
    "drop",
    "pseudonymize",
    "subject",
    "generalize_year",
    "generalize_zip3",
    "generalize_birth_date",
    "scrub",
    "keep",
)
POLICY_FILE = "spanda_assets/schemas/privacy_policy.yaml"


class PolicyError(SpandaError):
    """The privacy policy is missing, malformed, or does not cover a column."""


@dataclass(frozen=True)
class ColumnRule:
    name: str
    category: str
    action: str

    def output_name(self) -> str | None:
        if self.action == "drop":
            return None
        if self.action == "subject":
            return "subject_id"
        if self.action == "generalize_year":
            return f"{self.name}_year"
        if self.action == "generalize_zip3":
            return "zip3"
        if self.action == "generalize_birth_date":
            return "birth_year"
        return self.name


@dataclass(frozen=True)
class TablePolicy:
    table: str
    purpose: str
    key: str
    columns: dict[str, ColumnRule]

    @property
    def subject_column(self) -> str | None:
        return next((c.name for c in self.columns.values() if c.action == "subject"), None)

    @property
    def key_output(self) -> str:
        return self.columns[self.key].output_name() or self.key

    @property
    def scrubs(self) -> bool:
        """Whether a column of this table is free text the scrubber rewrites."""
        return any(c.action == "scrub" for c in self.columns.values())

    def fingerprint(self) -> str:
        """Identity of the table's column rules."""
        doc = [self.table, self.purpose, self.key]
        doc += [f"{r.name}:{r.category}:{r.action}" for r in self.columns.values()]
        return hashlib.sha256("|".join(doc).encode()).hexdigest()[:16]

    def check_covers(self, bronze: pa.Schema) -> None:
        """Fail closed on any bronze column the policy does not classify."""
        missing = [n for n in bronze.names if n not in self.columns]
        if missing:
            raise PolicyError(
                f"silver.{self.table}: column(s) {', '.join(missing)} of bronze.{self.table} "
                f"are not classified in {POLICY_FILE}. Silver stays as it was until each is "
                "given a category and an action (drop, pseudonymize, subject, generalize_year, "
                "generalize_zip3, generalize_birth_date, scrub or keep)."
            )


def parse_policy(doc: Any) -> dict[str, TablePolicy]:
    if not isinstance(doc, dict) or not isinstance(doc.get("tables"), dict):
        raise PolicyError(f"{POLICY_FILE} must have a top-level 'tables:' mapping")
    out: dict[str, TablePolicy] = {}
    for table, spec in doc["tables"].items():
        cols = (spec or {}).get("columns") or {}
        rules = {}
        for name, rule in cols.items():
            action = (rule or {}).get("action")
            if action not in ACTIONS:
                raise PolicyError(
                    f"{POLICY_FILE}: {table}.{name} has action {action!r}; one of {ACTIONS}"
                )
            rules[name] = ColumnRule(name, str(rule.get("category", "")), action)
        key = spec.get("key")
        if key not in rules:
            raise PolicyError(f"{POLICY_FILE}: {table} needs 'key', one of its columns")
        out[table] = TablePolicy(table, str(spec.get("purpose", "research")), key, rules)
    return out


def load_policy() -> dict[str, TablePolicy]:
    text = resources.files("spanda_assets").joinpath("schemas/privacy_policy.yaml").read_text()
    return parse_policy(yaml.safe_load(text))


def policy_for(table: str, policies: dict[str, TablePolicy] | None = None) -> TablePolicy:
    policies = policies if policies is not None else load_policy()
    if table not in policies:
        raise PolicyError(
            f"silver.{table}: bronze.{table} has no entry in {POLICY_FILE}; classify every "
            "column of it before it can be published to silver"
        )
    return policies[table]
