"""DataCite Metadata Schema 4.5 records for published dataset versions and their concept.

Versioning follows Zenodo: one concept DOI stands for the dataset across versions
(its record lists every version with HasVersion), and each published version of the
table (one Iceberg snapshot) gets its own DOI, pointing back with IsVersionOf and to
its neighbours with IsNewVersionOf / IsPreviousVersionOf. A version names the
snapshot it is (an alternate identifier) and the tables it derives from
(IsDerivedFrom), so a citation leads back to the exact rows and their lineage.

Records are plain dicts in DataCite's JSON shape, checked against DataCite's own JSON
schema from the `datacite` package before they leave this module: a record that would
be refused at registration is refused here, with every violation listed. The same
dict serialises to DataCite XML and to the REST API's JSON:API payload.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from datacite import schema45

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.publish.datasets import Creator, DatasetDeclaration

SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
RESOURCE_TYPE_GENERAL = "Dataset"
RESOURCE_TYPE = "Table (Apache Iceberg)"
SPDX_URI = "https://spdx.org/licenses/"
ORCID_URI = "https://orcid.org"
ROR_URI = "https://ror.org"
# Iceberg has no registered URN namespace; this one is Spanda's own (not registered with
# IANA), stable enough for DataCite's relatedIdentifierType URN: table + snapshot id.
ICEBERG_URN = "urn:spanda:iceberg:"
# DataCite's properties that every record must have (schema 4.5, section 2.2).
MANDATORY = {
    "doi": "Identifier",
    "creators": "Creator",
    "titles": "Title",
    "publisher": "Publisher",
    "publicationYear": "PublicationYear",
    "types": "ResourceType",
    "resourceTypeGeneral": "ResourceType (resourceTypeGeneral)",
}
Event = Literal["register", "publish", "hide"]

_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class MetadataError(SpandaError):
    """A DataCite record breaks the schema, or the facts it is built from are inconsistent.

    `violations` holds one readable line per problem (where, what is wrong).
    """

    def __init__(self, subject: str, violations: Sequence[str]) -> None:
        self.violations = tuple(violations)
        lines = "\n".join(f"  - {v}" for v in self.violations)
        super().__init__(
            f"DataCite 4.5 metadata for {subject} is not valid ({len(self.violations)} "
            f"problem(s)); DataCite would refuse it:\n{lines}"
        )


@dataclass(frozen=True)
class Distribution:
    """One downloadable file of a version (Parquet, CSV, ...), with its SHA-256 digest."""

    name: str
    media_type: str
    sha256: str
    byte_size: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class SourceSnapshot:
    """A table a version derives from, at the snapshot that was read.

    Identified in DataCite by its DOI when it was published itself, else by a URL
    where one serves it, else by the Iceberg snapshot URN.
    """

    table: str
    snapshot_id: int | None = None
    doi: str | None = None
    url: str | None = None

    def related_identifier(self) -> tuple[str, str]:
        """(identifier, DataCite relatedIdentifierType)."""
        if self.doi:
            return self.doi, "DOI"
        if self.url:
            return self.url, "URL"
        return iceberg_urn(self.table, self.snapshot_id), "URN"


@dataclass(frozen=True)
class VersionFacts:
    """What is known of one published version that the declaration cannot say.

    `table` and `snapshot_id` name the exact Iceberg rows; `previous_doi`/`next_doi`
    link the neighbouring versions where they exist; `sources` are the tables (and
    snapshots) the rows derive from.
    """

    version: int
    doi: str
    concept_doi: str
    table: str
    snapshot_id: int
    published: dt.date
    row_count: int
    byte_size: int
    formats: tuple[str, ...] = ()
    distributions: tuple[Distribution, ...] = ()
    previous_doi: str | None = None
    next_doi: str | None = None
    sources: tuple[SourceSnapshot, ...] = ()
    url: str | None = None  # the landing page; DataCite needs one to register

    @property
    def publication_year(self) -> str:
        return str(self.published.year)

    @property
    def all_formats(self) -> list[str]:
        """The declared formats and each distribution's media type, once each, in order."""
        return list(dict.fromkeys([*self.formats, *(d.media_type for d in self.distributions)]))


@dataclass(frozen=True)
class ConceptFacts:
    """The concept record: one DOI for every version of a dataset, listing them all."""

    concept_doi: str
    version_dois: tuple[str, ...]  # oldest first
    first_published: dt.date
    last_updated: dt.date | None = None
    url: str | None = None


def iceberg_urn(table: str, snapshot_id: int | None = None) -> str:
    """`urn:spanda:iceberg:gold.validated_posts:snapshot:42`: an Iceberg table (snapshot).

    Snapshot ids are random 63-bit numbers per table, so table + snapshot names one set
    of rows; without a snapshot the URN names the table as a whole.
    """
    urn = f"{ICEBERG_URN}{table}"
    return urn if snapshot_id is None else f"{urn}:snapshot:{snapshot_id}"


def _creator(creator: Creator) -> dict[str, Any]:
    out: dict[str, Any] = {"name": creator.name, "nameType": creator.name_type}
    if creator.name_type == "Personal" and "," in creator.name:
        family, given = (p.strip() for p in creator.name.split(",", 1))
        out |= {"givenName": given, "familyName": family}
    if creator.orcid:
        out["nameIdentifiers"] = [
            {
                "nameIdentifier": creator.orcid,
                "nameIdentifierScheme": "ORCID",
                "schemeUri": ORCID_URI,
            }
        ]
    if creator.affiliation:
        out["affiliation"] = [{"name": creator.affiliation}]
    return out


def _publisher(dataset: DatasetDeclaration) -> dict[str, Any]:
    out: dict[str, Any] = {"name": dataset.publisher.name}
    if dataset.publisher.ror:
        out |= {
            "publisherIdentifier": dataset.publisher.ror,
            "publisherIdentifierScheme": "ROR",
            "schemeUri": ROR_URI,
        }
    return out


def _subjects(dataset: DatasetDeclaration) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in dataset.subjects:
        item: dict[str, Any] = {"subject": s.subject}
        if s.scheme:
            item["subjectScheme"] = s.scheme
        if s.scheme_uri:
            item["schemeUri"] = s.scheme_uri
        if s.value_uri:
            item["valueUri"] = s.value_uri
        out.append(item)
    out += [{"subject": k} for k in dataset.keywords]
    out += [{"subject": f"grade level {g}"} for g in dataset.grade_levels]
    # the schema wants unique items; a keyword may repeat a subject
    unique: list[dict[str, Any]] = []
    for item in out:
        if item not in unique:
            unique.append(item)
    return unique


def _rights(dataset: DatasetDeclaration) -> list[dict[str, Any]]:
    licence = dataset.licence
    return [
        {
            "rights": licence.title or licence.id,
            "rightsUri": licence.url,
            "rightsIdentifier": licence.id,
            "rightsIdentifierScheme": "SPDX",
            "schemeUri": SPDX_URI,
        },
        # the agreement is a condition of access: DataCite's place for that is Rights
        {"rights": f"{dataset.dua.title} ({dataset.dua.id})", "rightsUri": dataset.dua.url},
    ]


def _columns_text(dataset: DatasetDeclaration) -> str:
    return "\n".join(f"- {name}: {text}" for name, text in dataset.columns.items())


def _access_text(dataset: DatasetDeclaration) -> str:
    return (
        f"Access requires accepting the data use agreement {dataset.dua.title!r} "
        f"({dataset.dua.id}, {dataset.dua.url}). Licence: {dataset.licence.id} "
        f"({dataset.licence.url})."
    )


def _version_technical(dataset: DatasetDeclaration, facts: VersionFacts) -> str:
    lines = [
        f"Apache Iceberg table {facts.table}, snapshot {facts.snapshot_id} "
        f"({iceberg_urn(facts.table, facts.snapshot_id)}): {facts.row_count} rows, "
        f"{facts.byte_size} bytes.",
    ]
    if facts.sources:
        derived = ", ".join(
            f"{s.table} snapshot {s.snapshot_id}" if s.snapshot_id is not None else s.table
            for s in facts.sources
        )
        lines.append(f"Derived from: {derived}.")
    lines += ["Columns:", _columns_text(dataset)]
    return "\n".join(lines)


def _distributions_text(distributions: Iterable[Distribution]) -> str:
    lines = ["Distributions (SHA-256 of each file):"]
    for d in distributions:
        size = f", {d.byte_size} bytes" if d.byte_size is not None else ""
        where = f", {d.url}" if d.url else ""
        lines.append(f"- {d.name} ({d.media_type}{size}{where}): sha256 {d.sha256}")
    return "\n".join(lines)


def _common(dataset: DatasetDeclaration, doi: str, year: str) -> dict[str, Any]:
    """The properties a version and its concept share, all from the declaration."""
    return {
        "doi": doi,
        "schemaVersion": SCHEMA_VERSION,
        "types": {"resourceTypeGeneral": RESOURCE_TYPE_GENERAL, "resourceType": RESOURCE_TYPE},
        "creators": [_creator(c) for c in dataset.creators],
        "titles": [{"title": dataset.title, "lang": dataset.language}],
        "publisher": _publisher(dataset),
        "publicationYear": year,
        "subjects": _subjects(dataset),
        "language": dataset.language,
        "rightsList": _rights(dataset),
    }


def _fact_problems(dataset: DatasetDeclaration, facts: VersionFacts) -> list[str]:
    problems = []
    for name in ("doi", "concept_doi", "previous_doi", "next_doi"):
        value = getattr(facts, name)
        if value is not None and not _DOI.match(value):
            problems.append(f"{name}: {value!r} is not a DOI (10.<prefix>/<suffix>)")
    if facts.doi == facts.concept_doi:
        problems.append("doi: a version's DOI must differ from the concept DOI")
    if facts.table != dataset.table:
        problems.append(
            f"table: the facts are of {facts.table}, but dataset {dataset.id!r} publishes "
            f"{dataset.table}"
        )
    if facts.version < 1:
        problems.append(f"version: versions count from 1, got {facts.version}")
    if facts.row_count < 0 or facts.byte_size < 0:
        problems.append("sizes: row_count and byte_size cannot be negative")
    problems += [
        f"distributions: {d.name}: sha256 must be 64 lowercase hex digits, got {d.sha256!r}"
        for d in facts.distributions
        if not _SHA256.match(d.sha256)
    ]
    problems += [
        f"sources: {s.table}: doi {s.doi!r} is not a DOI"
        for s in facts.sources
        if s.doi and not _DOI.match(s.doi)
    ]
    return problems


def build_version_metadata(dataset: DatasetDeclaration, facts: VersionFacts) -> dict[str, Any]:
    """The DataCite 4.5 record of one published version, validated.

    Raises `MetadataError` listing every problem when the facts are inconsistent with
    the declaration or the record breaks DataCite's schema.
    """
    problems = _fact_problems(dataset, facts)
    if problems:
        raise MetadataError(f"dataset {dataset.id!r} version {facts.version}", problems)
    record = _common(dataset, facts.doi, facts.publication_year)
    related: list[dict[str, Any]] = [_related(facts.concept_doi, "DOI", "IsVersionOf")]
    if facts.previous_doi:
        related.append(_related(facts.previous_doi, "DOI", "IsNewVersionOf"))
    if facts.next_doi:
        related.append(_related(facts.next_doi, "DOI", "IsPreviousVersionOf"))
    for source in facts.sources:
        identifier, kind = source.related_identifier()
        related.append(_related(identifier, kind, "IsDerivedFrom"))
    descriptions = [
        {"description": dataset.description, "descriptionType": "Abstract"},
        {"description": _version_technical(dataset, facts), "descriptionType": "TechnicalInfo"},
        {"description": _access_text(dataset), "descriptionType": "Other"},
    ]
    if facts.distributions:
        descriptions.insert(
            2,
            {
                "description": _distributions_text(facts.distributions),
                "descriptionType": "TechnicalInfo",
            },
        )
    record |= {
        "version": str(facts.version),
        "dates": [{"date": facts.published.isoformat(), "dateType": "Issued"}],
        "alternateIdentifiers": [
            {
                "alternateIdentifier": iceberg_urn(facts.table, facts.snapshot_id),
                "alternateIdentifierType": "URN",
            }
        ],
        "relatedIdentifiers": _unique(related),
        "sizes": [f"{facts.row_count} rows", f"{facts.byte_size} bytes"],
        "descriptions": descriptions,
    }
    if facts.all_formats:
        record["formats"] = facts.all_formats
    if facts.url:
        record["url"] = facts.url
    validate_metadata(record)
    return record


def build_concept_metadata(dataset: DatasetDeclaration, concept: ConceptFacts) -> dict[str, Any]:
    """The DataCite 4.5 record of the concept DOI: the dataset as a whole, every version
    listed with HasVersion (a reader who cites the concept finds the newest version)."""
    problems = [
        f"{name}: {value!r} is not a DOI (10.<prefix>/<suffix>)"
        for name, value in [("concept_doi", concept.concept_doi)]
        + [(f"version_dois[{i}]", d) for i, d in enumerate(concept.version_dois)]
        if not _DOI.match(value)
    ]
    if concept.concept_doi in concept.version_dois:
        problems.append("version_dois: the concept DOI cannot also be a version's DOI")
    if problems:
        raise MetadataError(f"dataset {dataset.id!r} (concept)", problems)
    record = _common(dataset, concept.concept_doi, str(concept.first_published.year))
    dates = [{"date": concept.first_published.isoformat(), "dateType": "Issued"}]
    if concept.last_updated and concept.last_updated != concept.first_published:
        dates.append({"date": concept.last_updated.isoformat(), "dateType": "Updated"})
    technical = f"Apache Iceberg table {dataset.table}.\nColumns:\n{_columns_text(dataset)}"
    record |= {
        "dates": dates,
        "descriptions": [
            {"description": dataset.description, "descriptionType": "Abstract"},
            {"description": technical, "descriptionType": "TechnicalInfo"},
            {"description": _access_text(dataset), "descriptionType": "Other"},
        ],
    }
    if concept.version_dois:
        record["relatedIdentifiers"] = _unique(
            _related(d, "DOI", "HasVersion") for d in concept.version_dois
        )
    if concept.url:
        record["url"] = concept.url
    validate_metadata(record)
    return record


def _related(identifier: str, kind: str, relation: str) -> dict[str, Any]:
    return {
        "relatedIdentifier": identifier,
        "relatedIdentifierType": kind,
        "relationType": relation,
    }


def _unique(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def _where(path: Sequence[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(record)"


def _at(record: Any, path: Sequence[Any]) -> Any:
    for part in path:
        try:
            record = record[part]
        except (KeyError, IndexError, TypeError):
            return None
    return record


def _violation(record: Mapping[str, Any], error: Any) -> str:
    """One schema error as a line a person can act on."""
    path = list(error.absolute_path)
    where = _where(path)
    kind, value = error.validator, error.instance
    if kind == "required":
        name = str(error.message).split("'")[1] if "'" in str(error.message) else "?"
        place = f"{where}." if path else ""
        mandatory = f" ({MANDATORY[name]} is mandatory in DataCite)" if name in MANDATORY else ""
        return f"{place}{name}: missing{mandatory}"
    if kind == "enum":
        return f"{where}: {value!r} is not one of {', '.join(map(str, error.validator_value))}"
    if kind == "minItems":
        return f"{where}: needs at least {error.validator_value} item(s)"
    if kind == "pattern":
        return f"{where}: {value!r} does not match {error.validator_value}"
    if kind == "type":
        return f"{where}: {value!r} is not of type {error.validator_value}"
    if kind is None or error.validator_value is False:
        # a property the schema forbids in this context (jsonschema reports its parent)
        parent = _at(record, path)
        keys = [k for k, v in parent.items() if v == value] if isinstance(parent, dict) else []
        name = f".{keys[0]}" if len(keys) == 1 else ""
        return f"{where}{name}: {value!r} is not allowed here"
    return f"{where}: {error.message}"


def metadata_problems(metadata: Mapping[str, Any]) -> list[str]:
    """Every way `metadata` breaks DataCite 4.5 (the `datacite` package's JSON schema), plus
    the mandatory Identifier, which the JSON schema leaves optional; empty when valid."""
    problems: list[str] = []
    if not metadata.get("doi"):
        problems.append("doi: missing (Identifier is mandatory in DataCite)")
    errors = list(schema45.validator.iter_errors(dict(metadata)))
    paths = [tuple(e.absolute_path) for e in errors]
    for error, path in zip(errors, paths, strict=True):
        # "unevaluated properties" at a parent is an echo of a child's error: skip it
        echo = error.validator == "unevaluatedProperties" and any(
            other[: len(path)] == path and other_error is not error
            for other, other_error in zip(paths, errors, strict=True)
        )
        if not echo:
            text = _violation(metadata, error)
            if text not in problems:
                problems.append(text)
    return problems


def validate_metadata(metadata: Mapping[str, Any]) -> None:
    """Refuse a record DataCite would refuse, listing every violation at once."""
    problems = metadata_problems(metadata)
    if problems:
        subject = f"DOI {metadata['doi']}" if metadata.get("doi") else "a record without a DOI"
        raise MetadataError(subject, problems)


def to_xml(metadata: Mapping[str, Any]) -> str:
    """The record as DataCite 4.5 XML (the `datacite` package's serialiser), validated first:
    the serialiser assumes valid input."""
    validate_metadata(metadata)
    return str(schema45.tostring(dict(metadata)))


def to_rest_payload(
    metadata: Mapping[str, Any], event: Event | None = None, url: str | None = None
) -> dict[str, Any]:
    """The DataCite REST API request body: `{"data": {"type": "dois", "attributes": ...}}`.

    No `event` keeps (or makes) the DOI a draft; "register" makes it registered (resolvable,
    not indexed); "publish" makes it findable. `url` is the landing page DataCite resolves
    the DOI to, required from "register" on.
    """
    attributes = copy.deepcopy(dict(metadata))
    if url is not None:
        attributes["url"] = url
    if event is not None:
        attributes["event"] = event
    data: dict[str, Any] = {"type": "dois", "attributes": attributes}
    if attributes.get("doi"):
        data["id"] = attributes["doi"]
    return {"data": data}
