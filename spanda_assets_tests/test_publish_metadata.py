"""FAIR publication, the metadata half: the datasets YAML (validation and its messages)
and the DataCite 4.5 records built from it (schema validation, XML, REST payload)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.labeling.labeled import LABELED_SCHEMA
from spanda_assets.lib.model.predict import PREDICTIONS_SCHEMA
from spanda_assets.lib.publish.datacite import (
    MANDATORY,
    ConceptFacts,
    Distribution,
    MetadataError,
    SourceSnapshot,
    VersionFacts,
    build_concept_metadata,
    build_version_metadata,
    iceberg_urn,
    metadata_problems,
    to_rest_payload,
    to_xml,
    validate_metadata,
)
from spanda_assets.lib.publish.datasets import (
    DatasetDeclaration,
    column_problems,
    dataset_by_id,
    load_datasets,
    parse_datasets,
)
from spanda_assets.lib.validation.gold import SPECS
from spanda_assets.schemas.pandera_models import MODELS

KERNEL = "{http://datacite.org/schema/kernel-4}"
CONCEPT = "10.12345/spanda.validated_posts"
V1, V2, V3 = (f"{CONCEPT}.v{n}" for n in (1, 2, 3))
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

DATASET = """\
publisher:
  name: Example University
  ror: https://ror.org/03yrm5c26
datasets:
  - id: posts
    title: Forum posts
    description: De-identified forum posts.
    creators:
      - name: Carberry, Josiah
        orcid: 0000-0002-1825-0097
        affiliation: Example University
      - Example University Data Office
    subjects:
      - subject: "FOS: Educational sciences"
        scheme: Fields of Science and Technology (FOS)
        scheme_uri: http://www.oecd.org/science/inno/38235147.pdf
      - learning analytics
    licence: {id: CC-BY-4.0, url: https://creativecommons.org/licenses/by/4.0/legalcode}
    dua: {id: dua-1.0, title: Data use agreement 1.0, url: https://example.org/dua/1.0}
    table: gold.validated_posts
    grade_levels: ["09", 10]
    keywords: [forum posts]
    columns:
      post_id: pseudonym of the post
      body: de-identified text
"""


def _posts() -> DatasetDeclaration:
    (dataset,) = parse_datasets(DATASET)
    return dataset


def _facts(**changes: Any) -> VersionFacts:
    facts = VersionFacts(
        version=2,
        doi=V2,
        concept_doi=CONCEPT,
        table="gold.validated_posts",
        snapshot_id=7_344_120_981_233_004_512,
        published=dt.date(2025, 3, 4),
        row_count=1200,
        byte_size=48_000,
        formats=("application/vnd.apache.parquet",),
        distributions=(
            Distribution("posts.parquet", "application/vnd.apache.parquet", SHA, 40_000),
            Distribution("posts.csv", "text/csv", SHA.replace("9", "8"), 52_000),
        ),
        previous_doi=V1,
        next_doi=V3,
        sources=(
            SourceSnapshot("silver.forum_posts", 42),
            SourceSnapshot("gold.validated_courses", doi="10.12345/spanda.courses.v1"),
        ),
        url="https://data.example.org/datasets/posts/2",
    )
    return dataclasses.replace(facts, **changes)


def _relations(record: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (r["relationType"], r["relatedIdentifierType"], r["relatedIdentifier"])
        for r in record.get("relatedIdentifiers", [])
    }


# --- the datasets YAML ---------------------------------------------------------------


def test_packaged_datasets_declare_the_demo_gold_tables_with_their_real_columns() -> None:
    """The packaged file parses, publishes only gold, and describes exactly the columns
    each table has (a new column without a description would make this fail)."""
    datasets = {d.id: d for d in load_datasets()}
    assert {d.table for d in datasets.values()} == {
        "gold.validated_posts",
        "gold.validated_enrollments",
        "gold.validated_assessments",
        "gold.labeled_posts",
        "gold.post_predictions",
    }
    posts = SPECS["validated_posts"]
    real = {
        "validated_posts": [*posts.columns, *(name for name, _, _ in posts.derived)],
        "validated_enrollments": list(MODELS["validated_enrollments"].to_schema().columns),
        "validated_assessments": list(MODELS["validated_assessments"].to_schema().columns),
        "labeled_posts": LABELED_SCHEMA.names,
        "post_predictions": PREDICTIONS_SCHEMA.names,
    }
    for dataset_id, columns in real.items():
        dataset = datasets[dataset_id]
        assert dataset.namespace == "gold"
        assert column_problems(dataset, columns) == []
        # every packaged record is valid DataCite, not only the one the tests build
        facts = _facts(table=dataset.table, doi=f"10.12345/x.{dataset_id}.v2")
        assert build_version_metadata(dataset, facts)["publisher"]["name"]


def test_declaration_is_parsed_and_normalised() -> None:
    posts = _posts()
    josiah, office = posts.creators
    assert josiah.orcid == "https://orcid.org/0000-0002-1825-0097"
    assert josiah.name_type == "Personal"  # an ORCID or "Family, Given" is a person
    assert office.name_type == "Organizational"
    assert posts.publisher.ror == "https://ror.org/03yrm5c26"
    assert posts.grade_levels == ("09", "10")  # YAML's number 10 is a grade name
    assert posts.language == "en"
    assert posts.identifier == ("gold", "validated_posts")
    assert [s.subject for s in posts.subjects] == [
        "FOS: Educational sciences",
        "learning analytics",
    ]


def test_every_missing_field_of_every_dataset_is_listed_in_one_error() -> None:
    text = """\
publisher: {name: Example University}
datasets:
  - id: posts
    title: Forum posts
    creators: [Example University]
    subjects: [education]
    table: gold.validated_posts
    columns: {post_id: pseudonym}
  - id: grades
    description: Final grades.
    creators: []
    licence: {id: CC0-1.0}
    dua: {id: dua-1.0, title: DUA, url: https://example.org/dua}
    table: gold.validated_enrollments
    columns: {enrollment_id: pseudonym}
"""
    with pytest.raises(ConfigError) as info:
        parse_datasets(text, origin="datasets.yaml")
    message = str(info.value)
    assert len(message.splitlines()) == 1 + 2 + 7, message  # the file, 2 datasets, 7 lines
    assert "datasets.yaml: 7 problem(s)" in message
    posts, grades = message.split("dataset 'grades'")
    assert "dataset 'posts' (datasets[0], line 3)" in posts
    for field in ("description", "licence", "dua"):
        assert f"'{field}' is required" in posts
    assert "'licence' is required: the licence, e.g. {id: CC-BY-4.0" in posts
    for field in ("title", "subjects", "licence.url"):
        assert f"'{field}' is required" in grades
    assert "'creators' must not be empty" in grades
    # each line says where, and what to write
    assert re.search(
        r"line 12, column 5: 'licence.url' is required: the URL of the licence", grades
    )


@pytest.mark.parametrize("table", ["bronze.forum_posts", "submissions.oneroster_users"])
def test_a_table_outside_silver_and_gold_is_refused(table: str) -> None:
    text = DATASET.replace("table: gold.validated_posts", f"table: {table}")
    with pytest.raises(ConfigError) as info:
        parse_datasets(text)
    message = str(info.value)
    namespace = table.split(".", maxsplit=1)[0]
    assert f"table '{table}' is in namespace '{namespace}'" in message
    assert "only silver and gold tables can be published" in message
    assert "dataset 'posts'" in message


def test_silver_tables_can_be_published() -> None:
    (dataset,) = parse_datasets(DATASET.replace("gold.validated_posts", "silver.forum_posts"))
    assert dataset.namespace == "silver"


def test_duplicate_ids_are_refused() -> None:
    entry = DATASET.split("datasets:\n", 1)[1]
    with pytest.raises(ConfigError) as info:
        parse_datasets(DATASET + entry)
    assert "id 'posts' is already used by datasets[0] (line 5)" in str(info.value)
    assert "datasets[1]" in str(info.value)


def test_invalid_values_say_what_to_write() -> None:
    text = (
        DATASET.replace("licence:", "license:")
        .replace("0000-0002-1825-0097", "0000-0002-1825-0098")
        .replace("https://example.org/dua/1.0", "ftp://example.org/dua")
        .replace("id: posts", "id: Posts!")
    )
    with pytest.raises(ConfigError) as info:
        parse_datasets(text)
    message = str(info.value)
    assert "unknown key 'license'; did you mean 'licence'?" in message
    assert "'licence' is required" in message
    assert "'creators[0].orcid': '0000-0002-1825-0098' is not a valid ORCID iD" in message
    assert "'dua.url': 'ftp://example.org/dua' is not an http(s) URL" in message
    assert "'id' must be the dataset's name in DOIs and URLs" in message


def test_publisher_is_required_somewhere() -> None:
    with pytest.raises(ConfigError, match="'publisher' is required"):
        parse_datasets(
            DATASET.replace("publisher:\n  name: Example University\n", "").replace(
                "  ror: https://ror.org/03yrm5c26\n", ""
            )
        )


def test_datasets_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "datasets.yaml"
    path.write_text(DATASET)
    monkeypatch.setenv("SPANDA_DATASETS_FILE", str(path))
    (dataset,) = load_datasets()
    assert dataset.id == "posts"
    monkeypatch.setenv("SPANDA_DATASETS_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"SPANDA_DATASETS_FILE=.*missing\.yaml does not exist"):
        load_datasets()


def test_unknown_dataset_id_lists_the_declared_ones() -> None:
    with pytest.raises(ConfigError, match=r"no dataset 'nope' is declared \(declared: posts\)"):
        dataset_by_id([_posts()], "nope")


def test_column_problems_name_undescribed_and_stale_columns() -> None:
    problems = column_problems(_posts(), ["post_id", "subject_id"])
    assert len(problems) == 2
    assert "column 'subject_id' of gold.validated_posts has no description" in problems[0]
    assert "described column 'body' is not in gold.validated_posts" in problems[1]


# --- DataCite records ----------------------------------------------------------------


def test_version_record_has_every_mandatory_property_and_passes_the_schema() -> None:
    record = build_version_metadata(_posts(), _facts())
    for name in MANDATORY:
        if name != "resourceTypeGeneral":
            assert record.get(name), name
    assert record["types"]["resourceTypeGeneral"] == "Dataset"
    assert record["doi"] == V2
    assert record["publicationYear"] == "2025"
    assert record["publisher"] == {
        "name": "Example University",
        "publisherIdentifier": "https://ror.org/03yrm5c26",
        "publisherIdentifierScheme": "ROR",
        "schemeUri": "https://ror.org",
    }
    assert metadata_problems(record) == []

    josiah = record["creators"][0]
    assert (josiah["givenName"], josiah["familyName"]) == ("Josiah", "Carberry")
    assert josiah["nameIdentifiers"][0]["nameIdentifierScheme"] == "ORCID"
    assert record["version"] == "2"
    assert record["sizes"] == ["1200 rows", "48000 bytes"]
    assert record["formats"] == ["application/vnd.apache.parquet", "text/csv"]
    assert record["dates"] == [{"date": "2025-03-04", "dateType": "Issued"}]
    assert record["language"] == "en"
    assert {"subject": "grade level 10"} in record["subjects"]
    assert {"subject": "forum posts"} in record["subjects"]
    licence, dua = record["rightsList"]
    assert (licence["rightsIdentifier"], licence["rightsIdentifierScheme"]) == ("CC-BY-4.0", "SPDX")
    assert dua["rightsUri"] == "https://example.org/dua/1.0"
    kinds = [d["descriptionType"] for d in record["descriptions"]]
    assert kinds == ["Abstract", "TechnicalInfo", "TechnicalInfo", "Other"]
    technical = "\n".join(d["description"] for d in record["descriptions"])
    assert SHA in technical and "posts.csv" in technical  # every distribution's digest
    assert "- post_id: pseudonym of the post" in technical
    snapshot = iceberg_urn("gold.validated_posts", 7_344_120_981_233_004_512)
    assert record["alternateIdentifiers"] == [
        {"alternateIdentifier": snapshot, "alternateIdentifierType": "URN"}
    ]
    assert _relations(record) == {
        ("IsVersionOf", "DOI", CONCEPT),
        ("IsNewVersionOf", "DOI", V1),
        ("IsPreviousVersionOf", "DOI", V3),
        ("IsDerivedFrom", "URN", "urn:spanda:iceberg:silver.forum_posts:snapshot:42"),
        ("IsDerivedFrom", "DOI", "10.12345/spanda.courses.v1"),
    }
    assert record["url"] == "https://data.example.org/datasets/posts/2"


def test_first_version_has_no_neighbours() -> None:
    record = build_version_metadata(
        _posts(), _facts(version=1, doi=V1, previous_doi=None, next_doi=None, sources=())
    )
    assert _relations(record) == {("IsVersionOf", "DOI", CONCEPT)}


def test_concept_record_lists_every_version() -> None:
    concept = ConceptFacts(
        CONCEPT, (V1, V2), dt.date(2024, 11, 2), dt.date(2025, 3, 4), "https://example.org/p"
    )
    record = build_concept_metadata(_posts(), concept)
    assert record["doi"] == CONCEPT
    assert record["publicationYear"] == "2024"
    assert "version" not in record
    assert _relations(record) == {("HasVersion", "DOI", V1), ("HasVersion", "DOI", V2)}
    assert record["dates"] == [
        {"date": "2024-11-02", "dateType": "Issued"},
        {"date": "2025-03-04", "dateType": "Updated"},
    ]
    assert metadata_problems(record) == []


def test_a_broken_record_fails_with_every_violation_readable() -> None:
    record = build_version_metadata(_posts(), _facts())
    del record["creators"]
    record["types"] = {"resourceTypeGeneral": "Data"}
    record["publicationYear"] = "25"
    record["titles"] = [{"title": "Posts", "titleType": "Main"}]
    record["relatedIdentifiers"][0]["schemeUri"] = "https://example.org/scheme"
    with pytest.raises(MetadataError) as info:
        validate_metadata(record)
    message = str(info.value)
    assert message.startswith(f"DataCite 4.5 metadata for DOI {V2} is not valid (5 problem(s))")
    assert "creators: missing (Creator is mandatory in DataCite)" in message
    assert "types.resourceTypeGeneral: 'Data' is not one of Audiovisual" in message
    assert "publicationYear: '25' does not match ^[0-9]{4}$" in message
    assert "titles[0].titleType: 'Main' is not one of AlternativeTitle" in message
    assert "relatedIdentifiers[0].schemeUri: 'https://example.org/scheme' is not allowed" in message
    assert "Unevaluated" not in message  # the parent's echo of a child's error is dropped
    assert len(info.value.violations) == 5


def test_a_record_without_a_doi_is_refused() -> None:
    record = build_version_metadata(_posts(), _facts())
    del record["doi"]
    assert metadata_problems(record) == ["doi: missing (Identifier is mandatory in DataCite)"]


def test_inconsistent_facts_are_refused_before_the_schema() -> None:
    facts = _facts(
        table="gold.labeled_posts",
        doi=CONCEPT,
        previous_doi="doi:10.1/x",
        distributions=(Distribution("p.parquet", "application/vnd.apache.parquet", "abc"),),
    )
    with pytest.raises(MetadataError) as info:
        build_version_metadata(_posts(), facts)
    message = str(info.value)
    assert "dataset 'posts' version 2" in message
    assert "previous_doi: 'doi:10.1/x' is not a DOI" in message
    assert "a version's DOI must differ from the concept DOI" in message
    assert "the facts are of gold.labeled_posts, but dataset 'posts' publishes" in message
    assert "p.parquet: sha256 must be 64 lowercase hex digits" in message


def test_xml_round_trip() -> None:
    record = build_version_metadata(_posts(), _facts())
    xml = to_xml(record)
    assert xml.startswith("<?xml")
    root = etree.fromstring(xml.encode("utf-8"))
    assert root.tag == f"{KERNEL}resource"
    assert "kernel-4.5/metadata.xsd" in root.get(
        "{http://www.w3.org/2001/XMLSchema-instance}schemaLocation", ""
    )
    identifier = root.find(f"{KERNEL}identifier")
    assert identifier is not None
    assert (identifier.text, identifier.get("identifierType")) == (V2, "DOI")
    assert root.findtext(f"{KERNEL}publicationYear") == "2025"
    assert root.findtext(f"{KERNEL}titles/{KERNEL}title") == "Forum posts"
    assert root.findtext(f"{KERNEL}publisher") == "Example University"
    resource_type = root.find(f"{KERNEL}resourceType")
    assert resource_type is not None and resource_type.get("resourceTypeGeneral") == "Dataset"
    assert root.findtext(f"{KERNEL}version") == "2"
    assert [s.text for s in root.iterfind(f"{KERNEL}sizes/{KERNEL}size")] == record["sizes"]
    relations = {
        (r.get("relationType"), r.text)
        for r in root.iterfind(f"{KERNEL}relatedIdentifiers/{KERNEL}relatedIdentifier")
    }
    assert ("IsVersionOf", CONCEPT) in relations and ("IsNewVersionOf", V1) in relations
    creator = root.find(f"{KERNEL}creators/{KERNEL}creator/{KERNEL}nameIdentifier")
    assert creator is not None and creator.get("nameIdentifierScheme") == "ORCID"
    rights = root.find(f"{KERNEL}rightsList/{KERNEL}rights")
    assert rights is not None and rights.get("rightsIdentifier") == "CC-BY-4.0"


def test_invalid_record_is_not_serialised() -> None:
    record = build_version_metadata(_posts(), _facts())
    record["titles"] = []
    with pytest.raises(MetadataError, match=r"titles: needs at least 1 item"):
        to_xml(record)


def test_rest_payload_is_a_json_api_document() -> None:
    record = build_version_metadata(_posts(), _facts())
    payload = to_rest_payload(record, event="publish", url="https://example.org/landing")
    assert set(payload) == {"data"}
    data = payload["data"]
    assert (data["type"], data["id"]) == ("dois", V2)
    assert data["attributes"]["event"] == "publish"
    assert data["attributes"]["url"] == "https://example.org/landing"
    assert data["attributes"]["titles"] == record["titles"]
    assert "event" not in record  # the record itself is not changed
    draft = to_rest_payload(record)["data"]["attributes"]
    assert "event" not in draft  # no event: a draft
