"""Search latency of the FAIR catalog's index (SQLite FTS5) beside a naive LIKE scan.

    python benchmarks/search.py [--records 100000] [--queries 300] [--seed 7]

The same queries then go to the real server (`spanda serve`, `GET /search`) over HTTP.

Builds an index of `--records` synthetic published versions (DataCite metadata with
titles, abstracts, subjects, column documentation, grade levels, licences; one to
three versions per dataset) in a temporary directory, then times a few hundred varied
queries (common and rare words, two-word queries, phrases, prefixes, field filters,
pasted junk) through `SearchIndex.search` in three modes:

* plain: free text, facet counts computed (what the catalog's first page does);
* filtered: the same text with one or two facet filters (subject, grade, year);
* no counts: free text, facet counting switched off (a next page).

The baseline answers the same requests from the same SQLite file without the
full-text index: every word becomes `LIKE '%word%'` over the indexed text columns,
hits ordered by recency (it cannot rank), with the same count and facet counts (a SQL
GROUP BY over the matches' facet rows).
Target: p95 under 50 ms at 100,000 records for the index; the baseline is there to
show what the index buys. Each figure is one request's wall time, page of 20 hits
with snippets included.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from served import spanda_serve  # noqa: E402

from spanda_assets.lib.publish.search import (  # noqa: E402
    FACET_GRADE_LEVEL,
    FACET_SUBJECT,
    FACET_YEAR,
    INDEX_FILE,
    ColumnDoc,
    IndexRecord,
    SearchIndex,
)

# fmt: off
TOPICS = [
    "algebra", "geometry", "calculus", "statistics", "probability", "fractions", "reading",
    "literacy", "phonics", "vocabulary", "writing", "grammar", "biology", "chemistry", "physics",
    "astronomy", "ecology", "genetics", "history", "geography", "civics", "economics",
    "psychology", "music", "art", "drama", "coding", "robotics", "programming", "engineering",
    "spanish", "french", "mandarin", "latin", "nutrition", "health", "wellbeing", "attendance",
    "engagement", "dropout", "retention", "enrollment", "assessment", "feedback", "tutoring",
    "mentoring", "collaboration", "discussion", "forum", "video", "lecture", "quiz", "homework",
    "exam", "rubric", "portfolio",
]
CONTEXT = [
    "students", "learners", "teachers", "instructors", "courses", "classrooms", "schools",
    "districts", "campus", "online", "blended", "remote", "hybrid", "mooc", "cohort", "semester",
    "term", "weekly", "daily", "longitudinal", "survey", "pilot", "intervention", "outcomes",
    "performance", "achievement", "scores", "grades", "completion", "participation", "posts",
    "messages", "clicks", "sessions", "logs", "events", "submissions", "attempts", "responses",
    "ratings",
]
FILLER = [
    "the", "of", "and", "a", "to", "in", "for", "with", "on", "from", "by", "this", "that",
    "dataset", "data", "collected", "records", "include", "each", "per", "all", "were", "are",
    "is", "as", "at", "de-identified", "published", "version", "analysis", "research", "study",
    "institution", "anonymised", "aggregated", "measured", "observed", "reported", "linked",
    "derived", "summary",
]
# fmt: on
SUBJECTS = [
    "Mathematics",
    "Algebra",
    "Geometry",
    "Statistics",
    "Reading",
    "Writing",
    "Literacy",
    "Biology",
    "Chemistry",
    "Physics",
    "Earth Science",
    "History",
    "Geography",
    "Civics",
    "Economics",
    "Computer Science",
    "Engineering",
    "Art",
    "Music",
    "Physical Education",
    "Health",
    "World Languages",
    "Special Education",
    "Early Childhood",
    "Higher Education",
    "Online Learning",
    "Learning Analytics",
    "Assessment",
    "Student Wellbeing",
    "Attendance",
    "Educational Technology",
    "Teacher Education",
    "MOOC",
    "Discussion Forums",
    "Equity",
    "Dropout Prevention",
]
GRADES = ["K", *(str(g) for g in range(1, 13)), "Postsecondary"]
LICENCES = [
    ("Creative Commons Attribution 4.0 International", "CC-BY-4.0"),
    ("Creative Commons Zero v1.0 Universal", "CC0-1.0"),
    ("Creative Commons Attribution Share Alike 4.0 International", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution Non Commercial 4.0 International", "CC-BY-NC-4.0"),
    ("Open Data Commons Open Database License v1.0", "ODbL-1.0"),
    ("Spanda Restricted Data Use Agreement", None),
]
COLUMNS = [
    ("post_id", "Identifier of the forum post"),
    ("student_key", "Pseudonymous key of the student"),
    ("course_id", "Course the record belongs to"),
    ("body", "Text of the forum post with personal data removed"),
    ("created_at", "When the post was written (UTC)"),
    ("label", "Whether the post needs urgent instructor attention"),
    ("score", "Points awarded for the attempt"),
    ("max_score", "Points available"),
    ("attempt_no", "Attempt number, starting at one"),
    ("final_grade", "Final course grade"),
    ("grade_level", "Grade level of the student at enrollment"),
    ("enrollment_status", "Active, withdrawn or completed"),
    ("term", "Academic term"),
    ("subject", "Course subject area"),
    ("minutes_active", "Minutes of activity in the learning platform"),
    ("consent_state", "Consent given or withdrawn for research use"),
    ("cohort", "Cohort the student started in"),
    ("region", "Coarsened region of the school"),
]
ORGS = ["Spanda University", "Open Learning Lab", "State Education Agency", "Riverside District"]
GIVEN = ["Ana", "Ben", "Chen", "Dara", "Eli", "Fatima", "Goran", "Hana", "Ivan", "Jun", "Kofi"]
FAMILY = ["Okafor", "Silva", "Nguyen", "Kowalski", "Haddad", "Ito", "Moreau", "Patel", "Larsen"]


def _zipf_choice(rng: random.Random, words: Sequence[str]) -> str:
    """Skewed draws: a few words are everywhere, most are rare (as in real catalogs)."""
    i = min(int(rng.paretovariate(1.2)) - 1, len(words) - 1)
    return words[i]


def synthetic_records(n: int, seed: int) -> Iterator[IndexRecord]:
    """`n` versions of about n/2 datasets: the latest of each dataset is searched."""
    rng = random.Random(seed)
    topics = TOPICS[:]
    rng.shuffle(topics)
    made = 0
    dataset = 0
    while made < n:
        dataset += 1
        versions = min(rng.choice((1, 1, 2, 2, 3)), n - made)
        topic = [_zipf_choice(rng, topics) for _ in range(2)]
        context = rng.sample(CONTEXT, 2)
        subjects = rng.sample(SUBJECTS, rng.randint(1, 3))
        first = rng.randint(0, len(GRADES) - 3)
        grades = GRADES[first : first + rng.randint(1, 3)]
        rights, spdx = rng.choice(LICENCES)
        columns = rng.sample(COLUMNS, rng.randint(4, 10))
        creators = [
            {
                "name": f"{rng.choice(FAMILY)}, {rng.choice(GIVEN)}",
                "nameType": "Personal",
                "affiliation": [{"name": rng.choice(ORGS)}],
            }
            for _ in range(rng.randint(1, 3))
        ]
        year0 = rng.randint(2012, 2024)
        for version in range(1, versions + 1):
            made += 1
            published = dt.datetime(year0, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                days=150 * (version - 1) + rng.randint(0, 300), seconds=rng.randint(0, 86399)
            )
            words = [
                rng.choice(FILLER if rng.random() < 0.5 else CONTEXT + topics)
                for _ in range(rng.randint(25, 60))
            ]
            title = f"{topic[0].title()} {context[0]} and {topic[1]} {context[1]} {dataset}"
            rights_entry: dict[str, Any] = {"rights": rights}
            if spdx:
                rights_entry["rightsIdentifier"] = spdx
            yield IndexRecord(
                datacite={
                    "doi": f"10.5555/spanda.{dataset}.v{version}",
                    "titles": [{"title": title}],
                    "creators": creators,
                    "publisher": {"name": "Spanda Demo Institution"},
                    "publicationYear": published.year,
                    "types": {"resourceTypeGeneral": "Dataset"},
                    "subjects": [{"subject": s} for s in subjects],
                    "descriptions": [
                        {"description": " ".join(words), "descriptionType": "Abstract"}
                    ],
                    "rightsList": [rights_entry],
                    "version": str(version),
                },
                dataset_id=f"dataset_{dataset}",
                version=version,
                published_at=published,
                columns=tuple(ColumnDoc(name, text) for name, text in columns),
                grade_levels=tuple(grades),
                concept_doi=f"10.5555/spanda.{dataset}",
            )


def queries(count: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    kinds: list[Callable[[], str]] = [
        lambda: rng.choice(TOPICS),
        lambda: rng.choice(CONTEXT),
        lambda: f"{rng.choice(TOPICS)} {rng.choice(CONTEXT)}",
        lambda: f"{rng.choice(TOPICS)} {rng.choice(TOPICS)} {rng.choice(CONTEXT)}",
        lambda: f'"{rng.choice(TOPICS)} {rng.choice(CONTEXT)}"',
        lambda: rng.choice(TOPICS)[:4] + "*",
        lambda: f"title:{rng.choice(TOPICS)}",
        lambda: rng.choice(COLUMNS)[0],
        lambda: rng.choice(FAMILY),
        lambda: rng.choice(FILLER),
        lambda: rng.choice(["math AND", '"unbalanced quote', "NEAR(forum posts)", "- * ( )"]),
        lambda: f"{rng.choice(TOPICS)} -{rng.choice(CONTEXT)}",
    ]
    return [rng.choice(kinds)() for _ in range(count)]


def facet_filters(count: int, seed: int) -> list[dict[str, list[str]]]:
    rng = random.Random(seed + 2)
    out = []
    for _ in range(count):
        chosen: dict[str, list[str]] = {FACET_SUBJECT: [rng.choice(SUBJECTS)]}
        if rng.random() < 0.5:
            chosen[FACET_GRADE_LEVEL] = rng.sample(GRADES, 2)
        if rng.random() < 0.3:
            chosen[FACET_YEAR] = [str(rng.randint(2012, 2025))]
        out.append(chosen)
    return out


class NaiveBaseline:
    """The same requests without the full-text index: LIKE scans over the same table."""

    TEXT = "(title || ' ' || subjects || ' ' || description || ' ' || columns || ' ' || "
    TEXT += "creators || ' ' || licence)"

    def __init__(self, path: Path) -> None:
        # The same file, and the same page cache size: only the access path differs.
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA cache_size = -65536")

    def search(
        self, query: str, facets: dict[str, list[str]], limit: int = 20, counts: bool = True
    ) -> tuple[int, list[Any]]:
        words = [w.strip('"*-()').split(":")[-1] for w in query.split()]
        words = [w for w in words if w and w not in ("AND", "OR", "NOT", "NEAR")]
        conds = ["r.deleted = 0", "r.is_latest = 1"]
        params: list[Any] = []
        for word in words:
            conds.append(f"{self.TEXT} LIKE ?")
            params.append(f"%{word}%")
        for facet, values in facets.items():
            marks = ", ".join("?" for _ in values)
            conds.append(
                "r.id IN (SELECT fv.record_id FROM facet_values AS fv JOIN facet_dict AS d "
                f"ON d.id = fv.value_id WHERE d.facet = ? AND d.value IN ({marks}))"
            )
            params.extend((facet, *values))
        body = f"records AS r WHERE {' AND '.join(conds)}"
        hits = self.db.execute(
            f"SELECT r.id, r.doi, r.title FROM {body} "
            "ORDER BY r.published_at DESC, r.id DESC LIMIT ?",
            (*params, limit),
        ).fetchall()
        if counts:
            rows = self.db.execute(
                f"""WITH m AS MATERIALIZED (SELECT r.id AS id FROM {body})
                SELECT NULL, count(*) FROM m UNION ALL
                SELECT fv.value_id, count(*) FROM m JOIN facet_values AS fv
                ON fv.record_id = m.id GROUP BY fv.value_id""",
                params,
            ).fetchall()
            total = int(rows[0][1])
        else:
            total = int(self.db.execute(f"SELECT count(*) FROM {body}", params).fetchone()[0])
        return total, hits


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def _facet_params(facets: dict[str, list[str]]) -> list[str]:
    return [f"{key}={value}" for key, values in facets.items() for value in values]


def http_percentiles(
    home: Path, texts: Sequence[str], filters: Sequence[dict[str, list[str]]]
) -> None:
    """The same queries as `GET /search` of the real server (`spanda serve` on loopback,
    one keep-alive client): the figure the target is about, HTTP and JSON included."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env |= {"SPANDA_HOME": str(home)}
    with spanda_serve(env) as (_pid, base), httpx.Client(base_url=base, timeout=30) as client:

        def get(params: dict[str, Any]) -> None:
            client.get("/search", params=params).raise_for_status()

        for text in texts[:20]:
            get({"q": text})
        for name, make in (
            ("GET /search (HTTP)", lambda i: {"q": texts[i]}),
            (
                "GET /search facets",
                lambda i: {
                    "q": texts[i],
                    "facet": _facet_params(filters[i]),
                },
            ),
        ):
            samples = [timed(lambda i=i, make=make: get(make(i))) for i in range(len(texts))]
            p50, p95, p99 = percentiles(samples)
            print(f"{name:<22} {'server':<14} {p50:8.1f} {p95:8.1f} {p99:8.1f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=5_000, help="records per transaction")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="spanda-search-") as tmp:
        path = Path(tmp) / INDEX_FILE  # SPANDA_HOME=tmp: the index `spanda serve` reads
        index = SearchIndex(path)
        start = time.perf_counter()
        batch: list[IndexRecord] = []
        for record in synthetic_records(args.records, args.seed):
            batch.append(record)
            if len(batch) >= args.batch:
                index.upsert_many(batch)
                batch.clear()
        index.upsert_many(batch)
        index.optimize()
        build = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
        print(
            f"index: {index.count():,} versions, {index.count(latest_only=True):,} datasets, "
            f"built in {build:.1f} s ({args.records / build:,.0f} records/s), {size_mb:.0f} MB"
        )

        texts = queries(args.queries, args.seed)
        filters = facet_filters(args.queries, args.seed)
        naive = NaiveBaseline(path)
        for text in texts[:20]:  # warm the page cache for both access paths alike
            index.search(text)
            naive.search(text, {})

        modes: list[tuple[str, Callable[[int], Any], Callable[[int], Any]]] = [
            (
                "plain (facet counts)",
                lambda i: index.search(texts[i]),
                lambda i: naive.search(texts[i], {}),
            ),
            (
                "facet filters",
                lambda i: index.search(texts[i], filters[i]),
                lambda i: naive.search(texts[i], filters[i]),
            ),
            (
                "no facet counts",
                lambda i: index.search(texts[i], facet_counts=False),
                lambda i: naive.search(texts[i], {}, counts=False),
            ),
            (
                "blank query (browse)",
                lambda i: index.search("", filters[i] if i % 2 else None),
                lambda i: naive.search("", filters[i] if i % 2 else {}),
            ),
        ]
        header = f"{'mode':<22} {'engine':<14} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        print(f"\n{len(texts)} queries per mode, 20 hits per page\n")
        print(header)
        print("-" * len(header))
        for name, fts, like in modes:
            for engine, fn in (("fts5 bm25", fts), ("naive LIKE", like)):
                samples = [timed(lambda i=i, fn=fn: fn(i)) for i in range(len(texts))]
                p50, p95, p99 = percentiles(samples)
                print(f"{name:<22} {engine:<14} {p50:8.1f} {p95:8.1f} {p99:8.1f}")
        http_percentiles(Path(tmp), texts, filters)
        matched = [index.search(t, facet_counts=False).total for t in texts]
        print(
            f"\nmatches per query (latest versions): median {statistics.median(matched):,.0f}, "
            f"max {max(matched):,}"
        )
        index.close()
        naive.db.close()


if __name__ == "__main__":
    main()
