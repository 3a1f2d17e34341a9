"""The declared datasets: a YAML file in, validated `DatasetDeclaration`s out.

Publishing a table with a DOI is a change to this YAML file and nothing else. A
declaration carries everything DataCite and a reuser need that the table itself does
not know: title, abstract, creators, subjects, licence, the data use agreement and
what each column holds. The table must be in silver or gold: those are the
de-identified, audited layers; bronze holds personal data and can never be published.

A declaration that lacks something is refused with one error that lists every
problem of every dataset at once (with its line and column), so a steward fixes the
file in one pass instead of one field per run.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

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
)
from pydantic_core import ErrorDetails, PydanticCustomError
from stdnum.iso7064 import mod_11_2

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.files import config_text

ENV_DATASETS_FILE = "SPANDA_DATASETS_FILE"
PACKAGED = "config/datasets.yaml"
# Only these layers are de-identified and gated by blocking checks (ARCHITECTURE.md).
PUBLISHABLE_NAMESPACES = ("silver", "gold")
DEFAULT_LANGUAGE = "en"

NameType = Literal["Personal", "Organizational"]
# How much a column can tell about a person, for the access policy (config/access):
# public columns come with the dataset; a quasi-identifier (a pseudonym that links rows
# across datasets, a small-cell attribute) only for a purpose the column names; a
# restricted column only to stewards.
Sensitivity = Literal["public", "quasi_identifier", "restricted"]
Tier = Literal["open", "restricted"]
SENSITIVITIES: tuple[str, ...] = ("public", "quasi_identifier", "restricted")

DATASET_ID = re.compile(r"^[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*$")
_TABLE = re.compile(r"^(?P<namespace>[a-z][a-z0-9_]*)\.(?P<name>[a-z][a-z0-9_]*)$")
_ORCID = re.compile(r"^(?:https?://orcid\.org/)?(\d{4})-?(\d{4})-?(\d{4})-?(\d{3}[\dX])$")
_ROR = re.compile(r"^(?:https?://ror\.org/)?(0[a-z0-9]{6}\d{2})$")
# SPDX ids (CC-BY-4.0, Apache-2.0, LicenseRef-...): letters, digits, '.', '-' and '+'.
_SPDX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*$")
# BCP 47 in the shape DataCite expects: a 2-3 letter language, optional subtags.
_LANGUAGE = re.compile(r"^[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{2,8})*$")


@dataclass(frozen=True)
class Creator:
    """A person or organisation credited for the data (DataCite Creator)."""

    name: str
    name_type: NameType
    affiliation: str | None = None
    orcid: str | None = None  # always the https://orcid.org/... form


@dataclass(frozen=True)
class Subject:
    """A subject term: free text, or a term from a named scheme (DataCite Subject)."""

    subject: str
    scheme: str | None = None
    scheme_uri: str | None = None
    value_uri: str | None = None


@dataclass(frozen=True)
class Licence:
    """The licence a dataset is released under, by SPDX id."""

    id: str
    url: str
    title: str | None = None


@dataclass(frozen=True)
class DataUseAgreement:
    """The agreement a reader accepts before access (DUA)."""

    id: str
    title: str
    url: str


@dataclass(frozen=True)
class Publisher:
    """Who publishes the dataset (DataCite Publisher, mandatory)."""

    name: str
    ror: str | None = None  # always the https://ror.org/... form


@dataclass(frozen=True)
class ColumnAccess:
    """A column's sensitivity and, for a quasi-identifier, the purposes it serves."""

    sensitivity: Sensitivity = "public"
    purposes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessRules:
    """Who may read a dataset's rows, as its steward declared (the policy decides).

    tier       open: any holder of a token with the signed DUA and an approved purpose
               among `purposes`; restricted: the same, and the principal's institution
               must be the publisher's (or the principal a steward)
    purposes   the purposes the data may be used for: what its subjects consented to
    columns    column -> ColumnAccess; a column not named is public
    """

    tier: Tier = "restricted"
    purposes: tuple[str, ...] = ("research",)
    columns: Mapping[str, ColumnAccess] = field(default_factory=dict, compare=False)

    def column(self, name: str) -> ColumnAccess:
        return self.columns.get(name, ColumnAccess())


@dataclass(frozen=True)
class DatasetDeclaration:
    """One table published as a citable dataset, as its steward declared it."""

    id: str
    title: str
    description: str
    creators: tuple[Creator, ...]
    subjects: tuple[Subject, ...]
    licence: Licence
    dua: DataUseAgreement
    table: str
    publisher: Publisher
    columns: Mapping[str, str] = field(default_factory=dict, compare=False)
    grade_levels: tuple[str, ...] = ()
    language: str = DEFAULT_LANGUAGE
    keywords: tuple[str, ...] = ()
    access: AccessRules = field(default_factory=AccessRules, compare=False)

    @property
    def namespace(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def identifier(self) -> tuple[str, str]:
        """The Iceberg table identifier, as pyiceberg's `load_table` takes it."""
        namespace, name = self.table.split(".", 1)
        return (namespace, name)


# What each field holds: every message says what to write, not only what is wrong.
_EXAMPLE_LICENCE = "{id: CC-BY-4.0, url: https://creativecommons.org/licenses/by/4.0/legalcode}"
_FIELD_HELP = {
    "id": (
        "the dataset's name in DOIs and URLs: lowercase letters and digits, words joined "
        "by '_' or '-', e.g. validated_posts"
    ),
    "title": "the dataset's citation title, as text",
    "description": "the abstract: what the rows are and where they come from, as text",
    "creators": "a list of who made the data, e.g. [{name: Example University}]",
    "creators.name": "the creator's name ('Family, Given' for a person, or an organisation)",
    "creators.name_type": "Personal or Organizational",
    "creators.affiliation": "the creator's organisation, as text",
    "creators.orcid": "an ORCID iD such as https://orcid.org/0000-0002-1825-0097",
    "subjects": "a list of subjects: free text, or {subject, scheme, scheme_uri, value_uri}",
    "subjects.subject": "the subject term, as text",
    "subjects.scheme": "the name of the subject scheme, as text",
    "subjects.scheme_uri": "the URL of the subject scheme (http or https)",
    "subjects.value_uri": "the URL of the term in its scheme (http or https)",
    "licence": f"the licence, e.g. {_EXAMPLE_LICENCE}",
    "licence.id": "the licence's SPDX identifier, e.g. CC-BY-4.0 or CC0-1.0",
    "licence.url": "the URL of the licence text (http or https)",
    "licence.title": "the licence's full name, as text",
    "dua": (
        "the data use agreement readers accept: {id, title, url}, e.g. {id: dua-1.0, "
        "title: Data use agreement 1.0, url: https://example.org/dua/1.0}"
    ),
    "dua.id": "the agreement's identifier (name and version), as text",
    "dua.title": "the agreement's title, as text",
    "dua.url": "the URL where the agreement can be read (http or https)",
    "table": (
        "the Iceberg table to publish as <namespace>.<table>, in silver or gold, "
        "e.g. gold.validated_posts"
    ),
    "grade_levels": "a list of grade levels, e.g. ['09', '10', UG]",
    "language": "a BCP 47 language code of the text, e.g. en or en-GB",
    "keywords": "a list of free-text keywords",
    "columns": (
        "a mapping of every published column to what it holds, e.g. "
        "{post_id: pseudonym of the post}"
    ),
    "publisher": "who publishes the data: {name: ..., ror: optional ROR id}",
    "publisher.name": "the publishing organisation's name, as text",
    "publisher.ror": "the publisher's ROR id, e.g. https://ror.org/03yrm5c26",
    "datasets": "a top-level 'datasets:' list, one mapping per published dataset",
    "access": (
        "who may read the rows: {tier: open|restricted, purposes: [research, ...], "
        "columns: {subject_id: {sensitivity: quasi_identifier, purposes: [...]}}}"
    ),
    "access.tier": "open or restricted",
    "access.purposes": "a list of purposes the data may be used for, e.g. [research]",
    "access.columns": (
        "a mapping of column -> {sensitivity: public|quasi_identifier|restricted, purposes: [...]}"
    ),
}


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text_item(key: str) -> Any:
    """Let a list item be written as plain text when it has one required field."""

    def wrap(value: Any) -> Any:
        return {key: value} if isinstance(value, str) else value

    return wrap


def _as_text(value: Any) -> Any:
    # YAML reads grade 10 as a number; a grade level is a name here
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


def _text_keys(value: Any) -> Any:
    # YAML reads a column named `2024` or `true` as a number or a boolean; it is a name
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise PydanticCustomError("url", "{value} is not an http(s) URL", {"value": repr(value)})
    return value


def _orcid(value: str) -> str:
    match = _ORCID.match(value.strip())
    digits = "".join(match.groups()) if match else ""
    if not match or not mod_11_2.is_valid(digits):
        raise PydanticCustomError(
            "orcid",
            "{value} is not a valid ORCID iD (16 digits, the last a checksum)",
            {"value": repr(value)},
        )
    return "https://orcid.org/" + "-".join(match.groups())


def _ror(value: str) -> str:
    match = _ROR.match(value.strip())
    if not match:
        raise PydanticCustomError("ror", "{value} is not a ROR id", {"value": repr(value)})
    return f"https://ror.org/{match.group(1)}"


def _pattern(regex: re.Pattern[str], kind: str) -> Any:
    def check(value: str) -> str:
        if not regex.match(value):
            raise PydanticCustomError(kind, "{value} is not valid", {"value": repr(value)})
        return value

    return check


def _publishable(value: str) -> str:
    match = _TABLE.match(value)
    if not match:
        raise PydanticCustomError("table_name", "{value} is not valid", {"value": repr(value)})
    if match["namespace"] not in PUBLISHABLE_NAMESPACES:
        raise PydanticCustomError(
            "namespace",
            "table {table} is in namespace {namespace}: only silver and gold tables can be "
            "published (they are de-identified and audited; bronze holds personal data)",
            {"table": repr(value), "namespace": repr(match["namespace"])},
        )
    return value


_Text = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
_Url = Annotated[StrictStr, StringConstraints(strip_whitespace=True), AfterValidator(_http_url)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Creator(_Strict):
    name: _Text
    name_type: NameType | None = None
    affiliation: _Text | None = None
    orcid: Annotated[StrictStr, AfterValidator(_orcid)] | None = None

    def build(self) -> Creator:
        # DataCite asks for nameType; an ORCID or "Family, Given" means a person
        personal = self.orcid is not None or "," in self.name
        kind: NameType = self.name_type or ("Personal" if personal else "Organizational")
        return Creator(self.name, kind, self.affiliation, self.orcid)


class _Subject(_Strict):
    subject: _Text
    scheme: _Text | None = None
    scheme_uri: _Url | None = None
    value_uri: _Url | None = None

    def build(self) -> Subject:
        return Subject(self.subject, self.scheme, self.scheme_uri, self.value_uri)


class _Licence(_Strict):
    id: Annotated[StrictStr, AfterValidator(_pattern(_SPDX, "spdx"))]
    url: _Url
    title: _Text | None = None


class _Dua(_Strict):
    id: _Text
    title: _Text
    url: _Url


_Purpose = Annotated[StrictStr, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


class _ColumnAccess(_Strict):
    sensitivity: Sensitivity = "public"
    purposes: list[_Purpose] = Field(default_factory=list)


class _Access(_Strict):
    tier: Tier = "restricted"
    purposes: Annotated[list[_Purpose], Field(min_length=1)] = Field(
        default_factory=lambda: ["research"]
    )
    columns: dict[StrictStr, _ColumnAccess] = Field(default_factory=dict)

    def build(self) -> AccessRules:
        return AccessRules(
            tier=self.tier,
            purposes=tuple(self.purposes),
            columns={
                name: ColumnAccess(c.sensitivity, tuple(c.purposes))
                for name, c in self.columns.items()
            },
        )


class _Publisher(_Strict):
    name: _Text
    ror: Annotated[StrictStr, AfterValidator(_ror)] | None = None


class _Entry(_Strict):
    """One item of `datasets:` as written in the YAML; `DatasetDeclaration` is what callers
    get."""

    id: Annotated[
        StrictStr, AfterValidator(_pattern(DATASET_ID, "dataset_id")), Field(max_length=64)
    ]
    title: _Text
    description: _Text
    creators: Annotated[
        list[Annotated[_Creator, BeforeValidator(_text_item("name"))]], Field(min_length=1)
    ]
    subjects: Annotated[
        list[Annotated[_Subject, BeforeValidator(_text_item("subject"))]], Field(min_length=1)
    ]
    licence: _Licence
    dua: _Dua
    table: Annotated[StrictStr, AfterValidator(_publishable)]
    columns: Annotated[dict[StrictStr, _Text], BeforeValidator(_text_keys), Field(min_length=1)]
    publisher: _Publisher | None = None
    grade_levels: list[Annotated[_Text, BeforeValidator(_as_text)]] = Field(default_factory=list)
    language: Annotated[StrictStr, AfterValidator(_pattern(_LANGUAGE, "language"))] = (
        DEFAULT_LANGUAGE
    )
    keywords: list[_Text] = Field(default_factory=list)
    access: _Access = Field(default_factory=_Access)

    def build(self, publisher: _Publisher | None) -> DatasetDeclaration:
        chosen = self.publisher or publisher
        assert chosen is not None  # parse_datasets refused a dataset without one
        return DatasetDeclaration(
            id=self.id,
            title=self.title,
            description=self.description,
            creators=tuple(c.build() for c in self.creators),
            subjects=tuple(s.build() for s in self.subjects),
            licence=Licence(self.licence.id, self.licence.url, self.licence.title),
            dua=DataUseAgreement(self.dua.id, self.dua.title, self.dua.url),
            table=self.table,
            publisher=Publisher(chosen.name, chosen.ror),
            columns=dict(self.columns),
            grade_levels=tuple(self.grade_levels),
            language=self.language,
            keywords=tuple(self.keywords),
            access=self.access.build(),
        )


_ALLOWED_KEYS = {
    "": sorted(_Entry.model_fields),
    "creators": sorted(_Creator.model_fields),
    "subjects": sorted(_Subject.model_fields),
    "licence": sorted(_Licence.model_fields),
    "dua": sorted(_Dua.model_fields),
    "publisher": sorted(_Publisher.model_fields),
    "access": sorted(_Access.model_fields),
}
_DOCUMENT_KEYS = ["datasets", "publisher"]

Loc = tuple[int | str, ...]


def _mark_at(root: yaml.Node | None, loc: Loc) -> yaml.Mark | None:
    """Where the YAML node at `loc` starts; for a missing key, the mapping that lacks it."""
    node, mark = root, root.start_mark if root is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = [
                (k, v)
                for k, v in node.value
                if isinstance(k, yaml.ScalarNode) and k.value == str(part)
            ]
            if not found:
                break
            mark, node = found[0][0].start_mark, found[0][1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if not 0 <= part < len(node.value):
                break
            node = node.value[part]
            mark = node.start_mark
        else:
            break
    return mark


def _dotted(loc: Loc) -> str:
    """`('creators', 0, 'orcid')` -> `creators[0].orcid`, as a steward would point at it."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _help_key(loc: Loc) -> str:
    return ".".join(str(p) for p in loc if not isinstance(p, int))


def _help_for(loc: Loc) -> str:
    """What the field at `loc` holds; a column's description is any text."""
    parts = [str(p) for p in loc if not isinstance(p, int)]
    if parts[:1] == ["columns"] and len(parts) > 1:
        return f"what column {parts[1]!r} holds, as text"
    while parts:
        if ".".join(parts) in _FIELD_HELP:
            return _FIELD_HELP[".".join(parts)]
        parts.pop()
    return ""


def _field_problem(error: ErrorDetails, within: Loc = ()) -> tuple[Loc, str]:
    """The path inside one dataset entry (or `within` the file) an error is about, and what
    to tell the steward."""
    loc: Loc = tuple(error["loc"])
    kind, value = error["type"], error.get("input")
    # pydantic appends the validator's own step ('function-after[...]') to some locations
    loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
    where = _dotted(within + loc)
    help_text = _help_for(within + loc)
    if kind == "extra_forbidden":
        parent = _help_key(within + loc[:-1])
        allowed = _ALLOWED_KEYS.get(parent, [])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return loc, f"unknown key {where!r}; {hint}allowed keys here: {allowed}"
    if kind == "missing" or (kind.startswith("string_") and _blank(value)):
        return loc, f"{where!r} is required: {help_text}"
    if kind == "too_short" and isinstance(value, list | dict) and not value:
        return loc, f"{where!r} must not be empty: {help_text}"
    if kind == "namespace":
        return loc, f"{error['msg']}; declare a silver.* or gold.* table"
    if kind in ("url", "orcid", "ror"):
        return loc, f"{where!r}: {error['msg']}; write {help_text}"
    return loc, f"{where!r} must be {help_text}, got {value!r}"


@dataclass
class _Problems:
    """Problems of the file, grouped by the dataset they belong to."""

    origin: str
    root: yaml.Node | None
    by_dataset: dict[int | None, list[tuple[tuple[int, int], str]]] = field(default_factory=dict)

    def add(self, dataset: int | None, loc: Loc, text: str) -> None:
        mark = _mark_at(self.root, loc)
        position = (mark.line, mark.column) if mark else (-1, -1)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        found = self.by_dataset.setdefault(dataset, [])
        if (position, where + text) not in found:
            found.append((position, where + text))

    def message(self, datasets: list[Any]) -> str:
        count = sum(len(v) for v in self.by_dataset.values())
        lines = [f"{self.origin}: {count} problem(s); nothing is published until they are fixed:"]
        for index in sorted(self.by_dataset, key=lambda i: -1 if i is None else i):
            lines.append(self._heading(index, datasets))
            lines.extend(f"  - {text}" for _, text in sorted(self.by_dataset[index]))
        return "\n".join(lines)

    def _heading(self, index: int | None, datasets: list[Any]) -> str:
        if index is None:
            return "the file:"
        entry = datasets[index] if index < len(datasets) else None
        raw_id = entry.get("id") if isinstance(entry, dict) else None
        mark = _mark_at(self.root, ("datasets", index))
        line = f", line {mark.line + 1}" if mark else ""
        if isinstance(raw_id, str) and raw_id.strip():
            return f"dataset {raw_id!r} (datasets[{index}]{line}):"
        return f"datasets[{index}]{line} (no id):"


def _compose(text: str, origin: str) -> tuple[Any, yaml.Node | None]:
    """The document and its node tree, which keeps the line and column of every value."""
    loader = yaml.SafeLoader(text)
    loader.name = origin  # YAML syntax errors then name the file
    try:
        root = loader.get_single_node()
        return (loader.construct_document(root) if root is not None else None), root
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin} is not valid YAML: {exc}") from exc
    finally:
        loader.dispose()


def _check_document(doc: Any, problems: _Problems) -> tuple[list[Any], _Publisher | None, bool]:
    """The raw `datasets:` list, the file's publisher, and whether the file names one.

    The publisher is checked on its own, so a mistake there does not hide the problems
    of the datasets below it.
    """
    if not isinstance(doc, dict):
        problems.add(None, (), f"the file must have {_FIELD_HELP['datasets']}")
        return [], None, False
    for key in doc:
        if key not in _DOCUMENT_KEYS:
            close = difflib.get_close_matches(str(key), _DOCUMENT_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            problems.add(
                None, (key,), f"unknown top-level key {key!r}; {hint}allowed: {_DOCUMENT_KEYS}"
            )
    datasets = doc.get("datasets")
    if not isinstance(datasets, list):
        problems.add(None, ("datasets",), f"the file must have {_FIELD_HELP['datasets']}")
        datasets = []
    publisher = None
    if doc.get("publisher") is not None:
        try:
            publisher = _Publisher.model_validate(doc["publisher"])
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc, text = _field_problem(error, ("publisher",))
                problems.add(None, ("publisher", *loc), text)
    return datasets, publisher, doc.get("publisher") is not None


def _check_entries(datasets: list[Any], has_publisher: bool, problems: _Problems) -> list[_Entry]:
    """Validate every entry (all of them, so the error lists every problem at once)."""
    entries: list[_Entry] = []
    for index, raw in enumerate(datasets):
        base: Loc = ("datasets", index)
        if not isinstance(raw, dict):
            problems.add(
                index, base, f"each dataset must be a mapping with id, title, ..., got {raw!r}"
            )
            continue
        try:
            entry = _Entry.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                loc, text = _field_problem(error)
                problems.add(index, base + loc, text)
            continue
        if entry.publisher is None and not has_publisher:
            problems.add(
                index,
                base,
                f"'publisher' is required: {_FIELD_HELP['publisher']}, at the top of the "
                "file or in the dataset",
            )
            continue
        entries.append(entry)
    return entries


def _check_duplicates(datasets: list[Any], problems: _Problems) -> None:
    first: dict[str, int] = {}
    for index, raw in enumerate(datasets):
        raw_id = raw.get("id") if isinstance(raw, dict) else None
        if not isinstance(raw_id, str):
            continue
        if raw_id in first:
            mark = _mark_at(problems.root, ("datasets", first[raw_id]))
            line = f" (line {mark.line + 1})" if mark else ""
            problems.add(
                index,
                ("datasets", index, "id"),
                f"id {raw_id!r} is already used by datasets[{first[raw_id]}]{line}; ids must "
                "be unique: each names a DOI",
            )
        else:
            first[raw_id] = index


def parse_datasets(text: str, origin: str = "datasets.yaml") -> list[DatasetDeclaration]:
    """Parse and validate a datasets YAML document.

    Raises one `ConfigError` that lists every problem of every dataset (dataset id, field,
    line and column, what to write): a missing or invalid field, a table outside silver
    and gold, a duplicate id.
    """
    doc, root = _compose(text, origin)
    problems = _Problems(origin, root)
    datasets, publisher, has_publisher = _check_document(doc, problems)
    entries = _check_entries(datasets, has_publisher, problems)
    _check_duplicates(datasets, problems)
    if problems.by_dataset:
        raise ConfigError(problems.message(datasets))
    return [entry.build(publisher) for entry in entries]


def datasets_path() -> Path | None:
    """The user's datasets file, if SPANDA_DATASETS_FILE points to one."""
    raw = os.environ.get(ENV_DATASETS_FILE)
    return Path(raw) if raw else None


def load_datasets(path: Path | None = None) -> list[DatasetDeclaration]:
    """Load the datasets file from `path`, SPANDA_DATASETS_FILE, or the packaged default."""
    text, origin = config_text(path or datasets_path(), ENV_DATASETS_FILE, PACKAGED)
    return parse_datasets(text, origin=origin)


def dataset_by_id(datasets: Iterable[DatasetDeclaration], dataset_id: str) -> DatasetDeclaration:
    """The declaration named `dataset_id`; the error lists the declared ids to choose from."""
    declared = list(datasets)
    for dataset in declared:
        if dataset.id == dataset_id:
            return dataset
    ids = ", ".join(d.id for d in declared) or "none"
    raise ConfigError(
        f"no dataset {dataset_id!r} is declared (declared: {ids}); add it to the datasets "
        f"file ({ENV_DATASETS_FILE} or the packaged {PACKAGED})"
    )


def column_problems(dataset: DatasetDeclaration, columns: Iterable[str]) -> list[str]:
    """What is wrong between the declared column descriptions and a table's real columns.

    A published column without a description cannot be reused with confidence, and a
    described column the table lacks means the declaration is out of date: both are
    reported, one line each, for the publishing step to refuse or warn.
    """
    actual = list(columns)
    problems = [
        f"dataset {dataset.id!r}: column {c!r} of {dataset.table} has no description; "
        f"add it under 'columns:'"
        for c in actual
        if c not in dataset.columns
    ]
    problems += [
        f"dataset {dataset.id!r}: described column {c!r} is not in {dataset.table}; remove it "
        "from 'columns:' or fix its name"
        for c in dataset.columns
        if c not in actual
    ]
    problems += [
        f"dataset {dataset.id!r}: access rule for column {c!r}, which is not in "
        f"{dataset.table}; remove it from 'access: columns:' or fix its name"
        for c in dataset.access.columns
        if c not in actual
    ]
    return problems
