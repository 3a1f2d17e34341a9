"""The declared source tables: a YAML file in, validated `SourceTable`s out.

Adding a table to the platform is a change to this YAML file and nothing else:
assets, sensors and docs are generated from the parsed list.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from spanda_assets.lib.arrow_types import parse_type_name
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.files import config_text
from spanda_assets.lib.naming import snake_case
from spanda_assets.settings import ENV_SOURCES_FILE

Mode = Literal["append", "upsert"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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


# What each field holds: error messages say what to write, not only what is wrong.
_FIELD_HELP = {
    "table": "the source table's name, as in the database",
    "schema": "the database schema of the table, as text (defaults.schema when left out)",
    "name": "the bronze table / asset name, snake_case (letters, digits, _)",
    "primary_key": "a column name or a list of them",
    "cursor": (
        "a column that grows with new or changed rows (an identity key for append-only "
        "tables, ModifiedAt for tables whose rows change)"
    ),
    "mode": "'append' (rows never change) or 'upsert' (rows change, merged on the key)",
    "description": "text shown on the asset in the Dagster UI",
    "column_types": "a mapping of source column names to types (float64, string, date, ...)",
}
_NO_SOURCES = "must have a top-level 'sources:' list (one mapping per source table)"


def _text_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _check_name(value: str | None) -> str | None:
    if value and not _NAME.match(value):
        raise PydanticCustomError(
            "snake_case",
            "name {name} must be snake_case (letters, digits, _)",
            {"name": repr(value)},
        )
    return value


def _stringify_map(value: Any) -> Any:
    # YAML reads a column name or a type such as `1` as a number; both are names here
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else value


def _check_type_name(value: str) -> str:
    try:
        parse_type_name(value)
    except ValueError as exc:
        raise PydanticCustomError("arrow_type", "{reason}", {"reason": str(exc)}) from None
    return value


def _none_if_empty(value: Any) -> Any:
    return value or None


_NonEmpty = Annotated[StrictStr, StringConstraints(min_length=1)]


class _Entry(BaseModel):
    """One item of `sources:` as written in the YAML; `SourceTable` is what callers get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Annotated[StrictStr, StringConstraints(pattern=r"\S")]
    # `schema` would shadow a BaseModel attribute, hence the alias
    schema_: StrictStr | None = Field(default=None, alias="schema")
    name: Annotated[StrictStr | None, AfterValidator(_check_name)] = None
    primary_key: Annotated[
        tuple[_NonEmpty, ...], BeforeValidator(_text_or_list), Field(min_length=1)
    ]
    cursor: _NonEmpty
    mode: Mode = "append"
    description: Any = None
    column_types: Annotated[
        dict[str, Annotated[str, AfterValidator(_check_type_name)]] | None,
        BeforeValidator(_stringify_map),
    ] = None

    @model_validator(mode="after")
    def _derived_name(self) -> _Entry:
        """A name left out is the table's snake_case, which must be a usable name too."""
        if self.name is None and not _NAME.match(snake_case(self.table)):
            raise PydanticCustomError(
                "derived_name",
                "the table name {table} gives no usable bronze name ({name})",
                {"table": repr(self.table), "name": repr(snake_case(self.table))},
            )
        return self

    def source_table(self, default_schema: str | None) -> SourceTable:
        return SourceTable(
            table=self.table,
            primary_key=self.primary_key,
            cursor=self.cursor,
            mode=self.mode,
            # an explicit `schema: null` means "no schema", not "the default"
            schema=self.schema_ if "schema_" in self.model_fields_set else default_schema,
            name=self.name or snake_case(self.table),
            description=str(self.description or ""),
            column_types=dict(self.column_types or {}),
        )


class _Defaults(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_: StrictStr | None = Field(default=None, alias="schema")


class _Document(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    defaults: Annotated[_Defaults | None, BeforeValidator(_none_if_empty)] = None
    sources: list[_Entry]


_ENTRY_KEYS = sorted(f.alias or n for n, f in _Entry.model_fields.items())
Loc = tuple[int | str, ...]


def _mark_at(root: yaml.Node | None, loc: Loc) -> yaml.Mark | None:
    """Where the YAML node at a pydantic `loc` path starts, or its deepest existing parent.

    A field points at its key (`mode:`), a list item at the item, and a field that is
    missing at the entry that lacks it.
    """
    node, mark = root, root.start_mark if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if pair is None:
                break
            mark, node = pair[0].start_mark, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark


def _position(origin: str, mark: yaml.Mark | None) -> str:
    # marks count from 0; editors and people count from 1
    return f"{origin}, line {mark.line + 1}, column {mark.column + 1}" if mark else origin


def _subject(doc: Any, index: int) -> str:
    """`source table 'T'` when the entry names its table, else `sources[i]`."""
    sources = doc.get("sources") if isinstance(doc, dict) else None
    entry = sources[index] if isinstance(sources, list) and index < len(sources) else None
    table = entry.get("table") if isinstance(entry, dict) else None
    if isinstance(table, str) and table.strip():
        return f"source table {table!r}"
    return f"sources[{index}]"


def _problem(error: ErrorDetails, doc: Any) -> tuple[Loc, str]:
    """The path in the YAML an error is about, and what to tell the user."""
    loc: Loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    if loc[:1] == ("defaults",):
        if len(loc) == 1:
            return loc, f"'defaults' must be a mapping that may set 'schema', got {value!r}"
        return loc, f"'defaults.schema' must be the database schema, as text, got {value!r}"
    if len(loc) < 2:  # the document is not a mapping, or `sources` is missing or no list
        return loc, _NO_SOURCES
    index = int(loc[1])
    if kind == "derived_name":
        return (*loc, "table"), (
            f"sources[{index}]: {error['msg']}; add a 'name:' in snake_case (letters, "
            "digits, _; starting with a letter)"
        )
    if len(loc) == 2:
        return loc, (
            f"sources[{index}] must be a mapping with table, primary_key, cursor and mode, "
            f"got {value!r}"
        )
    field = str(loc[2]).removesuffix("_")
    subject = _subject(doc, index)
    if kind in ("extra_forbidden", "invalid_key"):
        close = difflib.get_close_matches(field, _ENTRY_KEYS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return loc, f"{subject}: unknown key {field!r}; {hint}allowed keys: {_ENTRY_KEYS}"
    if field == "mode":
        return loc, f"{subject}: mode must be 'append' or 'upsert', got {value!r}"
    if kind == "snake_case":
        return loc, f"{subject}: {error['msg']}; leave 'name' out to use the table's snake_case"
    if field == "column_types" and len(loc) > 3:
        return loc, f"{subject}: column_types.{loc[3]}: {error['msg']}"
    blank = value is None or (isinstance(value, str) and not value.strip())
    if kind == "missing" or (len(loc) == 3 and blank):
        return loc, f"{subject}: {field!r} is required: {_FIELD_HELP.get(field, '')}"
    return loc, f"{subject}: {field!r} must be {_FIELD_HELP.get(field, '')}, got {value!r}"


def _config_error(exc: ValidationError, doc: Any, root: yaml.Node | None, origin: str) -> str:
    """One line per problem, in the order of the file, each with its line and column."""
    found: dict[str, tuple[int, int]] = {}
    for error in exc.errors(include_url=False):
        loc, problem = _problem(error, doc)
        mark = _mark_at(root, loc)
        found.setdefault(
            f"{_position(origin, mark)}: {problem}",
            (mark.line, mark.column) if mark else (-1, -1),
        )
    return "\n".join(sorted(found, key=found.__getitem__))


def _compose(text: str, origin: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree, which keeps the line and column of every value."""
    loader = yaml.SafeLoader(text)
    loader.name = origin  # YAML syntax errors then name the file, not "<unicode string>"
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def parse_sources(text: str, origin: str = "sources.yaml") -> list[SourceTable]:
    """Parse and validate a sources YAML document.

    Errors name the file, the line and column, the entry and field, and what to write.
    """
    doc, root = _compose(text, origin)
    try:
        parsed = _Document.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        raise ConfigError(_config_error(exc, doc, root, origin)) from None
    default_schema = parsed.defaults.schema_ if parsed.defaults else None
    tables = [entry.source_table(default_schema) for entry in parsed.sources]
    seen: dict[str, str] = {}
    for index, (entry, t) in enumerate(zip(parsed.sources, tables, strict=True)):
        if t.name in seen:
            where = _mark_at(root, ("sources", index, "name" if entry.name else "table"))
            raise ConfigError(
                f"{_position(origin, where)}: tables {seen[t.name]!r} and {t.table!r} both map "
                f"to bronze.{t.name}; give one of them a distinct 'name'"
            )
        seen[t.name] = t.table
    return tables


def sources_path() -> Path | None:
    """The user's sources file, if SPANDA_SOURCES_FILE points to one."""
    raw = os.environ.get(ENV_SOURCES_FILE)
    return Path(raw) if raw else None


def load_sources(path: Path | None = None) -> list[SourceTable]:
    """Load the sources file from `path`, SPANDA_SOURCES_FILE, or the packaged default."""
    text, origin = config_text(path or sources_path(), ENV_SOURCES_FILE, "config/sources.yaml")
    return parse_sources(text, origin=origin)
