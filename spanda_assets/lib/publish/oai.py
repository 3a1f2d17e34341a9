"""OAI-PMH 2.0 for the FAIR catalog: how harvesters (DataCite, OpenAIRE, BASE, a
university's discovery system) pull the metadata of every published dataset version.

`respond(args, source, config)` is the whole protocol as a pure function: the HTTP
layer passes the request's arguments (GET query or POST form) and sends back the
status and XML it returns, as `CONTENT_TYPE`. Errors are protocol answers, not HTTP
errors: status 200 with an `<error code="...">` element, as OAI-PMH 2.0 section 3.6
requires.

What is served: every version the search index holds, latest or not (each has its own
DOI), and tombstones of deleted ones (`deletedRecord` is `persistent`). Identifiers are
`oai:<repository identifier>:<DOI>`. Two metadata formats: `oai_dc` (Dublin Core mapped
from the DataCite metadata) and `oai_datacite` (DataCite's OAI wrapper around the
record's DataCite XML, what DataCite's own OAI service disseminates). No sets.

Lists are paged by resumption tokens that carry their whole state (format, from/until,
the change number of the last record sent, the cursor), base64url-encoded JSON: no
server-side session, any worker can answer the next page, and a token is validated
field by field when it comes back. Pages walk the index's change sequence, so a record
changed while a harvest runs is sent again at the end rather than shifting the pages.

XML is built with lxml element by element; no value is ever pasted into markup, and
characters XML 1.0 cannot hold are dropped from values first.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from lxml import etree

from spanda_assets.lib.publish.search import StoredRecord

CONTENT_TYPE = "text/xml; charset=utf-8"
PROTOCOL_VERSION = "2.0"
GRANULARITY = "YYYY-MM-DDThh:mm:ssZ"
DEFAULT_PAGE_SIZE = 100

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
OAI_SCHEMA = "http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
XML_NS = "http://www.w3.org/XML/1998/namespace"
OAI_DC_NS = "http://www.openarchives.org/OAI/2.0/oai_dc/"
OAI_DC_SCHEMA = "http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
DC_NS = "http://purl.org/dc/elements/1.1/"
OAI_DATACITE_NS = "http://schema.datacite.org/oai/oai-1.1/"
OAI_DATACITE_SCHEMA = "http://schema.datacite.org/oai/oai-1.1/oai.xsd"
DATACITE_NS = "http://datacite.org/schema/kernel-4"
DATACITE_SCHEMA = "http://schema.datacite.org/meta/kernel-4.5/metadata.xsd"
DATACITE_SCHEMA_VERSION = "4.5"
OAI_IDENTIFIER_NS = "http://www.openarchives.org/OAI/2.0/oai-identifier"
OAI_IDENTIFIER_SCHEMA = "http://www.openarchives.org/OAI/2.0/oai-identifier.xsd"

# The protocol's error codes (OAI-PMH 2.0, section 3.6).
BAD_ARGUMENT = "badArgument"
BAD_RESUMPTION_TOKEN = "badResumptionToken"
BAD_VERB = "badVerb"
CANNOT_DISSEMINATE_FORMAT = "cannotDisseminateFormat"
ID_DOES_NOT_EXIST = "idDoesNotExist"
NO_RECORDS_MATCH = "noRecordsMatch"
NO_METADATA_FORMATS = "noMetadataFormats"
NO_SET_HIERARCHY = "noSetHierarchy"

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECOND = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
# A repositoryIdentifier as the oai-identifier scheme spells one (a domain name).
_REPOSITORY_ID = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-]*(\.[a-zA-Z][a-zA-Z0-9\-]*)+$")
# Characters XML 1.0 cannot carry (lxml refuses them): dropped from every value.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MAX_ARGUMENT_CHARS = 2_000
_TOKEN_VERSION = 1

DataCiteXml = Callable[[Mapping[str, Any]], bytes | str]
"""Turns a record's DataCite JSON (REST `attributes` shape) into DataCite XML."""


@dataclass(frozen=True)
class MetadataFormat:
    prefix: str
    schema: str
    namespace: str


FORMATS: Mapping[str, MetadataFormat] = {
    "oai_dc": MetadataFormat("oai_dc", OAI_DC_SCHEMA, OAI_DC_NS),
    "oai_datacite": MetadataFormat("oai_datacite", OAI_DATACITE_SCHEMA, OAI_DATACITE_NS),
}


@dataclass(frozen=True)
class OaiConfig:
    """What the repository says about itself (Identify) and how it pages lists.

    `repository_identifier` names the repository inside OAI identifiers
    (`oai:<it>:<DOI>`); by default the host of `base_url`. `datacentre_symbol` is the
    DataCite repository (client) id that `oai_datacite` records name; by default the
    repository identifier.
    """

    repository_name: str
    base_url: str
    admin_emails: tuple[str, ...]
    repository_identifier: str | None = None
    datacentre_symbol: str | None = None
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def repository_id(self) -> str:
        return self.repository_identifier or urlsplit(self.base_url).hostname or "spanda"

    def identifier(self, doi: str) -> str:
        """The OAI identifier of the version with this DOI."""
        return f"oai:{self.repository_id}:{doi}"

    def doi_of(self, identifier: str) -> str | None:
        """The DOI inside one of this repository's OAI identifiers (None if it is not one)."""
        prefix = f"oai:{self.repository_id}:"
        return identifier[len(prefix) :] if identifier.startswith(prefix) else None


class RecordSource(Protocol):
    """Where records come from: `search.SearchIndex` is one."""

    def get(self, doi: str) -> StoredRecord | None: ...

    def harvest(
        self,
        *,
        from_: str | None = None,
        until: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[StoredRecord]: ...

    def harvest_count(self, *, from_: str | None = None, until: str | None = None) -> int: ...

    def earliest_datestamp(self) -> str | None: ...


class _ProtocolError(Exception):
    """An OAI-PMH error condition: answered with status 200 and an error element."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- XML helpers


def _q(namespace: str, tag: str) -> str:
    return f"{{{namespace}}}{tag}"


def _text(value: Any) -> str:
    """A value as XML character data: characters XML 1.0 cannot hold are dropped."""
    return _NOT_XML.sub("", str(value))


def _sub(parent: Any, tag: str, text: Any = None, **attrs: Any) -> Any:
    """A child element; attributes whose value is None or empty are left out."""
    element = etree.SubElement(parent, tag)
    for name, value in attrs.items():
        if value not in (None, ""):
            element.set(name, _text(value))
    if text is not None:
        element.text = _text(text)
    return element


def _schema_location(element: Any, namespace: str, schema: str) -> None:
    element.set(_q(XSI_NS, "schemaLocation"), f"{namespace} {schema}")


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- metadata


def _items(attrs: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    return [i for i in attrs.get(key) or () if isinstance(i, Mapping)]


def _values(attrs: Mapping[str, Any], key: str, field: str) -> list[str]:
    out = []
    for item in attrs.get(key) or ():
        value = item.get(field) if isinstance(item, Mapping) else item
        if value not in (None, ""):
            out.append(str(value))
    return out


def _publisher(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    publisher = attrs.get("publisher")
    if isinstance(publisher, Mapping):
        return publisher
    return {"name": publisher} if publisher else {}


def _types(attrs: Mapping[str, Any]) -> Mapping[str, Any]:
    types = attrs.get("types")
    return types if isinstance(types, Mapping) else {}


def _identifier_uri(kind: str, value: str) -> str:
    """A related identifier as a resolvable reference where its type has one."""
    if kind == "DOI":
        return f"https://doi.org/{value}"
    if kind in ("URL", "w3id"):
        return value
    return f"{kind.lower()}:{value}" if kind else value


def dublin_core(attrs: Mapping[str, Any], concept_doi: str | None = None) -> list[tuple[str, str]]:
    """The record's Dublin Core elements, (name, value) in DCMES order, mapped from
    DataCite the way DataCite's own OAI service maps them: the DOI as an https
    identifier, related identifiers (and the concept DOI) as relations, licences as
    rights, formats and sizes as formats."""
    dc: list[tuple[str, str]] = []
    dc += [("title", t) for t in _values(attrs, "titles", "title")]
    dc += [("creator", c) for c in _values(attrs, "creators", "name")]
    dc += [("subject", s) for s in _values(attrs, "subjects", "subject")]
    dc += [("description", d) for d in _values(attrs, "descriptions", "description")]
    if name := _publisher(attrs).get("name"):
        dc.append(("publisher", str(name)))
    dc += [("contributor", c) for c in _values(attrs, "contributors", "name")]
    if year := attrs.get("publicationYear"):
        dc.append(("date", str(year)))
    dc += [("date", d) for d in _values(attrs, "dates", "date")]
    types = _types(attrs)
    for key in ("resourceTypeGeneral", "resourceType"):
        if types.get(key) and ("type", str(types[key])) not in dc:
            dc.append(("type", str(types[key])))
    dc += [("format", f) for f in [*_values(attrs, "formats", ""), *_values(attrs, "sizes", "")]]
    if doi := attrs.get("doi"):
        dc.append(("identifier", f"https://doi.org/{doi}"))
    if language := attrs.get("language"):
        dc.append(("language", str(language)))
    relations = [
        _identifier_uri(str(r.get("relatedIdentifierType") or ""), str(r["relatedIdentifier"]))
        for r in _items(attrs, "relatedIdentifiers")
        if r.get("relatedIdentifier")
    ]
    if concept_doi and f"https://doi.org/{concept_doi}" not in relations:
        relations.append(f"https://doi.org/{concept_doi}")
    dc += [("relation", r) for r in relations]
    for rights in _items(attrs, "rightsList"):
        dc += [("rights", str(rights[k])) for k in ("rights", "rightsUri") if rights.get(k)]
    return dc


def _oai_dc(parent: Any, record: StoredRecord) -> None:
    root = etree.SubElement(
        parent, _q(OAI_DC_NS, "dc"), nsmap={"oai_dc": OAI_DC_NS, "dc": DC_NS, "xsi": XSI_NS}
    )
    _schema_location(root, OAI_DC_NS, OAI_DC_SCHEMA)
    for name, value in dublin_core(record.datacite, record.concept_doi):
        _sub(root, _q(DC_NS, name), value)


# JSON attribute names whose XML spelling differs (DataCite REST -> kernel-4 XML).
_XML_ATTRIBUTE = {
    "rightsUri": "rightsURI",
    "schemeUri": "schemeURI",
    "valueUri": "valueURI",
    "lang": _q(XML_NS, "lang"),
}


def _copy_attrs(element: Any, item: Mapping[str, Any], names: Sequence[str]) -> None:
    for name in names:
        value = item.get(name)
        if value not in (None, "") and not isinstance(value, Mapping | list):
            element.set(_XML_ATTRIBUTE.get(name, name), _text(value))


def _d(tag: str) -> str:
    return _q(DATACITE_NS, tag)


def _datacite_agent(parent: Any, item: Mapping[str, Any], role: str) -> None:
    """A creator or contributor: name, given/family names, identifiers, affiliations."""
    agent = _sub(parent, _d(role))
    if role == "contributor":
        _copy_attrs(agent, item, ["contributorType"])
    name = _sub(agent, _d(f"{role}Name"), item.get("name") or "")
    _copy_attrs(name, item, ["nameType", "lang"])
    for part in ("givenName", "familyName"):
        if item.get(part):
            _sub(agent, _d(part), item[part])
    for ident in item.get("nameIdentifiers") or ():
        if isinstance(ident, Mapping) and ident.get("nameIdentifier"):
            element = _sub(agent, _d("nameIdentifier"), ident["nameIdentifier"])
            _copy_attrs(element, ident, ["nameIdentifierScheme", "schemeUri"])
    affiliations = item.get("affiliation") or ()
    if isinstance(affiliations, str | Mapping):
        affiliations = [affiliations]
    for affiliation in affiliations:
        if isinstance(affiliation, Mapping):
            if affiliation.get("name"):
                element = _sub(agent, _d("affiliation"), affiliation["name"])
                _copy_attrs(
                    element,
                    affiliation,
                    ["affiliationIdentifier", "affiliationIdentifierScheme", "schemeUri"],
                )
        elif affiliation:
            _sub(agent, _d("affiliation"), affiliation)


def _datacite_list(
    root: Any,
    attrs: Mapping[str, Any],
    key: str,
    wrapper: str,
    tag: str,
    text: str,
    names: Sequence[str],
) -> None:
    items = [i for i in _items(attrs, key) if i.get(text) not in (None, "")]
    if items:
        parent = _sub(root, _d(wrapper))
        for item in items:
            _copy_attrs(_sub(parent, _d(tag), item[text]), item, names)


def minimal_datacite_xml(attrs: Mapping[str, Any]) -> bytes:
    """DataCite 4.5 XML from the REST `attributes` JSON, for when no serialiser is given.

    It writes the properties the catalog fills (the mandatory six, subjects,
    contributors, dates, language, related identifiers, sizes, formats, version,
    rights, descriptions) and leaves out the rest (geolocations, funding); it does not
    validate: the publishing step validates against DataCite's schema before a DOI is
    registered.
    """
    root = etree.Element(_d("resource"), nsmap={None: DATACITE_NS, "xsi": XSI_NS})
    _schema_location(root, DATACITE_NS, DATACITE_SCHEMA)
    _sub(root, _d("identifier"), attrs.get("doi") or "", identifierType="DOI")
    creators = _sub(root, _d("creators"))
    for creator in _items(attrs, "creators"):
        _datacite_agent(creators, creator, "creator")
    titles = _sub(root, _d("titles"))
    for title in _items(attrs, "titles"):
        _copy_attrs(
            _sub(titles, _d("title"), title.get("title") or ""), title, ["titleType", "lang"]
        )
    publisher = _publisher(attrs)
    element = _sub(root, _d("publisher"), publisher.get("name") or "")
    _copy_attrs(
        element,
        publisher,
        ["publisherIdentifier", "publisherIdentifierScheme", "schemeUri", "lang"],
    )
    _sub(root, _d("publicationYear"), attrs.get("publicationYear") or "")
    types = _types(attrs)
    _sub(
        root,
        _d("resourceType"),
        types.get("resourceType") or "",
        resourceTypeGeneral=types.get("resourceTypeGeneral") or "Dataset",
    )
    _datacite_list(
        root,
        attrs,
        "subjects",
        "subjects",
        "subject",
        "subject",
        ["subjectScheme", "schemeUri", "valueUri", "classificationCode", "lang"],
    )
    contributors = [c for c in _items(attrs, "contributors") if c.get("contributorType")]
    if contributors:
        parent = _sub(root, _d("contributors"))
        for contributor in contributors:
            _datacite_agent(parent, contributor, "contributor")
    _datacite_list(root, attrs, "dates", "dates", "date", "date", ["dateType", "dateInformation"])
    if attrs.get("language"):
        _sub(root, _d("language"), attrs["language"])
    _datacite_list(
        root,
        attrs,
        "relatedIdentifiers",
        "relatedIdentifiers",
        "relatedIdentifier",
        "relatedIdentifier",
        ["relatedIdentifierType", "relationType", "resourceTypeGeneral"],
    )
    for key, wrapper, tag in (("sizes", "sizes", "size"), ("formats", "formats", "format")):
        values = _values(attrs, key, "")
        if values:
            parent = _sub(root, _d(wrapper))
            for value in values:
                _sub(parent, _d(tag), value)
    if attrs.get("version"):
        _sub(root, _d("version"), attrs["version"])
    _datacite_list(
        root,
        attrs,
        "rightsList",
        "rightsList",
        "rights",
        "rights",
        ["rightsUri", "rightsIdentifier", "rightsIdentifierScheme", "schemeUri", "lang"],
    )
    _datacite_list(
        root,
        attrs,
        "descriptions",
        "descriptions",
        "description",
        "description",
        ["descriptionType", "lang"],
    )
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def _oai_datacite(
    parent: Any, record: StoredRecord, config: OaiConfig, to_xml: DataCiteXml
) -> None:
    root = etree.SubElement(
        parent, _q(OAI_DATACITE_NS, "oai_datacite"), nsmap={None: OAI_DATACITE_NS, "xsi": XSI_NS}
    )
    _schema_location(root, OAI_DATACITE_NS, OAI_DATACITE_SCHEMA)
    _sub(root, _q(OAI_DATACITE_NS, "schemaVersion"), DATACITE_SCHEMA_VERSION)
    _sub(
        root,
        _q(OAI_DATACITE_NS, "datacentreSymbol"),
        config.datacentre_symbol or config.repository_id,
    )
    payload = _sub(root, _q(OAI_DATACITE_NS, "payload"))
    xml = to_xml(record.datacite)
    data = xml.encode("utf-8") if isinstance(xml, str) else xml
    # The serialiser is ours, but parse defensively anyway: no entities, no network.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    payload.append(etree.fromstring(data, parser))


# --------------------------------------------------------------------------- arguments


# verb: (required, optional, exclusive) arguments besides `verb`.
_VERBS: Mapping[str, tuple[frozenset[str], frozenset[str], str | None]] = {
    "Identify": (frozenset(), frozenset(), None),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"}), None),
    "ListSets": (frozenset(), frozenset(), "resumptionToken"),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset(), None),
    "ListIdentifiers": (
        frozenset({"metadataPrefix"}),
        frozenset({"from", "until", "set"}),
        "resumptionToken",
    ),
    "ListRecords": (
        frozenset({"metadataPrefix"}),
        frozenset({"from", "until", "set"}),
        "resumptionToken",
    ),
}


def _single_values(args: Mapping[str, str | Sequence[str]]) -> dict[str, str]:
    """Arguments as one string each; a repeated argument is a badArgument (a web
    framework's multi-dict arrives as lists)."""
    out: dict[str, str] = {}
    for name, value in args.items():
        if isinstance(value, str):
            out[name] = value
            continue
        values = list(value)
        if len(values) != 1:
            code = BAD_VERB if name == "verb" else BAD_ARGUMENT
            raise _ProtocolError(code, f"the argument {name!r} is repeated")
        out[name] = str(values[0])
    for name, value in out.items():
        if len(value) > _MAX_ARGUMENT_CHARS:
            raise _ProtocolError(BAD_ARGUMENT, f"the argument {name!r} is too long")
    return out


def _check_arguments(verb: str, args: Mapping[str, str]) -> None:
    required, optional, exclusive = _VERBS[verb]
    given = set(args) - {"verb"}
    if exclusive is not None and exclusive in given:
        if given != {exclusive}:
            raise _ProtocolError(BAD_ARGUMENT, f"{exclusive} must be the only argument")
        return
    illegal = sorted(given - required - optional)
    if illegal:
        raise _ProtocolError(BAD_ARGUMENT, f"illegal argument(s) for {verb}: {', '.join(illegal)}")
    missing = sorted(required - given)
    if missing:
        raise _ProtocolError(BAD_ARGUMENT, f"{verb} requires {', '.join(missing)}")


def _parse_date(value: str, *, end: bool) -> tuple[str, str]:
    """A from/until argument as a full UTC stamp (a day's end for `until`), and its
    granularity."""
    try:
        if _DAY.match(value):
            dt.datetime.strptime(value, "%Y-%m-%d")
            return value + ("T23:59:59Z" if end else "T00:00:00Z"), "day"
        if _SECOND.match(value):
            dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            return value, "second"
    except ValueError:
        pass
    raise _ProtocolError(
        BAD_ARGUMENT, f"{value!r} is not a UTC date (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)"
    )


@dataclass(frozen=True)
class _ListState:
    """Where a list request stands: the token carries exactly this."""

    prefix: str
    from_: str | None
    until: str | None
    after_seq: int
    cursor: int


def _encode_token(state: _ListState) -> str:
    data = {
        "v": _TOKEN_VERSION,
        "p": state.prefix,
        "f": state.from_,
        "u": state.until,
        "s": state.after_seq,
        "c": state.cursor,
    }
    raw = json.dumps(data, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_token(token: str) -> _ListState:
    """A token back into its state, every field checked: a harvester may hand back
    anything, and a token this module did not write is a badResumptionToken."""
    bad = _ProtocolError(BAD_RESUMPTION_TOKEN, "the resumption token is invalid or has expired")
    if not token or len(token) > 1_000 or not re.fullmatch(r"[A-Za-z0-9_-]+", token):
        raise bad
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise bad from None
    if not isinstance(data, dict) or set(data) != {"v", "p", "f", "u", "s", "c"}:
        raise bad
    if data["v"] != _TOKEN_VERSION or data["p"] not in FORMATS:
        raise bad
    for key in ("f", "u"):
        if data[key] is not None and not (isinstance(data[key], str) and _SECOND.match(data[key])):
            raise bad
    for key in ("s", "c"):
        if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 0:
            raise bad
    return _ListState(data["p"], data["f"], data["u"], data["s"], data["c"])


# --------------------------------------------------------------------------- verbs


def _header(parent: Any, record: StoredRecord, config: OaiConfig) -> None:
    header = _sub(parent, _q(OAI_NS, "header"), status="deleted" if record.deleted else None)
    _sub(header, _q(OAI_NS, "identifier"), config.identifier(record.doi))
    _sub(header, _q(OAI_NS, "datestamp"), record.datestamp)


def _record(
    parent: Any, record: StoredRecord, prefix: str, config: OaiConfig, to_xml: DataCiteXml
) -> None:
    element = _sub(parent, _q(OAI_NS, "record"))
    _header(element, record, config)
    if record.deleted:
        return
    metadata = _sub(element, _q(OAI_NS, "metadata"))
    if prefix == "oai_dc":
        _oai_dc(metadata, record)
    else:
        _oai_datacite(metadata, record, config, to_xml)


def _identify(body: Any, source: RecordSource, config: OaiConfig, now: dt.datetime) -> None:
    identify = _sub(body, _q(OAI_NS, "Identify"))
    _sub(identify, _q(OAI_NS, "repositoryName"), config.repository_name)
    _sub(identify, _q(OAI_NS, "baseURL"), config.base_url)
    _sub(identify, _q(OAI_NS, "protocolVersion"), PROTOCOL_VERSION)
    for email in config.admin_emails:
        _sub(identify, _q(OAI_NS, "adminEmail"), email)
    # An empty repository's lower bound is now: nothing can have changed before it.
    _sub(identify, _q(OAI_NS, "earliestDatestamp"), source.earliest_datestamp() or _stamp(now))
    _sub(identify, _q(OAI_NS, "deletedRecord"), "persistent")
    _sub(identify, _q(OAI_NS, "granularity"), GRANULARITY)
    if _REPOSITORY_ID.match(config.repository_id):
        description = _sub(identify, _q(OAI_NS, "description"))
        scheme = etree.SubElement(
            description,
            _q(OAI_IDENTIFIER_NS, "oai-identifier"),
            nsmap={None: OAI_IDENTIFIER_NS, "xsi": XSI_NS},
        )
        _schema_location(scheme, OAI_IDENTIFIER_NS, OAI_IDENTIFIER_SCHEMA)
        _sub(scheme, _q(OAI_IDENTIFIER_NS, "scheme"), "oai")
        _sub(scheme, _q(OAI_IDENTIFIER_NS, "repositoryIdentifier"), config.repository_id)
        _sub(scheme, _q(OAI_IDENTIFIER_NS, "delimiter"), ":")
        _sub(
            scheme,
            _q(OAI_IDENTIFIER_NS, "sampleIdentifier"),
            config.identifier("10.5555/example.v1"),
        )


def _find(args: Mapping[str, str], source: RecordSource, config: OaiConfig) -> StoredRecord:
    doi = config.doi_of(args["identifier"])
    record = source.get(doi) if doi else None
    if record is None:
        raise _ProtocolError(
            ID_DOES_NOT_EXIST, f"{args['identifier']!r} is not an identifier in this repository"
        )
    return record


def _list_metadata_formats(
    body: Any, args: Mapping[str, str], source: RecordSource, config: OaiConfig
) -> None:
    if "identifier" in args:
        _find(args, source, config)  # every record is available in every format
    formats = _sub(body, _q(OAI_NS, "ListMetadataFormats"))
    for fmt in FORMATS.values():
        element = _sub(formats, _q(OAI_NS, "metadataFormat"))
        _sub(element, _q(OAI_NS, "metadataPrefix"), fmt.prefix)
        _sub(element, _q(OAI_NS, "schema"), fmt.schema)
        _sub(element, _q(OAI_NS, "metadataNamespace"), fmt.namespace)


def _check_prefix(prefix: str) -> None:
    if prefix not in FORMATS:
        raise _ProtocolError(
            CANNOT_DISSEMINATE_FORMAT,
            f"metadataPrefix {prefix!r} is not offered: use one of {', '.join(FORMATS)}",
        )


def _get_record(
    body: Any, args: Mapping[str, str], source: RecordSource, config: OaiConfig, to_xml: DataCiteXml
) -> None:
    _check_prefix(args["metadataPrefix"])
    record = _find(args, source, config)
    _record(_sub(body, _q(OAI_NS, "GetRecord")), record, args["metadataPrefix"], config, to_xml)


def _list_state(args: Mapping[str, str]) -> tuple[_ListState, bool]:
    """The state a list request starts from, and whether it came from a token."""
    if "resumptionToken" in args:
        return _decode_token(args["resumptionToken"]), True
    prefix = args["metadataPrefix"]
    _check_prefix(prefix)
    from_ = until = None
    if "from" in args:
        from_, from_granularity = _parse_date(args["from"], end=False)
    if "until" in args:
        until, until_granularity = _parse_date(args["until"], end=True)
    if from_ and until:
        if from_granularity != until_granularity:
            raise _ProtocolError(BAD_ARGUMENT, "from and until must have the same granularity")
        if from_ > until:
            raise _ProtocolError(BAD_ARGUMENT, "from is later than until")
    if "set" in args:
        raise _ProtocolError(NO_SET_HIERARCHY, "this repository does not support sets")
    return _ListState(prefix, from_, until, 0, 0), False


def _list(
    body: Any,
    verb: str,
    args: Mapping[str, str],
    source: RecordSource,
    config: OaiConfig,
    to_xml: DataCiteXml,
) -> None:
    state, resumed = _list_state(args)
    size = max(1, config.page_size)
    records = source.harvest(
        from_=state.from_, until=state.until, after_seq=state.after_seq, limit=size + 1
    )
    if not records:
        raise _ProtocolError(NO_RECORDS_MATCH, "no records match the request")
    more = len(records) > size
    records = records[:size]
    element = _sub(body, _q(OAI_NS, verb))
    for record in records:
        if verb == "ListRecords":
            _record(element, record, state.prefix, config, to_xml)
        else:
            _header(element, record, config)
    if more or resumed:
        # Incomplete list: the token for the next page, or an empty one on the last page.
        token = ""
        if more:
            token = _encode_token(
                _ListState(
                    state.prefix,
                    state.from_,
                    state.until,
                    after_seq=records[-1].seq,
                    cursor=state.cursor + len(records),
                )
            )
        _sub(
            element,
            _q(OAI_NS, "resumptionToken"),
            token,
            completeListSize=str(source.harvest_count(from_=state.from_, until=state.until)),
            cursor=str(state.cursor),
        )


# --------------------------------------------------------------------------- the responder


def respond(
    args: Mapping[str, str | Sequence[str]],
    source: RecordSource,
    config: OaiConfig,
    *,
    datacite_xml: DataCiteXml | None = None,
    now: dt.datetime | None = None,
) -> tuple[int, bytes]:
    """Answer one OAI-PMH request: (HTTP status, UTF-8 XML).

    `args` are the request's arguments (a list value means the argument was repeated,
    which is an error). `datacite_xml` serialises a record's DataCite JSON for
    `oai_datacite` (by default `minimal_datacite_xml`). `now` is the responseDate
    (tests pin it). The status is 200 for protocol errors too, as the protocol says;
    a failure of the source itself (database unreadable) propagates.
    """
    now = now or dt.datetime.now(dt.UTC)
    to_xml = datacite_xml or minimal_datacite_xml
    root = etree.Element(_q(OAI_NS, "OAI-PMH"), nsmap={None: OAI_NS, "xsi": XSI_NS})
    _schema_location(root, OAI_NS, OAI_SCHEMA)
    _sub(root, _q(OAI_NS, "responseDate"), _stamp(now))
    request = _sub(root, _q(OAI_NS, "request"), config.base_url)
    body = etree.Element("body")  # a holder: its child moves under the root at the end
    try:
        single = _single_values(args)
        verb = single.get("verb", "")
        if verb not in _VERBS:
            raise _ProtocolError(BAD_VERB, f"{verb!r} is not an OAI-PMH verb")
        _check_arguments(verb, single)
        # The request echo carries the arguments only when they were valid (3.2).
        for name, value in single.items():
            request.set(name, _text(value))
        if verb == "Identify":
            _identify(body, source, config, now)
        elif verb == "ListMetadataFormats":
            _list_metadata_formats(body, single, source, config)
        elif verb == "ListSets":
            raise _ProtocolError(NO_SET_HIERARCHY, "this repository does not support sets")
        elif verb == "GetRecord":
            _get_record(body, single, source, config, to_xml)
        else:
            _list(body, verb, single, source, config, to_xml)
    except _ProtocolError as error:
        if error.code in (BAD_VERB, BAD_ARGUMENT):
            for name in list(request.attrib):
                del request.attrib[name]
        del body[:]
        _sub(body, _q(OAI_NS, "error"), error.message, code=error.code)
    for child in list(body):
        root.append(child)
    return 200, bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
