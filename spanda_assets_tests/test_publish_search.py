"""The catalog's search index (lib/publish/search.py): ranking, facets, snippets, hostile
query text, idempotent upserts, latest-version-only, tombstones. SQLite files under
tmp_path; no server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spanda_assets.lib.publish.search import (
    FACETS,
    ColumnDoc,
    IndexRecord,
    SearchIndex,
    SearchIndexError,
    compile_query,
    default_path,
    to_match_expression,
)

T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)

FILLER_WORDS = [
    *("weather", "river", "mountain", "harbour", "bakery", "violin", "lantern", "meadow"),
    *("orchard", "pebble", "compass", "saddle", "kettle", "ribbon", "tunnel", "marble"),
    *("feather", "canyon", "walnut", "lagoon"),
]


def record(
    n: int,
    title: str,
    description: str = "A de-identified dataset.",
    *,
    dataset: str | None = None,
    version: int = 1,
    subjects: tuple[str, ...] = ("Education",),
    licence: tuple[str, str | None] = ("Creative Commons Attribution 4.0", "CC-BY-4.0"),
    grades: tuple[str, ...] = ("9",),
    year: int = 2024,
    columns: tuple[ColumnDoc, ...] = (ColumnDoc("post_id", "Identifier of the post"),),
    creators: tuple[str, ...] = ("Okafor, Ana",),
) -> IndexRecord:
    rights: dict[str, Any] = {"rights": licence[0]}
    if licence[1]:
        rights["rightsIdentifier"] = licence[1]
    dataset = dataset or f"dataset_{n}"
    return IndexRecord(
        datacite={
            "doi": f"10.5555/spanda.{dataset}.v{version}",
            "titles": [{"title": title}],
            "creators": [
                {"name": c, "affiliation": [{"name": "Spanda University"}]} for c in creators
            ],
            "publisher": {"name": "Spanda Demo Institution"},
            "publicationYear": year,
            "types": {"resourceTypeGeneral": "Dataset"},
            "subjects": [{"subject": s} for s in subjects],
            "descriptions": [{"description": description, "descriptionType": "Abstract"}],
            "rightsList": [rights],
            "version": str(version),
        },
        dataset_id=dataset,
        version=version,
        published_at=dt.datetime(year, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=n),
        columns=columns,
        grade_levels=grades,
        concept_doi=f"10.5555/spanda.{dataset}",
    )


def filler(count: int, start: int = 1000) -> list[IndexRecord]:
    """Records about nothing the tests search for: BM25 needs a corpus in which the
    searched words are rare, as they are in a real catalog."""
    out = []
    for i in range(count):
        a, b = FILLER_WORDS[i % 20], FILLER_WORDS[(i * 7 + 3) % 20]
        out.append(
            record(start + i, f"{a.title()} {b} records {i}", f"Notes on the {a} and the {b}.")
        )
    return out


@pytest.fixture
def index(tmp_path: Path) -> Iterator[SearchIndex]:
    clock = iter(T0 + dt.timedelta(minutes=i) for i in range(10_000))
    idx = SearchIndex(tmp_path / "search.sqlite", clock=lambda: next(clock))
    yield idx
    idx.close()


def dois(results: Any) -> list[str]:
    return [h.doi for h in results.hits]


# --------------------------------------------------------------------------- ranking


def test_a_title_hit_outranks_description_hits(index: SearchIndex) -> None:
    index.upsert_many(
        [
            *filler(30),
            record(1, "Forum posts of a statistics course", "Posts, de-identified."),
            record(
                2,
                "Quiz results",
                "Statistics quiz results; statistics homework; statistics exam scores.",
            ),
            record(3, "Attendance", "Weekly attendance with a statistics appendix."),
        ]
    )
    results = index.search("statistics")
    assert dois(results)[0] == "10.5555/spanda.dataset_1.v1"
    assert set(dois(results)) == {f"10.5555/spanda.dataset_{n}.v1" for n in (1, 2, 3)}
    assert results.total == 3
    scores = [h.score for h in results.hits]
    assert all(s is not None and s > 0 for s in scores)


def test_bm25_orders_hits_within_the_description_tier(index: SearchIndex) -> None:
    """Among versions matching in the same field, the one where the word is more
    prominent (more often, shorter text) ranks first."""
    index.upsert_many(
        [
            *filler(30),
            record(1, "Quiz results", "Rubric rubric rubric scores."),
            record(
                2,
                "Exam results",
                "Scores, attempts and one rubric among many other words "
                "describing the collection, its sampling and its limits in detail.",
            ),
        ]
    )
    assert dois(index.search("rubric"))[:2] == [
        "10.5555/spanda.dataset_1.v1",
        "10.5555/spanda.dataset_2.v1",
    ]


def test_paging_walks_both_tiers_without_gaps_or_repeats(index: SearchIndex) -> None:
    records = [*filler(20)]
    records += [record(i, f"Forum study {i}", "About posts.") for i in range(1, 6)]
    records += [record(i, f"Posts {i}", "Collected from the forum.") for i in range(6, 14)]
    index.upsert_many(records)
    everything = dois(index.search("forum", limit=50))
    assert len(everything) == 13
    assert all(".dataset_" in d for d in everything)
    # The five title hits come first.
    assert {int(d.split("_")[1].split(".")[0]) for d in everything[:5]} == {1, 2, 3, 4, 5}
    for size in (1, 2, 3, 4, 7):
        pages: list[str] = []
        for offset in range(0, 13, size):
            page = index.search("forum", limit=size, offset=offset, facet_counts=False)
            assert page.total == 13
            pages += dois(page)
        assert pages == everything, size
    assert index.search("forum", limit=5, offset=13).hits == ()


def test_stemming_and_diacritics(index: SearchIndex) -> None:
    index.upsert_many([*filler(10), record(1, "Élève enrollments", "Students enrolled per term.")])
    assert index.search("eleve").total == 1
    assert index.search("student").total == 1
    assert index.search("enrolling").total == 1


# --------------------------------------------------------------------------- facets


def faceted_corpus() -> list[IndexRecord]:
    cc0 = ("Creative Commons Zero v1.0 Universal", "CC0-1.0")
    dua = ("Spanda Restricted Data Use Agreement", None)
    return [
        record(1, "Forum posts, algebra", subjects=("Mathematics", "Algebra"), grades=("8", "9")),
        record(2, "Forum posts, biology", subjects=("Biology",), grades=("10",), licence=cc0),
        record(3, "Forum posts, geometry", subjects=("Mathematics",), grades=("9",), year=2023),
        record(4, "Quiz scores, algebra", subjects=("Mathematics",), grades=("9",), licence=dua),
        record(5, "Attendance", subjects=("Attendance",), grades=("K",), year=2022),
    ]


def counts(results: Any, facet: str) -> dict[str, int]:
    return {c.value: c.count for c in results.facets[facet]}


def test_facet_counts_are_over_the_matches(index: SearchIndex) -> None:
    index.upsert_many(faceted_corpus())
    results = index.search("forum")
    assert results.total == 3
    assert set(results.facets) == set(FACETS)
    assert counts(results, "subject") == {"Mathematics": 2, "Algebra": 1, "Biology": 1}
    assert counts(results, "licence") == {"CC-BY-4.0": 2, "CC0-1.0": 1}
    assert counts(results, "grade_level") == {"9": 2, "8": 1, "10": 1}
    assert counts(results, "year") == {"2024": 2, "2023": 1}
    # Most frequent first.
    assert results.facets["subject"][0].value == "Mathematics"

    everything = index.search("")
    assert everything.total == 5
    assert counts(everything, "subject")["Mathematics"] == 3
    assert counts(everything, "licence") == {
        "CC-BY-4.0": 3,
        "CC0-1.0": 1,
        "Spanda Restricted Data Use Agreement": 1,
    }


def test_facet_filters_or_within_and_across(index: SearchIndex) -> None:
    index.upsert_many(faceted_corpus())
    maths = index.search("", {"subject": ["mathematics"]})  # case-insensitive
    assert maths.total == 3
    assert counts(maths, "grade_level") == {"9": 3, "8": 1}
    either = index.search("", {"subject": ["Biology", "Attendance"]})
    assert either.total == 2
    both = index.search("forum", {"subject": ["Mathematics"], "year": ["2024"]})
    assert dois(both) == ["10.5555/spanda.dataset_1.v1"]
    assert both.filters == {"subject": ("Mathematics",), "year": ("2024",)}
    assert index.search("", {"subject": ["Chemistry"]}).total == 0
    index.upsert(record(9, "Élèves", subjects=("Éducation précoce",)))
    accented = index.search("", {"subject": ["éducation PRÉCOCE"]})
    assert dois(accented) == ["10.5555/spanda.dataset_9.v1"]
    assert counts(accented, "subject") == {"Éducation précoce": 1}
    assert index.search("", {"grade_level": []}).total == 6  # an empty filter filters nothing
    with pytest.raises(SearchIndexError, match="unknown facet"):
        index.search("", {"colour": ["red"]})


def test_facet_counts_follow_writes_from_another_connection(
    index: SearchIndex, tmp_path: Path
) -> None:
    index.upsert_many(faceted_corpus())
    assert counts(index.search(""), "subject")["Biology"] == 1
    with SearchIndex(tmp_path / "search.sqlite") as writer:
        writer.upsert(record(6, "Cells", subjects=("Biology",)))
        writer.delete("10.5555/spanda.dataset_2.v1")
    after = index.search("")
    assert after.total == 5
    assert counts(after, "subject")["Biology"] == 1
    assert "10.5555/spanda.dataset_6.v1" in dois(after)


# --------------------------------------------------------------------------- snippets


def test_snippets_mark_the_words_found(index: SearchIndex) -> None:
    long = (
        "This collection gathers the messages students wrote over three semesters. "
        "Posts from the course forum were de-identified; <b>names</b> & e-mails removed. "
        "Each row is one post with its thread and the week it was written in."
    )
    index.upsert_many([*filler(10), record(1, "Forum messages", long)])
    hit = index.search("forum").hits[0]
    fields = {s.field: s for s in hit.snippets}
    assert set(fields) == {"title", "description"}
    title = fields["title"]
    assert title.text == "Forum messages"
    assert [title.text[a:b] for a, b in title.highlights] == ["Forum"]
    description = fields["description"]
    assert [description.text[a:b] for a, b in description.highlights] == ["forum"]
    assert "\x02" not in description.text and "\x03" not in description.text
    marked = description.marked(escape=html.escape)
    assert "<mark>forum</mark>" in marked
    assert "<b>" not in marked and "&lt;b&gt;" in marked
    # A stemmed match is highlighted as written.
    plural = index.search("message").hits[0]
    spans = {s.field: [s.text[a:b] for a, b in s.highlights] for s in plural.snippets}
    assert spans["title"] == ["messages"]
    assert spans["description"] == ["messages"]


def test_column_documentation_is_searched_and_snippeted(index: SearchIndex) -> None:
    columns = (
        ColumnDoc("final_grade", "Final course grade on a 0-100 scale"),
        ColumnDoc("minutes_active", "Minutes of activity in the platform"),
    )
    index.upsert_many([*filler(10), record(1, "Outcomes", columns=columns)])
    hit = index.search("final_grade").hits[0]
    assert hit.snippets[0].field == "columns"
    assert index.search("column:minutes").total == 1
    assert index.search("title:minutes").total == 0


# --------------------------------------------------------------------------- query text


HOSTILE = [
    "math AND",
    '"unbalanced',
    'unbalanced"',
    '"',
    '""',
    "NEAR(forum posts)",
    "NEAR",
    "*",
    "* OR *",
    "-",
    "--",
    "-forum",
    "title:",
    "title:*",
    "col:*",
    "{title}: forum",
    "(",
    ")",
    "^forum",
    "forum OR",
    "OR forum",
    "NOT forum",
    "' OR 1=1 --",
    "'; DROP TABLE records; --",
    "\x00\x01\x02",
    "rowid:1",
    "records_fts:forum",
    "a*",
    "_",
    "…",
    "🙂",
    "x" * 5_000,
    "forum " * 500,
]


def test_hostile_queries_never_raise_and_never_match_everything(index: SearchIndex) -> None:
    index.upsert_many([*filler(20), record(1, "Forum posts", "Posts from the course forum.")])
    total = index.count()
    for text in HOSTILE:
        results = index.search(text)
        assert results.total < total, text
        json.loads(results.to_json())
    assert index.count() == total  # nothing was dropped
    for text in ("*", "-", '""', "title:", "(", "* OR *", "-forum", "\x00", "_", "NOT"):
        assert index.search(text).total == 0, text
    # Operators are words, not operators: "forum OR" still means "forum".
    assert index.search("forum OR").total == 1
    assert index.search("NOT forum").total == 1
    assert index.search("NEAR(forum posts)").total == 1


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=60))
def test_any_text_compiles_to_a_valid_expression(index: SearchIndex, text: str) -> None:
    index.search(text, limit=1)  # FTS5 would raise on a syntax error


def test_compiled_expressions_quote_every_word() -> None:
    assert to_match_expression("math AND") == '"math"'
    assert to_match_expression('"learning analytics" forum') == '"learning analytics" AND "forum"'
    assert to_match_expression("grade-level") == '"grade level"'
    assert to_match_expression("final_grade") == '"final grade"'
    assert to_match_expression("alg*") == '"alg"*'
    assert to_match_expression("al*") == '"al"'
    assert to_match_expression("title:algebra") == 'title : "algebra"'
    assert to_match_expression("colour:red") == '"colour red"'
    assert to_match_expression("algebra -geometry") == '("algebra") NOT ("geometry")'
    assert to_match_expression("the algebra of sets") == '"algebra" AND "sets"'
    assert to_match_expression("the") == '"the"'
    assert to_match_expression('say "hi') == '"say" AND "hi"'
    assert to_match_expression("-only") is None
    assert to_match_expression("   ") is None
    compiled = compile_query("subject:maths description:algebra")
    assert compiled is not None
    assert compiled.head == '{title subjects} : ("maths")'


def test_blank_query_lists_everything_newest_first(index: SearchIndex) -> None:
    index.upsert_many([record(i, f"Set {i}") for i in range(1, 6)])
    results = index.search("   ")
    assert results.total == 5
    assert dois(results) == [f"10.5555/spanda.dataset_{i}.v1" for i in (5, 4, 3, 2, 1)]
    assert all(h.score is None and h.snippets == () for h in results.hits)
    page = index.search("", limit=2, offset=2)
    assert (page.total, dois(page)) == (5, dois(results)[2:4])
    assert index.search("", limit=2, offset=5).hits == ()


def test_limits_are_checked(index: SearchIndex) -> None:
    with pytest.raises(SearchIndexError):
        index.search("x", limit=0)
    with pytest.raises(SearchIndexError):
        index.search("x", limit=10_000)
    with pytest.raises(SearchIndexError):
        index.search("x", offset=-1)


# --------------------------------------------------------------------------- writes


def test_upsert_is_idempotent(index: SearchIndex, tmp_path: Path) -> None:
    first = record(1, "Forum posts", "Posts from the forum.")
    assert index.upsert(first) is True
    before = index.get("10.5555/spanda.dataset_1.v1")
    snapshot = index.search("forum").to_json()
    assert index.upsert(first) is False
    assert index.upsert_many([first, first]) == 0
    # Other spellings of the same DOI are the same record.
    spelled = {**first.datacite, "doi": "https://doi.org/10.5555/SPANDA.dataset_1.v1"}
    same = dataclasses.replace(first, datacite=spelled)
    assert index.upsert(same) is True  # the DOI's spelling is part of what is shown
    assert index.count() == 1
    assert index.upsert(same) is False
    after = index.get("doi:10.5555/spanda.DATASET_1.v1")
    assert before is not None and after is not None
    assert after.seq == before.seq + 1
    assert index.search("forum").total == 1
    assert json.loads(snapshot)["total"] == 1
    # A real change is a new change number and a new datestamp.
    changed = record(1, "Forum posts, corrected", "Posts from the forum.")
    assert index.upsert(changed) is True
    latest = index.get("10.5555/spanda.dataset_1.v1")
    assert latest is not None and latest.seq == after.seq + 1
    assert latest.datestamp > after.datestamp
    assert index.search("corrected").total == 1
    # The full-text indexes hold the new text only.
    con = sqlite3.connect(tmp_path / "search.sqlite")
    assert (
        con.execute("SELECT count(*) FROM records_fts WHERE records_fts MATCH 'posts'").fetchone()[
            0
        ]
        == 1
    )
    assert (
        con.execute(
            "INSERT INTO records_fts (records_fts, rank) VALUES ('integrity-check', 1)"
        ).fetchall()
        == []
    )
    assert (
        con.execute(
            "INSERT INTO latest_fts (latest_fts, rank) VALUES ('integrity-check', 1)"
        ).fetchall()
        == []
    )
    con.close()


def test_reindexing_everything_changes_nothing(index: SearchIndex) -> None:
    corpus = faceted_corpus()
    assert index.upsert_many(corpus) == 5
    head = [index.get(r.datacite["doi"]) for r in corpus]
    results = index.search("forum").to_json()
    assert index.upsert_many(corpus) == 0
    assert [index.get(r.datacite["doi"]) for r in corpus] == head
    assert index.search("forum").to_json() == results


def test_bad_records_are_refused_before_anything_is_written(index: SearchIndex) -> None:
    good = record(1, "Fine")
    bad = dataclasses.replace(good, datacite={**good.datacite, "doi": "not-a-doi"})
    with pytest.raises(SearchIndexError, match="DOI"):
        index.upsert_many([good, bad])
    assert index.count() == 0
    with pytest.raises(SearchIndexError, match="ISO 8601"):
        index.upsert(dataclasses.replace(good, published_at="yesterday"))
    with pytest.raises(SearchIndexError, match="not valid Unicode"):
        index.upsert(
            dataclasses.replace(good, datacite={**good.datacite, "titles": [{"title": "\ud800"}]})
        )
    index.upsert(good)
    clash = record(1, "Same version, other DOI")
    clash = dataclasses.replace(clash, datacite={**clash.datacite, "doi": "10.5555/other"})
    with pytest.raises(SearchIndexError, match="already indexed"):
        index.upsert(clash)


def test_latest_version_only_by_default(index: SearchIndex) -> None:
    versions = [
        record(v, f"Forum posts release {v}", dataset="forum", version=v, year=2020 + v)
        for v in (1, 2, 3)
    ]
    index.upsert_many([*filler(10), versions[2], versions[0], versions[1]])  # any order
    latest = index.search("forum")
    assert dois(latest) == ["10.5555/spanda.forum.v3"]
    assert latest.hits[0].latest is True
    assert counts(latest, "year") == {"2023": 1}
    every = index.search("forum", latest_only=False)
    assert sorted(dois(every)) == [f"10.5555/spanda.forum.v{v}" for v in (1, 2, 3)]
    assert counts(every, "year") == {"2021": 1, "2022": 1, "2023": 1}
    assert index.search("", latest_only=True).total == 11
    assert index.search("", latest_only=False).total == 13
    assert index.count(latest_only=True) == 11
    # Withdrawing the latest version makes the previous one the latest.
    assert index.delete("10.5555/spanda.forum.v3") is True
    assert dois(index.search("forum")) == ["10.5555/spanda.forum.v2"]
    assert index.delete("10.5555/spanda.forum.v3") is False


def test_delete_leaves_a_tombstone_for_harvesters(index: SearchIndex) -> None:
    index.upsert_many([record(1, "Forum posts"), record(2, "Quiz scores")])
    assert index.delete("https://doi.org/10.5555/spanda.dataset_1.v1")
    assert index.search("forum").total == 0
    assert index.search("").total == 1
    tombstone = index.get("10.5555/spanda.dataset_1.v1")
    assert tombstone is not None and tombstone.deleted and tombstone.datacite == {}
    harvested = index.harvest()
    assert [r.doi for r in harvested] == [
        "10.5555/spanda.dataset_2.v1",
        "10.5555/spanda.dataset_1.v1",
    ]
    assert harvested[-1].deleted
    # Publishing it again revives it.
    assert index.upsert(record(1, "Forum posts"))
    assert index.search("forum").total == 1


def test_harvest_windows_and_order(index: SearchIndex) -> None:
    for i in range(1, 6):
        index.upsert(record(i, f"Set {i}"))  # one minute apart (the fixture's clock)
    stamps = [r.datestamp for r in index.harvest()]
    assert stamps == sorted(stamps) and len(set(stamps)) == 5
    window = index.harvest(from_=stamps[1], until=stamps[3])
    assert [r.datestamp for r in window] == stamps[1:4]
    assert index.harvest_count(from_=stamps[1], until=stamps[3]) == 3
    first_two = index.harvest(limit=2)
    rest = index.harvest(after_seq=first_two[-1].seq)
    assert len(first_two) + len(rest) == 5
    assert index.earliest_datestamp() == stamps[0]


# --------------------------------------------------------------------------- output


def test_results_serialize_the_same_for_every_caller(index: SearchIndex) -> None:
    index.upsert_many([*filler(5), *faceted_corpus()])
    results = index.search("forum", {"subject": ["Mathematics"]})
    data = results.to_dict()
    assert json.loads(results.to_json()) == data
    assert list(data) == [
        "query",
        "filters",
        "latest_only",
        "total",
        "limit",
        "offset",
        "hits",
        "facets",
    ]
    hit = data["hits"][0]
    assert set(hit) >= {"doi", "title", "score", "snippets", "licences", "grade_levels", "latest"}
    assert isinstance(hit["snippets"][0]["highlights"][0], list)
    assert data["facets"]["subject"][0] == {"value": "Mathematics", "count": 2}


def test_default_path_is_under_spanda_home(spanda_home: Path) -> None:
    assert default_path() == spanda_home / "search.sqlite"
    with SearchIndex.open_default() as idx:
        assert idx.count() == 0
    assert (spanda_home / "search.sqlite").exists()


def test_records_from_plain_json(index: SearchIndex) -> None:
    data = {
        "datacite": record(1, "Forum posts").datacite,
        "dataset_id": "dataset_1",
        "version": "1",
        "published_at": "2024-05-01T10:00:00+02:00",
        "columns": {"post_id": "Identifier of the post", "body": None},
        "grade_levels": ["9", "10"],
        "concept_doi": "https://doi.org/10.5555/spanda.dataset_1",
    }
    parsed = IndexRecord.from_dict(data)
    assert parsed.columns == (ColumnDoc("post_id", "Identifier of the post"), ColumnDoc("body"))
    assert parsed.version == 1
    index.upsert(parsed)
    stored = index.get("10.5555/spanda.dataset_1.v1")
    assert stored is not None
    assert stored.published_at == "2024-05-01T08:00:00Z"
    assert stored.concept_doi == "10.5555/spanda.dataset_1"
    listed = IndexRecord.from_dict({**data, "columns": [{"name": "score"}, "attempt_no"]})
    assert listed.columns == (ColumnDoc("score"), ColumnDoc("attempt_no"))
