"""The declared source tables: a YAML file in, validated `SourceTable`s out.

Adding a table to the platform is a change to this YAML file and nothing else:
assets, sensors and docs are generated from the parsed list.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from spanda_assets.lib.errors import ConfigError
from spanda_assets.settings import ENV_SOURCES_FILE

Mode = Literal["append", "upsert"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_ALLOWED_KEYS = {
    "table",
    "schema",
    "name",
    "primary_key",
    "cursor",
    "mode",
    "description",
    "column_types",
}


def snake_case(name: str) -> str:
    """`ForumPosts` -> `forum_posts`, `StudentID` -> `student_id`, `LastLoginIP` -> `last_login_ip`.

    Lakehouse engines (Trino, Dremio, Spark) fold or quote mixed-case names
    differently; snake_case reads the same in all of them.
    """
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s)
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s)
    return s.strip("_").lower()


@dataclass(frozen=True)
class SourceTable:
    """One operational table and how to extract it."""

    table: str
    primary_key: tuple[str, ...]
    cursor: str
    mode: Mode
    schema: str | None = None
    name: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # Source column -> the Arrow type bronze keeps it as, when the declared SQL type is
    # not what the column holds (numbers in a TEXT column, dates as strings).
    column_types: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}" if self.schema else self.table

    @property
    def bronze_identifier(self) -> tuple[str, str]:
        return ("bronze", self.name)


def _parse_entry(entry: Any, index: int, defaults: dict[str, Any], origin: str) -> SourceTable:
    where = f"{origin}: sources[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} must be a mapping with table, primary_key, cursor and mode")
    unknown = set(entry) - _ALLOWED_KEYS
    if unknown:
        raise ConfigError(
            f"{where} ({entry.get('table', '?')}): unknown key(s) {sorted(unknown)}; "
            f"allowed: {sorted(_ALLOWED_KEYS)}"
        )
    table = entry.get("table")
    if not isinstance(table, str) or not table.strip():
        raise ConfigError(f"{where}: 'table' is required (the source table's name)")
    where = f"{origin}: source table {table!r}"
    pk = entry.get("primary_key")
    if isinstance(pk, str):
        pk = [pk]
    if not pk or not isinstance(pk, list) or not all(isinstance(c, str) and c for c in pk):
        raise ConfigError(f"{where}: 'primary_key' must be a column name or a list of them")
    cursor = entry.get("cursor")
    if not isinstance(cursor, str) or not cursor:
        raise ConfigError(
            f"{where}: 'cursor' is required: a column that grows with new or changed rows "
            "(an identity key for append-only tables, ModifiedAt for tables whose rows change)"
        )
    mode = entry.get("mode", "append")
    if mode not in ("append", "upsert"):
        raise ConfigError(f"{where}: mode must be 'append' or 'upsert', got {mode!r}")
    name = entry.get("name") or snake_case(table)
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} must be snake_case (letters, digits, _)")
    schema = entry.get("schema", defaults.get("schema"))
    column_types = entry.get("column_types") or {}
    if not isinstance(column_types, dict):
        raise ConfigError(f"{where}: column_types must map source column names to types")
    from spanda_assets.lib.arrow_types import parse_type_name

    for column, type_name in column_types.items():
        try:
            parse_type_name(str(type_name))
        except ValueError as exc:
            raise ConfigError(f"{where}: column_types.{column}: {exc}") from None
    return SourceTable(
        table=table,
        primary_key=tuple(pk),
        cursor=cursor,
        mode=mode,
        schema=schema,
        name=name,
        description=str(entry.get("description") or ""),
        column_types={str(k): str(v) for k, v in column_types.items()},
    )


def parse_sources(text: str, origin: str = "sources.yaml") -> list[SourceTable]:
    """Parse and validate a sources YAML document."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list):
        raise ConfigError(f"{origin} must have a top-level 'sources:' list")
    defaults = doc.get("defaults") or {}
    tables = [_parse_entry(e, i, defaults, origin) for i, e in enumerate(doc["sources"])]
    seen: dict[str, str] = {}
    for t in tables:
        if t.name in seen:
            raise ConfigError(
                f"{origin}: tables {seen[t.name]!r} and {t.table!r} both map to bronze.{t.name}; "
                "give one of them a distinct 'name'"
            )
        seen[t.name] = t.table
    return tables


def sources_path() -> Path | None:
    """The user's sources file, if SPANDA_SOURCES_FILE points to one."""
    raw = os.environ.get(ENV_SOURCES_FILE)
    return Path(raw) if raw else None


def load_sources(path: Path | None = None) -> list[SourceTable]:
    """Load the sources file from `path`, SPANDA_SOURCES_FILE, or the packaged default."""
    path = path or sources_path()
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{ENV_SOURCES_FILE}={path} does not exist")
        return parse_sources(path.read_text(encoding="utf-8"), origin=str(path))
    text = resources.files("spanda_assets").joinpath("config/sources.yaml").read_text("utf-8")
    return parse_sources(text, origin="spanda_assets/config/sources.yaml")
