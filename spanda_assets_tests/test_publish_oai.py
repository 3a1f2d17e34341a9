"""OAI-PMH 2.0 over the search index (lib/publish/oai.py): every verb's response checked
for the elements, order and namespaces the protocol's schema requires; paging through
resumption tokens; date windows; each error code. Pure function, no HTTP server."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from spanda_assets.lib.publish.oai import (
    DATACITE_NS,
    DC_NS,
    OAI_DATACITE_NS,
    OAI_DC_NS,
    OAI_IDENTIFIER_NS,
    OAI_NS,
    XSI_NS,
    OaiConfig,
    dublin_core,
    minimal_datacite_xml,
    respond,
)
from spanda_assets.lib.publish.search import IndexRecord, SearchIndex

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 1, 15, 9, 30, tzinfo=dt.UTC)
CONFIG = OaiConfig(
    repository_name="Spanda FAIR catalog",
    base_url="https://data.example.edu/oai",
    admin_emails=("steward@example.edu", "it@example.edu"),
)
ID_PREFIX = "oai:data.example.edu:"
STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
DCMES = {
    "title",
    "creator",
    "subject",
    "description",
    "publisher",
    "contributor",
    "date",
    "type",
    "format",
    "identifier",
    "source",
    "language",
    "relation",
    "coverage",
    "rights",
}


def q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def attributes(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "doi": f"10.5555/spanda.ds{i}.v1",
        "titles": [{"title": f"Forum posts {i}"}, {"title": "Sub", "titleType": "Subtitle"}],
        "creators": [
            {
                "name": "Okafor, Ana",
                "nameType": "Personal",
                "givenName": "Ana",
                "familyName": "Okafor",
                "nameIdentifiers": [
                    {
                        "nameIdentifier": "https://orcid.org/0000-0002-1825-0097",
                        "nameIdentifierScheme": "ORCID",
                        "schemeUri": "https://orcid.org",
                    }
                ],
                "affiliation": [
                    {
                        "name": "Spanda University",
                        "affiliationIdentifier": "https://ror.org/05abc1234",
                        "affiliationIdentifierScheme": "ROR",
                    }
                ],
            }
        ],
        "publisher": {"name": "Spanda Demo Institution"},
        "publicationYear": 2024,
        "types": {"resourceTypeGeneral": "Dataset", "resourceType": "Forum posts"},
        "subjects": [{"subject": "Mathematics"}, {"subject": "Learning analytics"}],
        "descriptions": [{"description": "De-identified posts.", "descriptionType": "Abstract"}],
        "rightsList": [
            {
                "rights": "Creative Commons Attribution 4.0 International",
                "rightsUri": "https://creativecommons.org/licenses/by/4.0/legalcode",
                "rightsIdentifier": "cc-by-4.0",
                "rightsIdentifierScheme": "SPDX",
            }
        ],
        "relatedIdentifiers": [
            {
                "relatedIdentifier": f"10.5555/spanda.ds{i}",
                "relatedIdentifierType": "DOI",
                "relationType": "IsVersionOf",
            }
        ],
        "dates": [{"date": "2024-05-01", "dateType": "Issued"}],
        "language": "en",
        "version": "1",
        "sizes": ["1200 rows"],
        "formats": ["application/vnd.apache.parquet"],
        **extra,
    }


def index_record(i: int, **extra: Any) -> IndexRecord:
    return IndexRecord(
        datacite=attributes(i, **extra),
        dataset_id=f"ds{i}",
        version=1,
        published_at=dt.datetime(2024, 5, 1, tzinfo=dt.UTC),
        grade_levels=("9",),
        concept_doi=f"10.5555/spanda.ds{i}",
    )


class Clock:
    """The index's clock: each change one hour after the previous one."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        self.now += dt.timedelta(hours=1)
        return self.now


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SearchIndex]:
    idx = SearchIndex(tmp_path / "search.sqlite", clock=Clock())
    yield idx
    idx.close()


@pytest.fixture
def filled(index: SearchIndex) -> SearchIndex:
    for i in range(1, 4):
        index.upsert(index_record(i))  # datestamps 13:00, 14:00, 15:00 on 2025-03-01
    return index


def call(source: SearchIndex, config: OaiConfig = CONFIG, **args: Any) -> Any:
    """One request; the parsed response after the envelope checks every response must pass."""
    status, body = respond(args, source, config, now=NOW)
    assert status == 200
    assert body.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    root = etree.fromstring(body)
    assert root.tag == q(OAI_NS, "OAI-PMH")
    assert root.get(q(XSI_NS, "schemaLocation")) == (
        f"{OAI_NS} http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"
    )
    children = list(root)
    assert [c.tag for c in children[:2]] == [q(OAI_NS, "responseDate"), q(OAI_NS, "request")]
    assert children[0].text == "2026-01-15T09:30:00Z"
    assert children[1].text == CONFIG.base_url
    assert len(children) == 3
    return root


def error_code(root: Any) -> str:
    error = root[2]
    assert error.tag == q(OAI_NS, "error")
    assert error.text
    return str(error.get("code"))


def tags(element: Any) -> list[str]:
    return [etree.QName(c).localname for c in element]


def check_header(header: Any) -> str:
    assert header.tag == q(OAI_NS, "header")
    assert tags(header) == ["identifier", "datestamp"]
    assert header.get("status") in (None, "deleted")
    assert STAMP.match(header[1].text)
    identifier = str(header[0].text)
    assert identifier.startswith(ID_PREFIX)
    return identifier


def check_oai_dc(dc: Any) -> dict[str, list[str]]:
    assert dc.tag == q(OAI_DC_NS, "dc")
    assert dc.get(q(XSI_NS, "schemaLocation")) == (
        f"{OAI_DC_NS} http://www.openarchives.org/OAI/2.0/oai_dc.xsd"
    )
    fields: dict[str, list[str]] = {}
    for element in dc:
        name = etree.QName(element)
        assert name.namespace == DC_NS and name.localname in DCMES
        fields.setdefault(name.localname, []).append(element.text)
    return fields


def check_resource(resource: Any) -> None:
    """The six mandatory DataCite properties, in the kernel-4 namespace."""
    assert resource.tag == q(DATACITE_NS, "resource")
    names = set(tags(resource))
    assert {
        "identifier",
        "creators",
        "titles",
        "publisher",
        "publicationYear",
        "resourceType",
    } <= names
    assert resource.find(q(DATACITE_NS, "identifier")).get("identifierType") == "DOI"
    assert resource.find(q(DATACITE_NS, "resourceType")).get("resourceTypeGeneral")
    for element in resource.iter():
        if isinstance(element.tag, str):
            assert etree.QName(element).namespace == DATACITE_NS


def check_oai_datacite(wrapper: Any) -> Any:
    assert wrapper.tag == q(OAI_DATACITE_NS, "oai_datacite")
    assert sorted(tags(wrapper)) == ["datacentreSymbol", "payload", "schemaVersion"]
    assert wrapper.find(q(OAI_DATACITE_NS, "schemaVersion")).text == "4.5"
    payload = wrapper.find(q(OAI_DATACITE_NS, "payload"))
    assert len(payload) == 1
    return payload[0]


def check_record(record: Any, prefix: str) -> str:
    assert record.tag == q(OAI_NS, "record")
    identifier = check_header(record[0])
    if record[0].get("status") == "deleted":
        assert tags(record) == ["header"]
        return identifier
    assert tags(record) == ["header", "metadata"]
    assert len(record[1]) == 1
    if prefix == "oai_dc":
        check_oai_dc(record[1][0])
    else:
        check_resource(check_oai_datacite(record[1][0]))
    return identifier


# --------------------------------------------------------------------------- verbs


def test_identify(filled: SearchIndex) -> None:
    root = call(filled, verb="Identify")
    assert root[1].attrib == {"verb": "Identify"}
    identify = root[2]
    assert identify.tag == q(OAI_NS, "Identify")
    assert tags(identify) == [
        "repositoryName",
        "baseURL",
        "protocolVersion",
        "adminEmail",
        "adminEmail",
        "earliestDatestamp",
        "deletedRecord",
        "granularity",
        "description",
    ]
    text = {etree.QName(c).localname: c.text for c in identify}
    assert text["protocolVersion"] == "2.0"
    assert text["baseURL"] == CONFIG.base_url
    assert text["earliestDatestamp"] == "2025-03-01T13:00:00Z"
    assert text["deletedRecord"] == "persistent"
    assert text["granularity"] == "YYYY-MM-DDThh:mm:ssZ"
    scheme = identify[-1][0]
    assert scheme.tag == q(OAI_IDENTIFIER_NS, "oai-identifier")
    assert tags(scheme) == ["scheme", "repositoryIdentifier", "delimiter", "sampleIdentifier"]
    assert scheme[1].text == "data.example.edu"


def test_identify_on_an_empty_repository(index: SearchIndex) -> None:
    root = call(index, verb="Identify")
    assert root[2].find(q(OAI_NS, "earliestDatestamp")).text == "2026-01-15T09:30:00Z"


def test_list_metadata_formats(filled: SearchIndex) -> None:
    for args in ({}, {"identifier": ID_PREFIX + "10.5555/spanda.ds1.v1"}):
        formats = call(filled, verb="ListMetadataFormats", **args)[2]
        assert formats.tag == q(OAI_NS, "ListMetadataFormats")
        listed = {}
        for fmt in formats:
            assert tags(fmt) == ["metadataPrefix", "schema", "metadataNamespace"]
            listed[fmt[0].text] = fmt[2].text
        assert listed == {"oai_dc": OAI_DC_NS, "oai_datacite": OAI_DATACITE_NS}
    root = call(filled, verb="ListMetadataFormats", identifier=ID_PREFIX + "10.5555/nope")
    assert error_code(root) == "idDoesNotExist"


def test_get_record_in_dublin_core(filled: SearchIndex) -> None:
    identifier = ID_PREFIX + "10.5555/spanda.ds2.v1"
    root = call(filled, verb="GetRecord", identifier=identifier, metadataPrefix="oai_dc")
    assert root[1].attrib == {
        "verb": "GetRecord",
        "identifier": identifier,
        "metadataPrefix": "oai_dc",
    }
    (record,) = root[2]
    assert check_record(record, "oai_dc") == identifier
    assert record[0][1].text == "2025-03-01T14:00:00Z"
    dc = check_oai_dc(record[1][0])
    assert dc["title"] == ["Forum posts 2", "Sub"]
    assert dc["creator"] == ["Okafor, Ana"]
    assert dc["subject"] == ["Mathematics", "Learning analytics"]
    assert dc["identifier"] == ["https://doi.org/10.5555/spanda.ds2.v1"]
    assert dc["relation"] == ["https://doi.org/10.5555/spanda.ds2"]
    assert dc["rights"] == [
        "Creative Commons Attribution 4.0 International",
        "https://creativecommons.org/licenses/by/4.0/legalcode",
    ]
    assert dc["type"] == ["Dataset", "Forum posts"]
    assert dc["date"] == ["2024", "2024-05-01"]
    assert dc["format"] == ["application/vnd.apache.parquet", "1200 rows"]
    assert dc["language"] == ["en"]
    # Identifiers are case-sensitive in OAI-PMH, DOIs are not: either spelling finds it.
    upper = ID_PREFIX + "10.5555/SPANDA.DS2.V1"
    assert check_record(
        call(filled, verb="GetRecord", identifier=upper, metadataPrefix="oai_dc")[2][0], "oai_dc"
    )


def test_get_record_in_datacite(filled: SearchIndex) -> None:
    identifier = ID_PREFIX + "10.5555/spanda.ds1.v1"
    root = call(filled, verb="GetRecord", identifier=identifier, metadataPrefix="oai_datacite")
    record = root[2][0]
    check_record(record, "oai_datacite")
    wrapper = record[1][0]
    assert wrapper.find(q(OAI_DATACITE_NS, "datacentreSymbol")).text == "data.example.edu"
    resource = check_oai_datacite(wrapper)
    d = {"d": DATACITE_NS}
    assert resource.findtext("d:identifier", namespaces=d) == "10.5555/spanda.ds1.v1"
    creator = resource.find("d:creators/d:creator", namespaces=d)
    assert creator.findtext("d:creatorName", namespaces=d) == "Okafor, Ana"
    assert creator.find("d:nameIdentifier", namespaces=d).get("nameIdentifierScheme") == "ORCID"
    assert creator.find("d:affiliation", namespaces=d).get("affiliationIdentifierScheme") == "ROR"
    rights = resource.find("d:rightsList/d:rights", namespaces=d)
    assert rights.get("rightsURI").startswith("https://creativecommons.org/")
    assert rights.get("rightsIdentifier") == "cc-by-4.0"
    assert resource.find("d:titles/d:title[2]", namespaces=d).get("titleType") == "Subtitle"
    related = resource.find("d:relatedIdentifiers/d:relatedIdentifier", namespaces=d)
    assert (related.get("relationType"), related.text) == ("IsVersionOf", "10.5555/spanda.ds1")


def test_a_given_datacite_serialiser_is_used(filled: SearchIndex) -> None:
    seen: list[str] = []

    def serialise(attrs: Any) -> str:
        seen.append(attrs["doi"])
        return minimal_datacite_xml(attrs).decode("utf-8")  # a str with a declaration

    status, body = respond(
        {"verb": "ListRecords", "metadataPrefix": "oai_datacite"},
        filled,
        CONFIG,
        datacite_xml=serialise,
    )
    assert status == 200
    records = etree.fromstring(body)[2]
    assert len(records) == 3
    for record in records:
        check_record(record, "oai_datacite")
    assert seen == [f"10.5555/spanda.ds{i}.v1" for i in (1, 2, 3)]


def test_deleted_records_are_headers_only(filled: SearchIndex) -> None:
    filled.delete("10.5555/spanda.ds2.v1")
    identifier = ID_PREFIX + "10.5555/spanda.ds2.v1"
    record = call(filled, verb="GetRecord", identifier=identifier, metadataPrefix="oai_dc")[2][0]
    check_record(record, "oai_dc")
    assert record[0].get("status") == "deleted"
    listed = call(filled, verb="ListRecords", metadataPrefix="oai_datacite")[2]
    assert [r[0].get("status") for r in listed] == [
        None,
        None,
        "deleted",
    ]  # the deletion is the newest change
    for record in listed:
        check_record(record, "oai_datacite")
    headers = call(filled, verb="ListIdentifiers", metadataPrefix="oai_dc")[2]
    assert [h.get("status") for h in headers] == [None, None, "deleted"]


def test_values_that_xml_cannot_hold_are_dropped_not_fatal(index: SearchIndex) -> None:
    index.upsert(index_record(1, titles=[{"title": 'Scores <&> "quotes" \x00\x08\x1f done'}]))
    for prefix in ("oai_dc", "oai_datacite"):
        record = call(index, verb="ListRecords", metadataPrefix=prefix)[2][0]
        check_record(record, prefix)
    dc = check_oai_dc(call(index, verb="ListRecords", metadataPrefix="oai_dc")[2][0][1][0])
    assert dc["title"][0] == 'Scores <&> "quotes"  done'


# --------------------------------------------------------------------------- paging


def harvest_all(
    source: SearchIndex, verb: str, config: OaiConfig, **args: Any
) -> tuple[list[str], list[dict[str, str]]]:
    identifiers: list[str] = []
    tokens: list[dict[str, str]] = []
    root = call(source, config, verb=verb, **args)
    while True:
        element = root[2]
        assert element.tag == q(OAI_NS, verb)
        token = None
        for child in element:
            if child.tag == q(OAI_NS, "resumptionToken"):
                token = child
            elif verb == "ListRecords":
                identifiers.append(check_record(child, args.get("metadataPrefix", "oai_dc")))
            else:
                identifiers.append(check_header(child))
        if token is None:
            return identifiers, tokens
        assert element[-1] is token  # the token comes last
        tokens.append({**token.attrib, "text": token.text or ""})
        if not token.text:
            return identifiers, tokens
        root = call(source, config, verb=verb, resumptionToken=token.text)
        assert root[1].attrib == {"verb": verb, "resumptionToken": token.text}


@pytest.mark.parametrize("verb", ["ListRecords", "ListIdentifiers"])
@pytest.mark.parametrize("prefix", ["oai_dc", "oai_datacite"])
def test_paging_returns_every_record_exactly_once(
    index: SearchIndex, verb: str, prefix: str
) -> None:
    index.upsert_many([index_record(i) for i in range(1, 26)])
    index.delete("10.5555/spanda.ds7.v1")
    config = OaiConfig(CONFIG.repository_name, CONFIG.base_url, CONFIG.admin_emails, page_size=10)
    identifiers, tokens = harvest_all(index, verb, config, metadataPrefix=prefix)
    assert sorted(identifiers) == sorted(
        ID_PREFIX + f"10.5555/spanda.ds{i}.v1" for i in range(1, 26)
    )
    assert len(identifiers) == len(set(identifiers)) == 25
    assert [t["cursor"] for t in tokens] == ["0", "10", "20"]
    assert {t["completeListSize"] for t in tokens} == {"25"}
    assert tokens[-1]["text"] == "" and all(t["text"] for t in tokens[:-1])


def test_a_list_that_fits_one_page_has_no_token(filled: SearchIndex) -> None:
    identifiers, tokens = harvest_all(filled, "ListIdentifiers", CONFIG, metadataPrefix="oai_dc")
    assert len(identifiers) == 3 and tokens == []


def test_records_changed_during_a_harvest_are_sent_again_not_lost(index: SearchIndex) -> None:
    index.upsert_many([index_record(i) for i in range(1, 11)])
    config = OaiConfig(CONFIG.repository_name, CONFIG.base_url, CONFIG.admin_emails, page_size=4)
    first = call(index, config, verb="ListIdentifiers", metadataPrefix="oai_dc")[2]
    seen = [check_header(h) for h in first if h.tag == q(OAI_NS, "header")]
    token = first[-1].text
    # Meanwhile one record already sent and one not yet sent are corrected.
    index.upsert(index_record(2, version="1.1"))
    index.upsert(index_record(9, version="1.1"))
    while token:
        page = call(index, config, verb="ListIdentifiers", resumptionToken=token)[2]
        seen += [check_header(h) for h in page if h.tag == q(OAI_NS, "header")]
        token = page[-1].text if page[-1].tag == q(OAI_NS, "resumptionToken") else None
    assert set(seen) == {ID_PREFIX + f"10.5555/spanda.ds{i}.v1" for i in range(1, 11)}
    assert seen[-2:] == [ID_PREFIX + "10.5555/spanda.ds2.v1", ID_PREFIX + "10.5555/spanda.ds9.v1"]


def test_from_and_until_select_by_datestamp(filled: SearchIndex) -> None:
    def listed(**args: str) -> list[str]:
        root = call(filled, verb="ListIdentifiers", metadataPrefix="oai_dc", **args)
        if root[2].tag == q(OAI_NS, "error"):
            return [error_code(root)]
        return [h[0].text.rsplit(".", 2)[1] for h in root[2]]

    assert listed(**{"from": "2025-03-01"}) == ["ds1", "ds2", "ds3"]
    assert listed(until="2025-03-01") == ["ds1", "ds2", "ds3"]  # a day's until is inclusive
    assert listed(**{"from": "2025-03-01T14:00:00Z"}) == ["ds2", "ds3"]
    assert listed(until="2025-03-01T14:00:00Z") == ["ds1", "ds2"]
    assert listed(**{"from": "2025-03-01T13:30:00Z", "until": "2025-03-01T14:30:00Z"}) == ["ds2"]
    assert listed(**{"from": "2025-03-02"}) == ["noRecordsMatch"]
    assert listed(until="2025-02-28") == ["noRecordsMatch"]
    assert listed(**{"from": "2025-03-01", "until": "2025-03-01T14:00:00Z"}) == ["badArgument"]
    assert listed(**{"from": "2025-03-02", "until": "2025-03-01"}) == ["badArgument"]
    assert listed(**{"from": "2025-02-30"}) == ["badArgument"]
    assert listed(**{"from": "2025-03-01T14:00:00"}) == ["badArgument"]
    assert listed(until="yesterday") == ["badArgument"]
    # The window travels in the token.
    config = OaiConfig(CONFIG.repository_name, CONFIG.base_url, CONFIG.admin_emails, page_size=1)
    identifiers, tokens = harvest_all(
        filled,
        "ListIdentifiers",
        config,
        metadataPrefix="oai_dc",
        **{"from": "2025-03-01T14:00:00Z"},
    )
    assert [i.rsplit(".", 2)[1] for i in identifiers] == ["ds2", "ds3"]
    assert tokens[0]["completeListSize"] == "2"


# --------------------------------------------------------------------------- errors


def token_of(data: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


GOOD_TOKEN = {"v": 1, "p": "oai_dc", "f": None, "u": None, "s": 1, "c": 1}

ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("badVerb", {}),
    ("badVerb", {"verb": "Harvest"}),
    ("badVerb", {"verb": "identify"}),
    ("badVerb", {"verb": ["Identify", "Identify"]}),
    ("badArgument", {"verb": "Identify", "metadataPrefix": "oai_dc"}),
    ("badArgument", {"verb": "ListRecords"}),
    ("badArgument", {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "foo": "bar"}),
    ("badArgument", {"verb": "ListRecords", "metadataPrefix": ["oai_dc", "oai_datacite"]}),
    ("badArgument", {"verb": "ListRecords", "metadataPrefix": "oai_dc", "resumptionToken": "x"}),
    ("badArgument", {"verb": "GetRecord", "metadataPrefix": "oai_dc"}),
    ("badArgument", {"verb": "GetRecord", "identifier": ID_PREFIX + "10.5555/spanda.ds1.v1"}),
    ("badArgument", {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2025"}),
    ("badArgument", {"verb": "ListRecords", "metadataPrefix": "oai_dc", "until": "x" * 3000}),
    ("cannotDisseminateFormat", {"verb": "ListRecords", "metadataPrefix": "marc21"}),
    ("cannotDisseminateFormat", {"verb": "ListIdentifiers", "metadataPrefix": "datacite"}),
    (
        "cannotDisseminateFormat",
        {
            "verb": "GetRecord",
            "metadataPrefix": "mods",
            "identifier": ID_PREFIX + "10.5555/spanda.ds1.v1",
        },
    ),
    (
        "idDoesNotExist",
        {"verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": ID_PREFIX + "10.5555/none"},
    ),
    (
        "idDoesNotExist",
        {
            "verb": "GetRecord",
            "metadataPrefix": "oai_dc",
            "identifier": "oai:elsewhere.org:10.5555/spanda.ds1.v1",
        },
    ),
    (
        "idDoesNotExist",
        {"verb": "GetRecord", "metadataPrefix": "oai_dc", "identifier": "10.5555/spanda.ds1.v1"},
    ),
    ("noRecordsMatch", {"verb": "ListRecords", "metadataPrefix": "oai_dc", "from": "2030-01-01"}),
    ("badResumptionToken", {"verb": "ListRecords", "resumptionToken": "not a token!"}),
    ("badResumptionToken", {"verb": "ListRecords", "resumptionToken": "bm90IGpzb24"}),
    ("badResumptionToken", {"verb": "ListIdentifiers", "resumptionToken": token_of([1, 2])}),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "p": "marc21"})},
    ),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "s": -1})},
    ),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "s": True})},
    ),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "f": "2025-03-01"})},
    ),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "x": 1})},
    ),
    (
        "badResumptionToken",
        {"verb": "ListRecords", "resumptionToken": token_of({**GOOD_TOKEN, "v": 2})},
    ),
    ("noSetHierarchy", {"verb": "ListSets"}),
    ("noSetHierarchy", {"verb": "ListRecords", "metadataPrefix": "oai_dc", "set": "maths"}),
    ("noSetHierarchy", {"verb": "ListIdentifiers", "metadataPrefix": "oai_dc", "set": "maths"}),
]


@pytest.mark.parametrize(
    ("code", "args"), ERRORS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(ERRORS)]
)
def test_every_error_is_answered_as_the_protocol_says(
    filled: SearchIndex, code: str, args: dict[str, Any]
) -> None:
    root = call(filled, **args)
    assert error_code(root) == code
    request = root[1]
    if code in ("badVerb", "badArgument"):
        assert request.attrib == {}  # only the base URL after these two (3.2)
    else:
        assert request.get("verb") == args["verb"]


def test_an_empty_repository_has_no_records_to_list(index: SearchIndex) -> None:
    for verb in ("ListRecords", "ListIdentifiers"):
        assert error_code(call(index, verb=verb, metadataPrefix="oai_dc")) == "noRecordsMatch"


def test_a_token_from_a_list_is_accepted_and_a_tampered_one_is_not(index: SearchIndex) -> None:
    index.upsert_many([index_record(i) for i in range(1, 6)])
    config = OaiConfig(CONFIG.repository_name, CONFIG.base_url, CONFIG.admin_emails, page_size=2)
    token = call(index, config, verb="ListRecords", metadataPrefix="oai_dc")[2][-1].text
    assert call(index, config, verb="ListRecords", resumptionToken=token)[2].tag == q(
        OAI_NS, "ListRecords"
    )
    assert (
        error_code(call(index, config, verb="ListRecords", resumptionToken=token[:-3]))
        == "badResumptionToken"
    )


def test_dublin_core_mapping_of_minimal_metadata() -> None:
    assert dublin_core({"doi": "10.5555/x", "titles": [{"title": "T"}], "publisher": "P"}) == [
        ("title", "T"),
        ("publisher", "P"),
        ("identifier", "https://doi.org/10.5555/x"),
    ]
    assert ("relation", "https://doi.org/10.5555/c") in dublin_core({}, concept_doi="10.5555/c")


def test_minimal_datacite_xml_is_a_kernel_4_resource() -> None:
    resource = etree.fromstring(minimal_datacite_xml(attributes(1)))
    check_resource(resource)
    assert resource.get(q(XSI_NS, "schemaLocation")) == (
        f"{DATACITE_NS} http://schema.datacite.org/meta/kernel-4.5/metadata.xsd"
    )
    sparse = etree.fromstring(minimal_datacite_xml({"doi": "10.5555/x"}))
    check_resource(sparse)
