"""The HTML landing page of a dataset or a version: what a person (and a crawler) reads.

Rendered with Jinja2 and autoescaping on, so no metadata value can inject markup; the
schema.org JSON-LD goes in a `<script>` element through `formats.json_ld_script`, which
escapes what could close it. The page carries the same Signposting links as the HTTP
header, as `<link>` elements, for clients that only read HTML.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from lxml import html as lxml_html

from spanda_assets.api import formats

_ENV = Environment(
    loader=PackageLoader("spanda_assets.api", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
)
_PAGE = _ENV.get_template("landing.html")
_FORMAT_LABELS = (
    ("datacite-json", "DataCite JSON"),
    ("datacite-xml", "DataCite XML"),
    ("jsonld", "schema.org JSON-LD"),
    ("csl-json", "CSL JSON"),
    ("bibtex", "BibTeX"),
    ("ris", "RIS"),
    ("citation", "text"),
)


def embedded_json_ld(html: str) -> list[Any]:
    """Every JSON-LD document a page embeds, parsed as a browser and a crawler would find
    them (an HTML parser, then JSON); ValueError names what does not parse."""
    root = lxml_html.fromstring(html)
    out = []
    for n, script in enumerate(root.xpath('//script[@type="application/ld+json"]'), start=1):
        try:
            out.append(json.loads(script.text or ""))
        except ValueError as exc:
            raise ValueError(f"JSON-LD block {n} of the page does not parse: {exc}") from exc
    return out


def _access_text(sensitivity: str, purposes: Sequence[str]) -> str:
    if sensitivity == "quasi_identifier":
        return "quasi-identifier: only for " + ", ".join(purposes) if purposes else "withheld"
    if sensitivity == "restricted":
        return "restricted: stewards only"
    return "with the dataset"


def render(
    landing: formats.Landing,
    *,
    base: str,
    columns: Sequence[tuple[str, str, str, Sequence[str]]] = (),
    versions: Sequence[Mapping[str, Any]] = (),
    dua: str = "",
) -> str:
    """The page of `landing`; `columns` are (name, description, sensitivity, purposes),
    `versions` the version table of a concept page."""
    metadata = landing.metadata
    licences = [
        r for r in metadata.get("rightsList") or [] if r.get("rightsIdentifierScheme") == "SPDX"
    ]
    return _PAGE.render(
        language=metadata.get("language", "en"),
        title=formats.title_of(metadata),
        description=formats.abstract_of(metadata),
        version=landing.version,
        doi=landing.doi,
        doi_url=formats.doi_url(landing.doi),
        url=landing.url,
        base=base,
        concept_url=landing.concept_url if landing.version is not None else None,
        citation=formats.citation_text(landing),
        formats=_FORMAT_LABELS,
        licence=licences[0].get("rights", "") if licences else "",
        licence_url=formats.licence_url(metadata),
        dua=dua,
        keywords=formats.keywords_of(metadata),
        distributions=landing.distributions,
        columns=[(n, t, _access_text(s, p)) for n, t, s, p in columns],
        versions=versions,
        withdrawn=landing.withdrawn_reason,
        links=formats.signposting(landing),
        json_ld=formats.json_ld_script(
            formats.schema_org(landing, {n: t for n, t, _, _ in columns})
        ),
    )
