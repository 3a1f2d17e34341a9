"""What a landing page says, in every representation a client can ask for.

One DataCite 4.5 record per DOI is the source of truth (the record the DOI provider
holds); every other representation is derived from it here, so a citation manager, a
search engine's crawler and a harvester read the same facts:

* schema.org `Dataset` JSON-LD (what crawlers and F-UJI read from the HTML page),
* CSL JSON, BibTeX, RIS and a formatted text citation (what reference managers import),
* FAIR Signposting: the level-1 `Link` header and the level-2 linkset (RFC 9264).

Content negotiation picks one of `MEDIA_TYPES` from the Accept header by its q-values;
nothing acceptable is a 406 naming what is on offer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

HTML = "text/html"
DATACITE_JSON = "application/vnd.datacite.datacite+json"
DATACITE_XML = "application/vnd.datacite.datacite+xml"
JSON_LD = "application/ld+json"
CSL_JSON = "application/vnd.citationstyles.csl+json"
BIBTEX = "application/x-bibtex"
BIBLIOGRAPHY = "text/x-bibliography"
RIS = "application/x-research-info-systems"
LINKSET_JSON = "application/linkset+json"
LINKSET = "application/linkset"

# In the order the server prefers when a client likes several equally (HTML first: a
# browser that sends */* gets the page).
MEDIA_TYPES: tuple[str, ...] = (
    HTML,
    DATACITE_JSON,
    DATACITE_XML,
    JSON_LD,
    CSL_JSON,
    BIBTEX,
    BIBLIOGRAPHY,
    RIS,
)
# `?format=` names for the same representations: links in pages and headers point at
# one representation without relying on the client's Accept header.
FORMAT_NAMES: dict[str, str] = {
    "html": HTML,
    "datacite-json": DATACITE_JSON,
    "datacite-xml": DATACITE_XML,
    "jsonld": JSON_LD,
    "csl-json": CSL_JSON,
    "bibtex": BIBTEX,
    "citation": BIBLIOGRAPHY,
    "ris": RIS,
}
DOI_RESOLVER = "https://doi.org/"
_ORCID_SCHEME = "ORCID"


def doi_url(doi: str) -> str:
    return f"{DOI_RESOLVER}{doi}"


# --- content negotiation -------------------------------------------------------------


@dataclass(frozen=True)
class _Range:
    type: str
    subtype: str
    q: float
    order: int

    def matches(self, media_type: str) -> int:
        """How specifically this range matches `media_type`: 2 exact, 1 type/*, 0 */*,
        -1 not at all."""
        kind, _, sub = media_type.partition("/")
        if self.type == "*" and self.subtype == "*":
            return 0
        if self.type != kind:
            return -1
        if self.subtype == "*":
            return 1
        return 2 if self.subtype == sub else -1


def _ranges(accept: str) -> list[_Range]:
    out: list[_Range] = []
    for order, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if "/" not in media:
            continue
        kind, _, sub = media.partition("/")
        q = 1.0
        for param in pieces[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                # RFC 9110 qvalue: 0 to 1 with up to three decimals; anything else
                # (nan, inf, 1e-1) is not a weight and makes the range unacceptable
                text = value.strip()
                q = float(text) if re.fullmatch(r"0(\.\d{0,3})?|1(\.0{0,3})?", text) else 0.0
        out.append(_Range(kind.strip(), sub.strip(), q, order))
    return out


def negotiate(accept: str | None, offered: Sequence[str] = MEDIA_TYPES) -> str | None:
    """The offered media type the Accept header likes best (RFC 9110 12.5.1: the most
    specific matching range gives a type its q; ties go to the server's order), or None
    when nothing offered is acceptable. No header, or a blank one, means the first."""
    if accept is None or not accept.strip():
        return offered[0]
    ranges = _ranges(accept)
    if not ranges:
        return None
    best: tuple[float, int] | None = None
    chosen: str | None = None
    for rank, media_type in enumerate(offered):
        scored = [(r.matches(media_type), r) for r in ranges]
        matching = [(s, r) for s, r in scored if s >= 0]
        if not matching:
            continue
        specificity = max(s for s, _ in matching)
        q = max(r.q for s, r in matching if s == specificity)
        if q <= 0:
            continue
        key = (q, -rank)
        if best is None or key > best:
            best, chosen = key, media_type
    return chosen


# --- the facts every representation reads from the DataCite record ---------------------


@dataclass(frozen=True)
class Landing:
    """One landing page's subject: a concept (all versions) or one version."""

    dataset_id: str
    doi: str
    url: str  # the landing page
    metadata: Mapping[str, Any]  # DataCite 4.5 JSON attributes
    distributions: tuple[Mapping[str, Any], ...] = ()  # of the version (the latest, for a concept)
    version: int | None = None  # None: the concept
    concept_doi: str | None = None
    concept_url: str | None = None
    linkset_url: str | None = None
    withdrawn_reason: str = ""


def title_of(metadata: Mapping[str, Any]) -> str:
    titles = metadata.get("titles") or [{}]
    return str(titles[0].get("title", ""))


def abstract_of(metadata: Mapping[str, Any]) -> str:
    for item in metadata.get("descriptions") or []:
        if item.get("descriptionType") == "Abstract":
            return str(item.get("description", ""))
    return ""


def _year(metadata: Mapping[str, Any]) -> str:
    return str(metadata.get("publicationYear", ""))


def _issued(metadata: Mapping[str, Any]) -> str:
    for item in metadata.get("dates") or []:
        if item.get("dateType") == "Issued":
            return str(item["date"])
    return _year(metadata)


def _publisher(metadata: Mapping[str, Any]) -> str:
    publisher = metadata.get("publisher") or {}
    return str(publisher.get("name", "")) if isinstance(publisher, Mapping) else str(publisher)


def keywords_of(metadata: Mapping[str, Any]) -> list[str]:
    return [str(s["subject"]) for s in metadata.get("subjects") or [] if s.get("subject")]


def licence_url(metadata: Mapping[str, Any]) -> str | None:
    """The licence's URL: the SPDX-identified rights entry (the DUA is not a licence)."""
    for item in metadata.get("rightsList") or []:
        if item.get("rightsIdentifierScheme") == "SPDX" and item.get("rightsUri"):
            return str(item["rightsUri"])
    return None


def _orcid(creator: Mapping[str, Any]) -> str | None:
    for ident in creator.get("nameIdentifiers") or []:
        if ident.get("nameIdentifierScheme") == _ORCID_SCHEME:
            value = str(ident["nameIdentifier"])
            return value if value.startswith("http") else f"https://orcid.org/{value}"
    return None


def author_urls(metadata: Mapping[str, Any]) -> list[str]:
    return [url for c in metadata.get("creators") or [] if (url := _orcid(c))]


def _creators(metadata: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(metadata.get("creators") or [])


def _version_label(landing: Landing) -> str:
    return str(landing.metadata.get("version") or (landing.version or ""))


# --- schema.org ------------------------------------------------------------------------


def schema_org(landing: Landing, columns: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The schema.org `Dataset` of a landing page (embedded in its HTML as JSON-LD)."""
    metadata = landing.metadata
    creators = []
    for c in _creators(metadata):
        person = c.get("nameType") == "Personal"
        item: dict[str, Any] = {"@type": "Person" if person else "Organization", "name": c["name"]}
        if person and c.get("givenName"):
            item |= {"givenName": c["givenName"], "familyName": c.get("familyName", "")}
        if orcid := _orcid(c):
            item["@id"] = orcid
            item["identifier"] = orcid
        affiliations = [a["name"] for a in c.get("affiliation") or [] if a.get("name")]
        if affiliations:
            item["affiliation"] = [{"@type": "Organization", "name": a} for a in affiliations]
        creators.append(item)
    out: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Dataset",
        "@id": doi_url(landing.doi),
        "identifier": doi_url(landing.doi),
        "url": landing.url,
        "name": title_of(metadata),
        "description": abstract_of(metadata),
        "creator": creators,
        "publisher": {"@type": "Organization", "name": _publisher(metadata)},
        "datePublished": _issued(metadata),
        "keywords": keywords_of(metadata),
        "inLanguage": metadata.get("language", "en"),
        "isAccessibleForFree": True,
    }
    if lic := licence_url(metadata):
        out["license"] = lic
    dua = [r for r in metadata.get("rightsList") or [] if r.get("rightsIdentifierScheme") != "SPDX"]
    if dua:
        out["conditionsOfAccess"] = "; ".join(
            f"{r.get('rights', '')} {r.get('rightsUri', '')}".strip() for r in dua
        )
    if label := _version_label(landing):
        out["version"] = label
    if landing.concept_doi and landing.version is not None:
        out["isPartOf"] = {"@type": "Dataset", "@id": doi_url(landing.concept_doi)}
    if columns:
        out["variableMeasured"] = [
            {"@type": "PropertyValue", "name": name, "description": text}
            for name, text in columns.items()
        ]
    if landing.distributions and not landing.withdrawn_reason:
        out["distribution"] = [
            {
                "@type": "DataDownload",
                "name": d["file_name"],
                "contentUrl": d.get("url", ""),
                "encodingFormat": d["media_type"],
                "contentSize": f"{int(d['size'])} B",
                "sha256": d["sha256"],
            }
            for d in landing.distributions
        ]
    if landing.withdrawn_reason:
        out["creativeWorkStatus"] = "Withdrawn"
    return out


def json_ld_script(document: Mapping[str, Any]) -> str:
    """JSON for a `<script type="application/ld+json">` element: `<`, `>` and `&` escaped
    so no value can close the element or open another (the text stays valid JSON)."""
    text = json.dumps(document, ensure_ascii=False, indent=2)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# --- citations -------------------------------------------------------------------------


def _csl_name(creator: Mapping[str, Any]) -> dict[str, str]:
    if creator.get("familyName"):
        return {"family": str(creator["familyName"]), "given": str(creator.get("givenName", ""))}
    return {"literal": str(creator["name"])}


def csl_json(landing: Landing) -> dict[str, Any]:
    metadata = landing.metadata
    year = _year(metadata)
    out: dict[str, Any] = {
        "type": "dataset",
        "id": landing.doi,
        "DOI": landing.doi,
        "URL": doi_url(landing.doi),
        "title": title_of(metadata),
        "author": [_csl_name(c) for c in _creators(metadata)],
        "publisher": _publisher(metadata),
        "abstract": abstract_of(metadata),
        "keyword": ", ".join(keywords_of(metadata)),
    }
    if year.isdigit():
        out["issued"] = {"date-parts": [[int(year)]]}
    if label := _version_label(landing):
        out["version"] = label
    return out


_BIBTEX_SPECIAL = re.compile(r"([\\{}&%$#_~^])")
_BIBTEX_ESCAPES = {"\\": r"\textbackslash{}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def _bibtex_text(value: str) -> str:
    value = " ".join(value.split())
    return _BIBTEX_SPECIAL.sub(lambda m: _BIBTEX_ESCAPES.get(m.group(1), "\\" + m.group(1)), value)


def _bibtex_author(creator: Mapping[str, Any]) -> str:
    if creator.get("familyName"):
        return _bibtex_text(f"{creator['familyName']}, {creator.get('givenName', '')}".strip(", "))
    return "{" + _bibtex_text(str(creator["name"])) + "}"  # an organisation: one unit


def bibtex(landing: Landing) -> str:
    metadata = landing.metadata
    key = re.sub(r"[^A-Za-z0-9]+", "_", landing.doi.split("/", 1)[-1]).strip("_")
    fields = [
        ("author", " and ".join(_bibtex_author(c) for c in _creators(metadata))),
        ("title", "{" + _bibtex_text(title_of(metadata)) + "}"),
        ("publisher", _bibtex_text(_publisher(metadata))),
        ("year", _bibtex_text(_year(metadata))),
        ("version", _bibtex_text(_version_label(landing))),
        ("doi", _bibtex_text(landing.doi)),
        ("url", doi_url(landing.doi)),
    ]
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields if value)
    return f"@misc{{{key},\n{body}\n}}\n"


def _ris_value(value: str) -> str:
    return " ".join(value.split())


def ris(landing: Landing) -> str:
    metadata = landing.metadata
    lines = [("TY", "DATA")]
    lines += [("AU", _ris_value(str(c["name"]))) for c in _creators(metadata)]
    lines += [
        ("TI", _ris_value(title_of(metadata))),
        ("PY", _year(metadata)),
        ("PB", _ris_value(_publisher(metadata))),
        ("ET", _version_label(landing)),
        ("DO", landing.doi),
        ("UR", doi_url(landing.doi)),
        ("AB", _ris_value(abstract_of(metadata))),
    ]
    lines += [("KW", _ris_value(k)) for k in keywords_of(metadata)]
    lines.append(("ER", ""))
    return "".join(f"{tag}  - {value}\r\n" for tag, value in lines if value or tag == "ER")


def citation_text(landing: Landing) -> str:
    """A formatted reference in the shape of DataCite's recommended citation:
    Creator (Year). Title (Version). Publisher. Identifier."""
    metadata = landing.metadata
    authors = "; ".join(str(c["name"]) for c in _creators(metadata))
    label = _version_label(landing)
    version = f" (Version {label})" if label else ""
    return (
        f"{authors} ({_year(metadata)}). {title_of(metadata)}{version} [Data set]. "
        f"{_publisher(metadata)}. {doi_url(landing.doi)}"
    )


# --- FAIR Signposting ------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    href: str
    rel: str
    type: str | None = None

    def header_value(self) -> str:
        kind = f'; type="{self.type}"' if self.type else ""
        return f'<{self.href}>; rel="{self.rel}"{kind}'


def signposting(landing: Landing) -> list[Link]:
    """Level-1 Signposting for a landing page: cite-as, describedby, item, license, type,
    author (ORCIDs, where known), and the linkset."""
    links = [Link(doi_url(landing.doi), "cite-as")]
    links += [
        Link(f"{landing.url}?format={name}", "describedby", media)
        for name, media in FORMAT_NAMES.items()
        if media in (DATACITE_JSON, DATACITE_XML, JSON_LD)
    ]
    if not landing.withdrawn_reason:
        links += [Link(str(d["url"]), "item", str(d["media_type"])) for d in landing.distributions]
    if lic := licence_url(landing.metadata):
        links.append(Link(lic, "license"))
    links += [
        Link("https://schema.org/Dataset", "type"),
        Link("https://schema.org/AboutPage", "type"),
    ]
    links += [Link(url, "author") for url in author_urls(landing.metadata)]
    if landing.linkset_url:
        links.append(Link(landing.linkset_url, "linkset", LINKSET_JSON))
    return links


def link_header(links: Iterable[Link]) -> str:
    return ", ".join(link.header_value() for link in links)


def linkset(landings: Sequence[Landing]) -> dict[str, Any]:
    """The level-2 linkset (RFC 9264 JSON) of a dataset: one context per landing page
    (the concept and each version) with its typed links, and one per file pointing back
    to the page it belongs to (`collection`)."""
    contexts: list[dict[str, Any]] = []
    for landing in landings:
        context: dict[str, Any] = {"anchor": landing.url}
        for link in signposting(landing):
            if link.rel == "linkset":
                continue
            target: dict[str, str] = {"href": link.href}
            if link.type:
                target["type"] = link.type
            context.setdefault(link.rel, []).append(target)
        contexts.append(context)
        if landing.version is not None and not landing.withdrawn_reason:
            contexts += [
                {"anchor": str(d["url"]), "collection": [{"href": landing.url, "type": HTML}]}
                for d in landing.distributions
            ]
    return {"linkset": contexts}
