"""The API's pure parts: the download filter's parser, content negotiation, the citation
formats and Signposting, checked without a server."""

from __future__ import annotations

import contextlib
import io
import json
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.expressions import (
    And,
    EqualTo,
    GreaterThanOrEqual,
    In,
    IsNull,
    Not,
    NotIn,
    NotNull,
    Or,
)
from pyiceberg.expressions.visitors import expression_evaluator
from pyiceberg.schema import Schema
from pyiceberg.typedef import Record
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    NestedField,
    StringType,
    TimestampType,
    TimestamptzType,
)

from spanda_assets.api import downloads, formats
from spanda_assets.api.filters import MAX_FILTER_CHARS, FilterError, parse_filter
from spanda_assets.defs.extract.assets import column_schema
from spanda_assets.defs.publish.assets import _jsonld_problems
from spanda_assets.lib.publish.datasets import dataset_by_id, load_datasets
from spanda_assets.lib.publish.export import snapshot_batches

SCHEMA = Schema(
    NestedField(1, "course_id", StringType(), required=False),
    NestedField(2, "created_at_year", IntegerType(), required=False),
    NestedField(3, "score", DoubleType(), required=False),
    NestedField(4, "rows", LongType(), required=False),
    NestedField(5, "active", BooleanType(), required=False),
    NestedField(6, "day", DateType(), required=False),
)
TYPES = {f.name: f.field_type for f in SCHEMA.fields}


def _keeps(text: str, row: dict[str, object]) -> bool:
    """Does the parsed filter keep `row`? (pyiceberg's own evaluator, bound to SCHEMA)"""
    expression = parse_filter(text, TYPES).expression
    evaluate = expression_evaluator(SCHEMA, expression, case_sensitive=True)
    record = pa.table({k: [row.get(k)] for k in TYPES}).to_pylist()[0]
    return bool(evaluate(Record(*[record[f.name] for f in SCHEMA.fields])))


def test_filters_parse_into_typed_expressions() -> None:
    parsed = parse_filter("course_id = 'c3' and created_at_year >= 2024", TYPES)
    assert isinstance(parsed.expression, And)
    assert parsed.columns == ("course_id", "created_at_year")
    assert isinstance(parse_filter("course_id in ('a', 'b')", TYPES).expression, In)
    assert isinstance(parse_filter("course_id not in ('a', 'b')", TYPES).expression, NotIn)
    assert isinstance(parse_filter("day is null", TYPES).expression, IsNull)
    assert isinstance(parse_filter("day IS NOT NULL", TYPES).expression, NotNull)
    assert isinstance(parse_filter("not (active = true or rows = 1)", TYPES).expression, Not)
    either = parse_filter("(score > 1.5 or rows = 3) and course_id <> 'x'", TYPES)
    assert isinstance(either.expression, And)
    assert isinstance(either.expression.left, Or)
    assert isinstance(parse_filter("created_at_year = 2024", TYPES).expression, EqualTo)
    assert isinstance(parse_filter("created_at_year >= -1", TYPES).expression, GreaterThanOrEqual)


def test_decimal_and_timestamp_literals_fit_their_column() -> None:
    types = {"grade": DecimalType(5, 2), "at": TimestampType(), "at_tz": TimestamptzType()}
    assert parse_filter("grade = 1.5", types).expression.literal.value == Decimal("1.50")
    for text, message in [
        ("grade = 1.555", "at most 2 decimals"),
        ("grade > 123456.78", "at most 5 digits"),
        ("grade = 1e3", "at most 5 digits"),
        ("grade = 1e-999999999", "at most 2 decimals"),
        ("at = '0001-01-01T00:00:00+01:00'", "between years 1 and 9999"),
        ("at = 'yesterday'", "ISO 8601"),
    ]:
        with pytest.raises(FilterError, match=re.escape(message)):
            parse_filter(text, types)
    assert parse_filter("at_tz >= '2024-09-01T08:00:00'", types).columns == ("at_tz",)


def test_filters_select_the_rows_they_say() -> None:
    row = {"course_id": "it's", "created_at_year": 2024, "score": 2.5, "active": True}
    assert _keeps("course_id = 'it''s'", row)  # a doubled quote is a quote
    assert not _keeps("course_id = 'its'", row)
    assert _keeps("created_at_year >= 2024 and score < 3", row)
    assert not _keeps("created_at_year > 2024 or score > 3", row)
    assert _keeps("not (active = false)", row)
    assert _keeps("day is null", row)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("created_at_year = 'abc'", "is not an integer"),
        ("created_at_year = 2024.5", "is not an integer"),
        ("created_at_year = 99999999999", "between"),
        ("course_id = 3", "quoted text value"),
        ("active = 'yes'", "true or false"),
        ("day = '2024-13-01'", "YYYY-MM-DD"),
        ("email = 'a@b.c'", "is not a column of this download"),
        ("course_id = 'x'; DROP TABLE students", "unexpected character ';'"),
        ("course_id = 'x' -- comment", "unexpected"),
        ("course_id = 'x' union select 1", "unexpected 'union'"),
        ("course_id = 'unterminated", "unexpected character"),
        ("(course_id = 'x'", "expected ')'"),
        ("course_id", "expected a comparison"),
        ("course_id is 3", "expected 'null'"),
        ("", "empty"),
        ("and = 'x'", "is not a column"),
        ("course_id = ''" + " or course_id = ''" * 200, "longer than"),
        ("course_id = '" + "x" * 1_001 + "'", "longer than 1000"),
        ("(" * 40 + "course_id = 'x'" + ")" * 40, "nested more than"),
        ("course_id in (" + ",".join(["'a'"] * 201) + ")", "more than 200 values"),
    ],
)
def test_bad_filters_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=re.escape(message)):
        parse_filter(text, TYPES)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=MAX_FILTER_CHARS + 50))
def test_any_text_is_a_filter_or_a_filter_error(text: str) -> None:
    """Whatever a client sends, the parser answers with an expression or a FilterError:
    never another exception (which the API would turn into a 500)."""
    with contextlib.suppress(FilterError):
        parse_filter(text, TYPES)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_a_quoted_value_is_only_ever_a_value(value: str) -> None:
    quoted = "'" + value.replace("'", "''") + "'"
    parsed = parse_filter(f"course_id = {quoted}", TYPES)
    assert isinstance(parsed.expression, EqualTo)
    assert parsed.expression.literal.value == value
    assert parsed.columns == ("course_id",)


# --- content negotiation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, formats.HTML),
        ("", formats.HTML),
        ("*/*", formats.HTML),
        ("text/html,application/xhtml+xml,*/*;q=0.8", formats.HTML),
        ("application/ld+json", formats.JSON_LD),
        ("application/vnd.datacite.datacite+json", formats.DATACITE_JSON),
        ("application/vnd.datacite.datacite+xml", formats.DATACITE_XML),
        ("application/vnd.citationstyles.csl+json", formats.CSL_JSON),
        ("application/x-bibtex", formats.BIBTEX),
        ("text/x-bibliography", formats.BIBLIOGRAPHY),
        ("application/x-research-info-systems", formats.RIS),
        ("text/html;q=0.5, application/ld+json", formats.JSON_LD),
        ("application/x-bibtex;q=0.2, application/x-research-info-systems;q=0.9", formats.RIS),
        ("text/*", formats.HTML),
        ("text/*;q=0.5, text/html;q=0", formats.BIBLIOGRAPHY),
        ("APPLICATION/LD+JSON", formats.JSON_LD),
        ("application/json", None),
        ("image/png", None),
        ("text/html;q=0", None),
        ("garbage", None),
    ],
)
def test_accept_header_negotiation(accept: str | None, chosen: str | None) -> None:
    assert formats.negotiate(accept) == chosen


# --- representations --------------------------------------------------------------------

METADATA = {
    "doi": "10.99999/spanda.x.v2",
    "titles": [{"title": "Posts & replies {draft} </script><b>"}],
    "creators": [
        {
            "name": "Lovelace, Ada",
            "nameType": "Personal",
            "givenName": "Ada",
            "familyName": "Lovelace",
            "nameIdentifiers": [
                {
                    "nameIdentifier": "https://orcid.org/0000-0002-1825-0097",
                    "nameIdentifierScheme": "ORCID",
                }
            ],
        },
        {"name": "Example University", "nameType": "Organizational"},
    ],
    "publisher": {"name": "Example University"},
    "publicationYear": "2026",
    "dates": [{"date": "2026-11-30", "dateType": "Issued"}],
    "descriptions": [
        {"description": "What the rows are.\nTwo lines.", "descriptionType": "Abstract"}
    ],
    "subjects": [{"subject": "learning analytics"}, {"subject": "50% off_"}],
    "rightsList": [
        {
            "rights": "CC BY 4.0",
            "rightsIdentifier": "CC-BY-4.0",
            "rightsIdentifierScheme": "SPDX",
            "rightsUri": "https://creativecommons.org/licenses/by/4.0/legalcode",
        },
        {"rights": "DUA 1.0", "rightsUri": "https://example.org/dua"},
    ],
    "version": "2",
    "language": "en",
}
LANDING = formats.Landing(
    dataset_id="x",
    doi="10.99999/spanda.x.v2",
    url="http://127.0.0.1:8000/datasets/x/versions/2",
    metadata=METADATA,
    distributions=(
        {
            "file_name": "x-v2.parquet",
            "media_type": "application/vnd.apache.parquet",
            "size": 10,
            "sha256": "ab" * 32,
            "rows": 3,
            "url": "http://127.0.0.1:8000/datasets/x/versions/2/data?format=parquet",
        },
    ),
    version=2,
    concept_doi="10.99999/spanda.x",
    concept_url="http://127.0.0.1:8000/datasets/x",
    linkset_url="http://127.0.0.1:8000/datasets/x/linkset",
)


def test_schema_org_has_what_crawlers_and_fuji_read() -> None:
    doc = formats.schema_org(LANDING, {"post_id": "pseudonym"})
    assert doc["@type"] == "Dataset"
    assert doc["identifier"] == "https://doi.org/10.99999/spanda.x.v2"
    assert doc["license"].startswith("https://creativecommons.org/")
    assert doc["creator"][0]["@id"] == "https://orcid.org/0000-0002-1825-0097"
    assert doc["creator"][1]["@type"] == "Organization"
    assert doc["version"] == "2"
    assert doc["isPartOf"]["@id"] == "https://doi.org/10.99999/spanda.x"
    (dist,) = doc["distribution"]
    assert dist["sha256"] == "ab" * 32 and dist["encodingFormat"].endswith("parquet")
    assert doc["variableMeasured"][0]["name"] == "post_id"


def test_json_ld_cannot_close_its_script_element() -> None:
    text = formats.json_ld_script(formats.schema_org(LANDING))
    assert "</script>" not in text and "<b>" not in text
    assert json.loads(text)["name"] == "Posts & replies {draft} </script><b>"


def test_citations() -> None:
    bib = formats.bibtex(LANDING)
    assert bib.startswith("@misc{spanda_x_v2,")
    assert r"Posts \& replies \{draft\}" in bib
    assert "author = {Lovelace, Ada and {Example University}}" in bib
    assert r"50\% off\_" not in bib  # keywords are not in the BibTeX entry
    assert "doi = {10.99999/spanda.x.v2}" in bib
    ris = formats.ris(LANDING)
    assert ris.startswith("TY  - DATA\r\n") and ris.endswith("ER  - \r\n")
    assert "AB  - What the rows are. Two lines.\r\n" in ris  # one line per tag
    assert "KW  - learning analytics\r\n" in ris
    csl = formats.csl_json(LANDING)
    assert csl["type"] == "dataset" and csl["issued"] == {"date-parts": [[2026]]}
    assert csl["author"][0] == {"family": "Lovelace", "given": "Ada"}
    assert csl["author"][1] == {"literal": "Example University"}
    text = formats.citation_text(LANDING)
    assert text == (
        "Lovelace, Ada; Example University (2026). Posts & replies {draft} </script><b> "
        "(Version 2) [Data set]. Example University. https://doi.org/10.99999/spanda.x.v2"
    )


def test_signposting_and_linkset() -> None:
    header = formats.link_header(formats.signposting(LANDING))
    assert '<https://doi.org/10.99999/spanda.x.v2>; rel="cite-as"' in header
    assert 'rel="describedby"; type="application/vnd.datacite.datacite+json"' in header
    assert 'rel="item"; type="application/vnd.apache.parquet"' in header
    assert '<https://creativecommons.org/licenses/by/4.0/legalcode>; rel="license"' in header
    assert '<https://schema.org/Dataset>; rel="type"' in header
    assert '<https://orcid.org/0000-0002-1825-0097>; rel="author"' in header
    assert 'rel="linkset"; type="application/linkset+json"' in header
    contexts = formats.linkset([LANDING])["linkset"]
    assert contexts[0]["anchor"] == LANDING.url
    assert contexts[0]["cite-as"] == [{"href": "https://doi.org/10.99999/spanda.x.v2"}]
    assert contexts[1]["anchor"].endswith("format=parquet")
    assert contexts[1]["collection"] == [{"href": LANDING.url, "type": "text/html"}]
    withdrawn = formats.Landing(**{**LANDING.__dict__, "withdrawn_reason": "erasure"})
    assert 'rel="item"' not in formats.link_header(formats.signposting(withdrawn))
    assert "distribution" not in formats.schema_org(withdrawn)


# --- the lean download reader --------------------------------------------------------------


def _rows(table: Any, snapshot_id: int, columns: list[str], row_filter: Any = None) -> list[Any]:
    batches = snapshot_batches(table, snapshot_id, columns, row_filter)
    return sorted(
        r for b in batches for r in zip(*(b.column(c).to_pylist() for c in columns), strict=True)
    )


def test_the_lean_reader_reads_what_pyiceberg_reads_or_steps_aside(catalog: Any) -> None:
    catalog.create_namespace("gold")
    arrow = pa.schema([("k", pa.int64()), ("course", pa.string()), ("year", pa.int32())])
    table = catalog.create_table(("gold", "t"), schema=arrow)
    for start in (0, 50_000):
        n = 50_000
        table.append(
            pa.table(
                {
                    "k": pa.array(range(start, start + n), pa.int64()),
                    "course": [f"c{i % 7}" for i in range(n)],
                    "year": pa.array([2020 + i % 5 for i in range(n)], pa.int32()),
                },
                schema=arrow,
            )
        )
    snap = table.current_snapshot().snapshot_id
    expression = parse_filter(
        "course = 'c3' and year >= 2022", {"course": StringType(), "year": IntegerType()}
    ).expression
    lean = downloads._lean_batches(table, snap, ["k", "year"], expression)
    assert lean is not None
    got = sorted(
        r
        for b in lean
        for r in zip(b.column("k").to_pylist(), b.column("year").to_pylist(), strict=True)
    )
    assert got == _rows(table, snap, ["k", "year"], expression) and len(got) > 1_000
    streamed = pq.read_table(io.BytesIO(b"".join(downloads.stream(table, snap, ["k"], "parquet"))))
    assert sorted(streamed.column("k").to_pylist()) == list(range(100_000))
    assert streamed.schema.names == ["k"]

    # a renamed and an added column, then new rows: the old files hold the column under
    # its old name and lack the new one; pyiceberg maps them by field id and fills nulls
    with table.update_schema() as update:
        update.rename_column("course", "course_id")
        update.add_column("grade", IntegerType())
    new = pa.schema(
        [("k", pa.int64()), ("course_id", pa.string()), ("year", pa.int32()), ("grade", pa.int32())]
    )
    table.append(
        pa.table({"k": [100_000], "course_id": ["c9"], "year": [2026], "grade": [88]}, schema=new)
    )
    head = table.current_snapshot().snapshot_id
    both = ["k", "course_id", "grade"]
    lean_rows = downloads._lean_batches(table, head, both, None)
    assert lean_rows is not None  # columns found by field id, the added one null
    got = sorted((r["k"], r["course_id"], r["grade"]) for b in lean_rows for r in b.to_pylist())
    assert got == sorted(_rows(table, head, both))
    body = b"".join(downloads.stream(table, head, both, "csv"))
    read = pacsv.read_csv(io.BytesIO(body))
    assert read.column_names == both and read.num_rows == 100_001
    assert set(read.column("course_id").to_pylist()) == {f"c{i}" for i in range(7)} | {"c9"}
    assert read.column("grade").null_count == 100_000
    # a version made before the rename filters on the column's old name
    old = parse_filter("course = 'c3'", {"course": StringType()}).expression
    before = b"".join(downloads.stream(table, snap, ["k", "course"], "csv", old))
    assert set(pacsv.read_csv(io.BytesIO(before)).column("course").to_pylist()) == {"c3"}
    # an empty result keeps the requested column order
    none = parse_filter("k < -1", {"k": LongType()}).expression
    empty = pq.read_table(
        io.BytesIO(b"".join(downloads.stream(table, head, ["grade", "k"], "parquet", none)))
    )
    assert empty.column_names == ["grade", "k"] and empty.num_rows == 0
    # the version made before the change still reads with its own schema, lean
    assert downloads._lean_batches(table, snap, ["course"], None) is not None


def test_the_json_ld_check_finds_a_broken_page() -> None:
    files = {"x-v2.parquet": "ab" * 32}
    good = (
        '<html><head><script type="application/ld+json">'
        + formats.json_ld_script(formats.schema_org(LANDING))
        + "</script></head></html>"
    )
    assert _jsonld_problems(good, LANDING.doi, files) == []
    assert _jsonld_problems(good, "10.99999/other", files) == [
        "identifier 'https://doi.org/10.99999/spanda.x.v2' is not the DOI 10.99999/other"
    ]
    assert "distribution lists" in _jsonld_problems(good, LANDING.doi, {"x": "y"})[0]
    broken = good.replace('"@type": "Dataset",', '"@type": "Dataset"')
    assert "does not parse" in _jsonld_problems(broken, LANDING.doi, files)[0]
    assert _jsonld_problems("<html></html>", LANDING.doi, files) == [
        "0 schema.org Dataset documents on the page, not 1"
    ]


def test_gold_columns_carry_their_published_descriptions(catalog: Any) -> None:
    """The Dagster UI's column table of a published gold table shows what each column
    holds, from config/datasets.yaml; an Iceberg field's own doc comes first."""

    catalog.create_namespace("gold")
    arrow = pa.schema(
        [("post_id", pa.string()), ("body_length", pa.int32()), ("extra", pa.int32())]
    )
    table = catalog.create_table(("gold", "validated_posts"), schema=arrow)
    with table.update_schema() as update:
        update.update_column("extra", doc="a column documented in Iceberg itself")
    declared = dataset_by_id(load_datasets(), "validated_posts").columns
    described = {c.name: c.description for c in column_schema(table).columns}
    assert described == {
        "post_id": declared["post_id"],
        "body_length": declared["body_length"],
        "extra": "a column documented in Iceberg itself",
    }
