"""The search index over published dataset versions: SQLite FTS5, one file, no server.

What it holds: one row per version DOI, built from the version's DataCite 4.5 metadata
(the DataCite REST `attributes` shape) and what Spanda knows beside it (dataset id,
version number, column names and descriptions, grade levels, concept DOI, publication
time). The embedded default lives at SPANDA_HOME/search.sqlite (`default_path`).

Why FTS5: it ships inside Python's sqlite3, ranks with BM25 and writes snippets, so a
laptop demo and a small institution need no search server. benchmarks/search.py
measures it at 100,000 versions (target: p95 under 50 ms with facet counts).

Decisions a reader would otherwise have to reverse-engineer:

* User text never reaches FTS5's query language. `compile_query` keeps words only and
  quotes each one, so `AND`, `NEAR(...)`, `*`, stray quotes or `title:` cannot
  change the query's meaning or raise a syntax error. A query that has characters but
  no words matches nothing (it never falls back to "everything"); only a blank query
  lists everything, newest first.
* Every value goes into SQL as a parameter. The only SQL assembled at run time is this
  module's fixed fragments: one per facet filter or page id, with `?` placeholders for
  the values, and the name of one of the two full-text tables.
* Ranking: versions with a query word in their title or subjects first, then the rest,
  each in BM25 order with column weights (title 10, subjects 5, description 3, columns 2,
  creators 1.5, licence 1). BM25 scores every version it ranks; a broad word matches
  most of the catalog in its column documentation but few titles, so the second tier
  is scored only when a page reaches it.
* Two full-text indexes over the same rows (external content, kept by triggers): all
  versions, and the latest version of each dataset, which is what search reads unless
  asked for all versions.
* Upserts are idempotent: a record is keyed by its version DOI (case-insensitive, as
  DOIs are) and carries a hash of its content; indexing the same record again writes
  nothing, so its OAI-PMH datestamp does not move and harvesters are not told twice.
* Deleting a version leaves a tombstone (DOI, datestamp) so that OAI-PMH harvesters
  learn of the deletion (`deletedRecord` is `persistent`); search never shows it.
* Every change takes the next number of a change sequence (`seq`). OAI-PMH pages walk
  that sequence, so a record changed during a harvest is delivered again at the end
  instead of shifting later pages; the largest number also tells a reader that its
  in-memory facet arrays are stale.
* Facet counts are not a SQL GROUP BY: a broad query ("students") matches most of the
  catalog, and sorting its several facet rows per match cost 80 ms at 20,000 versions.
  Facet values are integer-coded; each reader keeps the (version, value) pairs, the
  live/latest flags and the recency order as numpy arrays (reloaded after any write),
  takes the matching ids from FTS5 in one string, and counts with `bincount`: a few
  milliseconds at 100,000 versions. A blank query's page comes from the same arrays.
* A reload reads the whole index, so a process that writes and searches in turn pays
  it on each first search after a write; the catalog's writes (publishing a version)
  are rare next to its searches.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spanda_assets import settings
from spanda_assets.lib.errors import SpandaError

SCHEMA_VERSION = 1
INDEX_FILE = "search.sqlite"

# Facet names, as the API's query parameters and the JSON output spell them.
FACET_SUBJECT = "subject"
FACET_LICENCE = "licence"
FACET_GRADE_LEVEL = "grade_level"
FACET_YEAR = "year"
FACETS = (FACET_SUBJECT, FACET_LICENCE, FACET_GRADE_LEVEL, FACET_YEAR)

MAX_LIMIT = 200
MAX_OFFSET = 10_000  # deeper pages cost a sort of everything before them; narrow the query
MAX_QUERY_CHARS = 1_000
MAX_TERMS = 16
MIN_PREFIX_CHARS = 3  # `a*` would match nearly every record: a prefix needs 3 characters
DEFAULT_FACET_VALUES = 20

# The FTS5 columns, in order, with their BM25 weights: a word in the title counts most,
# then subjects (chosen keywords), then the prose and the column documentation.
_TEXT_COLUMNS: tuple[tuple[str, float], ...] = (
    ("title", 10.0),
    ("subjects", 5.0),
    ("description", 3.0),
    ("columns", 2.0),
    ("creators", 1.5),
    ("licence", 1.0),
)
_WEIGHTS = ", ".join(str(w) for _, w in _TEXT_COLUMNS)
# Two full-text indexes over the same rows: every version, and each dataset's latest
# version only (the default search). Filtering the first by "latest" would cost a
# lookup, or one more phrase for BM25 to walk, per match; the second is its own index.
ALL_VERSIONS, LATEST_VERSIONS = "records_fts", "latest_fts"

# The words a user may put before a colon to search one field (`title:algebra`).
_FIELD_ALIASES = {
    "title": "title",
    "subject": "subjects",
    "subjects": "subjects",
    "description": "description",
    "column": "columns",
    "columns": "columns",
    "creator": "creators",
    "creators": "creators",
    "licence": "licence",
    "license": "licence",
}
_OPERATORS = frozenset({"AND", "OR", "NOT", "NEAR"})
# Dropped from a query that has other words: they are in nearly every record, so they
# neither narrow the matches nor move the ranking, and they make a query scan them all.
_STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is"}
    | {"of", "on", "or", "that", "the", "this", "to", "was", "were", "with"}
)
_PIECE = re.compile(r'(-?)"([^"]*)"|(\S+)')
_SEPARATORS = re.compile(r"[()\[\]{},;]")
_WORD = re.compile(r"[^\W_]+")  # the unicode61 tokenizer splits on `_` too

# Highlight markers inside snippets: control characters that indexed text never holds
# (`_clean` strips them), so parsing the marked text back into offsets is exact.
_MARK_OPEN = "\x02"
_MARK_CLOSE = "\x03"
_ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DOI = re.compile(r"^10\.\d{4,9}/\S+$")
_DOI_PREFIXES = ("https://doi.org/", "http://doi.org/", "https://dx.doi.org/", "doi:")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id           INTEGER PRIMARY KEY,
    doi          TEXT NOT NULL,
    doi_key      TEXT NOT NULL UNIQUE,
    dataset_id   TEXT NOT NULL,
    version      INTEGER NOT NULL,
    concept_doi  TEXT,
    published_at TEXT NOT NULL,
    modified_at  TEXT NOT NULL,
    seq          INTEGER NOT NULL UNIQUE,
    deleted      INTEGER NOT NULL DEFAULT 0,
    is_latest    INTEGER NOT NULL DEFAULT 0,
    content_hash TEXT NOT NULL,
    datacite     TEXT NOT NULL,
    extra        TEXT NOT NULL,
    title        TEXT NOT NULL,
    subjects     TEXT NOT NULL,
    description  TEXT NOT NULL,
    columns      TEXT NOT NULL,
    creators     TEXT NOT NULL,
    licence      TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS records_live_version ON records (dataset_id, version)
    WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS records_dataset ON records (dataset_id, version);
CREATE INDEX IF NOT EXISTS records_listing ON records (deleted, is_latest, published_at, id);
CREATE INDEX IF NOT EXISTS records_modified ON records (modified_at, seq);

-- Facet values, integer-coded; `key` is the value case-folded (one value however it
-- is capitalised), `value` its first spelling, which is what facets show.
CREATE TABLE IF NOT EXISTS facet_dict (
    id    INTEGER PRIMARY KEY,
    facet TEXT NOT NULL,
    key   TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (facet, key)
);
CREATE TABLE IF NOT EXISTS facet_values (
    record_id INTEGER NOT NULL,
    value_id  INTEGER NOT NULL,
    PRIMARY KEY (record_id, value_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS facet_values_by_value ON facet_values (value_id, record_id);

"""
_FTS_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5 (
    title, subjects, description, columns, creators, licence,
    content = 'records', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS latest_fts USING fts5 (
    title, subjects, description, columns, creators, licence,
    content = 'records', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
-- External content: both indexes follow the records table through these triggers;
-- latest_fts holds the rows whose is_latest is set.
CREATE TRIGGER IF NOT EXISTS records_ai AFTER INSERT ON records BEGIN
    INSERT INTO records_fts (rowid, {cols}) VALUES ({new});
    INSERT INTO latest_fts (rowid, {cols}) SELECT {new} WHERE new.is_latest;
END;
CREATE TRIGGER IF NOT EXISTS records_ad AFTER DELETE ON records BEGIN
    INSERT INTO records_fts (records_fts, rowid, {cols}) VALUES ('delete', {old});
    INSERT INTO latest_fts (latest_fts, rowid, {cols}) SELECT 'delete', {old} WHERE old.is_latest;
END;
CREATE TRIGGER IF NOT EXISTS records_au
AFTER UPDATE OF title, subjects, description, columns, creators, licence, is_latest ON records
BEGIN
    INSERT INTO records_fts (records_fts, rowid, {cols}) VALUES ('delete', {old});
    INSERT INTO records_fts (rowid, {cols}) VALUES ({new});
    INSERT INTO latest_fts (latest_fts, rowid, {cols}) SELECT 'delete', {old} WHERE old.is_latest;
    INSERT INTO latest_fts (rowid, {cols}) SELECT {new} WHERE new.is_latest;
END;
""".format(
    cols="title, subjects, description, columns, creators, licence",
    new="new.id, new.title, new.subjects, new.description, new.columns, new.creators, new.licence",
    old="old.id, old.title, old.subjects, old.description, old.columns, old.creators, old.licence",
)


class SearchIndexError(SpandaError):
    """A record cannot be indexed as given, or a search asks for something malformed."""


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class ColumnDoc:
    """One column of a published dataset version, as its data dictionary documents it."""

    name: str
    description: str = ""


@dataclass(frozen=True)
class IndexRecord:
    """What is indexed for one published dataset version.

    `datacite` is the version's DataCite 4.5 metadata in the DataCite REST `attributes`
    shape (`doi`, `titles`, `creators`, `subjects`, `descriptions`, `rightsList`, ...);
    the other fields are Spanda's, kept beside it because DataCite has no place for them
    (or none that a facet could read reliably).
    """

    datacite: Mapping[str, Any]
    dataset_id: str
    version: int
    published_at: dt.datetime | str
    columns: tuple[ColumnDoc, ...] = ()
    grade_levels: tuple[str, ...] = ()
    concept_doi: str | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexRecord:
        """Build from plain JSON: `columns` as [{name, description}] or {name: description}."""
        raw_columns = data.get("columns") or ()
        if isinstance(raw_columns, Mapping):
            columns = tuple(ColumnDoc(str(k), str(v or "")) for k, v in raw_columns.items())
        else:
            columns = tuple(
                ColumnDoc(str(c["name"]), str(c.get("description") or ""))
                if isinstance(c, Mapping)
                else ColumnDoc(str(c))
                for c in raw_columns
            )
        return cls(
            datacite=data["datacite"],
            dataset_id=str(data["dataset_id"]),
            version=int(data["version"]),
            published_at=data["published_at"],
            columns=columns,
            grade_levels=tuple(str(g) for g in data.get("grade_levels") or ()),
            concept_doi=data.get("concept_doi"),
        )


# --------------------------------------------------------------------------- outputs


def _jsonable(value: Any) -> Any:
    """Dataclasses, tuples and mappings as plain JSON values (tuples become lists), so
    `to_dict` equals what `json.loads(to_json())` gives back."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: what the CLI prints and the HTTP API returns."""
        data = _jsonable(self)
        assert isinstance(data, dict)
        return data

    def to_json(self, *, indent: int | None = None) -> str:
        """One JSON spelling for every caller (key order as declared, UTF-8 kept)."""
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)


@dataclass(frozen=True)
class Snippet(_Serializable):
    """A passage of one field around the query's words.

    The words found are given as [start, end) character offsets into `text` rather
    than as markup inside it, so no consumer has to escape or strip someone else's
    markers: the HTTP API escapes and wraps for HTML, the CLI for a terminal
    (`marked`).
    """

    field: str
    text: str
    highlights: tuple[tuple[int, int], ...]

    def marked(
        self,
        open_mark: str = "<mark>",
        close_mark: str = "</mark>",
        escape: Callable[[str], str] | None = None,
    ) -> str:
        """`text` with each highlight wrapped; `escape` (e.g. html.escape) applies to the
        text between markers, never to the markers."""
        esc = escape or (lambda s: s)
        out: list[str] = []
        pos = 0
        for start, end in self.highlights:
            out.extend((esc(self.text[pos:start]), open_mark, esc(self.text[start:end])))
            out.append(close_mark)
            pos = end
        out.append(esc(self.text[pos:]))
        return "".join(out)


@dataclass(frozen=True)
class FacetCount(_Serializable):
    value: str
    count: int


@dataclass(frozen=True)
class SearchHit(_Serializable):
    """One dataset version in a result list. `score` is BM25 relevance (higher is
    better), None when the query was blank and the list is ordered by recency."""

    doi: str
    dataset_id: str
    version: int
    title: str
    description: str
    creators: tuple[str, ...]
    publisher: str
    year: int | None
    subjects: tuple[str, ...]
    licences: tuple[str, ...]
    grade_levels: tuple[str, ...]
    concept_doi: str | None
    published_at: str
    latest: bool
    score: float | None
    snippets: tuple[Snippet, ...]


@dataclass(frozen=True)
class SearchResults(_Serializable):
    """A page of hits, the number of matches, and facet counts over all matches (with
    every facet filter applied), each facet's values by count, most first."""

    query: str
    filters: Mapping[str, tuple[str, ...]]
    latest_only: bool
    total: int
    limit: int
    offset: int
    hits: tuple[SearchHit, ...]
    facets: Mapping[str, tuple[FacetCount, ...]]


@dataclass(frozen=True)
class StoredRecord(_Serializable):
    """A version as the index stores it: what OAI-PMH disseminates. `datestamp` is the
    time of its last change in the index (UTC, seconds); a tombstone has `deleted` set
    and no metadata."""

    doi: str
    dataset_id: str
    version: int
    concept_doi: str | None
    published_at: str
    datestamp: str
    seq: int
    deleted: bool
    latest: bool
    datacite: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class CompiledQuery:
    """A user's query as FTS5 expressions built here from quoted words.

    `match` is what a version must match. `head` matches versions with one of the
    query's words in the title or subjects (None when no word may be there): those are
    ranked first. `prefix` says whether a word is a prefix (`alg*`).
    """

    match: str
    head: str | None
    prefix: bool


def compile_query(text: str) -> CompiledQuery | None:
    """Turn what a user typed into FTS5 expressions that mean only "these words".

    Each whitespace-separated piece becomes one quoted phrase of its words (so
    `grade-level` and `final_grade` search the words together), `"..."` keeps a phrase,
    and pieces are ANDed (lone stopwords such as "the" are dropped when other words
    remain). A few conveniences survive because they are built here, not passed
    through: `-word` excludes, `word*` is a prefix (three characters at least),
    `title:word` (and the other field names) searches one field. Bare operator words
    (`AND`, `OR`, `NOT`, `NEAR`) are dropped: AND is what happens anyway. Everything
    else that is not a letter or digit is a separator; brackets, commas and semicolons
    also separate pieces.

    Returns None when nothing searchable is left, including when only exclusions are:
    the caller must then match nothing rather than everything.
    """
    # Brackets and list punctuation separate pieces: `NEAR(forum posts)` is two words.
    text = _SEPARATORS.sub(" ", unicodedata.normalize("NFC", text[:MAX_QUERY_CHARS]))
    include: list[tuple[str, str | None, bool]] = []  # (phrase, column, is a lone stopword)
    exclude: list[str] = []
    prefixed = False
    for found in _PIECE.finditer(text):
        negate, phrase, piece = found.group(1), found.group(2), found.group(3)
        column: str | None = None
        prefix = False
        if phrase is not None:
            words = _WORD.findall(phrase)
        else:
            if piece in _OPERATORS:
                continue
            if piece.startswith("-"):
                negate, piece = "-", piece[1:]
            name, colon, rest = piece.partition(":")
            if colon and name.lower() in _FIELD_ALIASES:
                column, piece = _FIELD_ALIASES[name.lower()], rest
            prefix = piece.endswith("*")
            words = _WORD.findall(piece)
        if not words:
            continue
        term = '"{}"'.format(" ".join(words).replace('"', '""'))
        if prefix and len(words[-1]) >= MIN_PREFIX_CHARS:
            term += "*"
        if negate:
            exclude.append(term if column is None else f"{column} : {term}")
            continue
        prefixed = prefixed or term.endswith("*")
        lone = phrase is None and column is None and not prefix and len(words) == 1
        include.append((term, column, lone and words[0].lower() in _STOPWORDS))
    if not include:
        return None
    kept = [t for t in include if not t[2]] or include
    terms = kept[:MAX_TERMS]
    match = " AND ".join(t if c is None else f"{c} : {t}" for t, c, _ in terms)
    if exclude:
        match = "({}) NOT ({})".format(match, " OR ".join(exclude[:MAX_TERMS]))
    head_terms = [t for t, c, _ in terms if c in (None, "title", "subjects")]
    head = "{{title subjects}} : ({})".format(" OR ".join(head_terms)) if head_terms else None
    return CompiledQuery(match=match, head=head, prefix=prefixed)


def to_match_expression(text: str) -> str | None:
    """The FTS5 MATCH expression for what a user typed (see `compile_query`); None when
    it holds nothing to search for."""
    compiled = compile_query(text)
    return compiled.match if compiled is not None else None


# --------------------------------------------------------------------------- helpers


class FacetSyntaxError(SpandaError):
    """A facet filter not written as key=value."""


def parse_facet_pairs(pairs: Iterable[str]) -> dict[str, list[str]]:
    """`["licence=CC-BY-4.0", "year=2026"]` as the facet filters `search` takes, the same
    for `spanda search --facet` and `GET /search?facet=`."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise FacetSyntaxError(
                f"facet {pair!r}: write a facet as key=value, e.g. licence=CC-BY-4.0"
            )
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def default_path() -> Path:
    """SPANDA_HOME/search.sqlite: the embedded index."""
    return settings.spanda_home() / INDEX_FILE


def normalize_doi(doi: str) -> str:
    """`10.x/y` from any of the spellings people paste (`https://doi.org/...`, `doi:...`)."""
    value = doi.strip()
    for prefix in _DOI_PREFIXES:
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
            break
    return value


def utc_stamp(value: dt.datetime | dt.date | str) -> str:
    """`YYYY-MM-DDThh:mm:ssZ` (OAI-PMH's granularity): naive times are taken as UTC."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise SearchIndexError(f"not an ISO 8601 time: {value!r}") from exc
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(text: Any) -> str:
    """Text as indexed: control characters out (the snippet markers among them)."""
    return _CONTROL.sub(" ", unicodedata.normalize("NFC", str(text))).strip()


def _texts(items: Any, key: str) -> list[str]:
    out: list[str] = []
    for item in items or ():
        value = item.get(key) if isinstance(item, Mapping) else item
        if value:
            text = _clean(value)
            if text:
                out.append(text)
    return out


def _dedupe(values: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        key = value.casefold()
        if value and key not in seen:
            seen.add(key)
            out.append(value)
    return out


def _affiliations(creator: Mapping[str, Any]) -> list[str]:
    raw = creator.get("affiliation") or ()
    if isinstance(raw, str | Mapping):
        raw = [raw]
    return _texts(raw, "name")


def _main_title(attrs: Mapping[str, Any]) -> str:
    titles = [t for t in attrs.get("titles") or () if isinstance(t, Mapping)]
    main = [t for t in titles if not t.get("titleType")] or titles
    return _clean(main[0].get("title", "")) if main else ""


def _abstract(attrs: Mapping[str, Any]) -> str:
    items = [d for d in attrs.get("descriptions") or () if isinstance(d, Mapping)]
    abstract = [d for d in items if d.get("descriptionType") == "Abstract"] or items
    return _clean(abstract[0].get("description", "")) if abstract else ""


def _licences(attrs: Mapping[str, Any]) -> list[str]:
    """Facet values for the licence: the SPDX identifier where given (`CC-BY-4.0`),
    the licence's name otherwise."""
    out = []
    for rights in attrs.get("rightsList") or ():
        if isinstance(rights, Mapping):
            value = rights.get("rightsIdentifier") or rights.get("rights")
            if value:
                out.append(_clean(value))
    return _dedupe(out)


def _year(attrs: Mapping[str, Any], published_at: str) -> int | None:
    raw = attrs.get("publicationYear")
    try:
        return int(str(raw).strip()) if raw not in (None, "") else int(published_at[:4])
    except ValueError:
        return None


def _publisher(attrs: Mapping[str, Any]) -> str:
    publisher = attrs.get("publisher")
    if isinstance(publisher, Mapping):
        return _clean(publisher.get("name") or "")
    return _clean(publisher or "")


@dataclass(frozen=True)
class _Row:
    doi: str
    doi_key: str
    dataset_id: str
    version: int
    concept_doi: str | None
    published_at: str
    content_hash: str
    datacite: str
    extra: str
    text: dict[str, str]
    facets: tuple[tuple[str, str], ...]


def _row(record: IndexRecord) -> _Row:
    """Validate a record and derive everything stored for it, before anything is written."""
    attrs = record.datacite
    if not isinstance(attrs, Mapping):
        raise SearchIndexError("datacite must be the DataCite `attributes` object")
    doi = normalize_doi(str(attrs.get("doi") or ""))
    if not _DOI.match(doi):
        raise SearchIndexError(
            f"datacite.doi must be a DOI (10.<prefix>/<suffix>), got {attrs.get('doi')!r}"
        )
    if not str(record.dataset_id).strip():
        raise SearchIndexError(f"{doi}: dataset_id is empty")
    if isinstance(record.version, bool) or not isinstance(record.version, int):
        raise SearchIndexError(f"{doi}: version must be an integer, got {record.version!r}")
    published_at = utc_stamp(record.published_at)
    concept = normalize_doi(record.concept_doi) if record.concept_doi else None
    extra = {
        "columns": [{"name": c.name, "description": c.description} for c in record.columns],
        "grade_levels": list(record.grade_levels),
    }
    try:
        datacite_json = json.dumps(attrs, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise SearchIndexError(f"{doi}: datacite metadata is not JSON: {exc}") from exc
    extra_json = json.dumps(extra, sort_keys=True, ensure_ascii=False)
    identity = [record.dataset_id, record.version, published_at, concept, doi]
    try:
        canonical = json.dumps([datacite_json, extra_json, identity], ensure_ascii=False)
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    except UnicodeEncodeError as exc:
        # A lone surrogate: SQLite (and any UTF-8 reader after it) cannot hold it.
        raise SearchIndexError(f"{doi}: the metadata holds text that is not valid Unicode") from exc

    creators: list[str] = []
    for creator in attrs.get("creators") or ():
        if isinstance(creator, Mapping):
            creators.extend(_texts([creator], "name"))
            creators.extend(_affiliations(creator))
    subjects = _dedupe(_texts(attrs.get("subjects"), "subject"))
    licences = _licences(attrs)
    rights_text = _texts(attrs.get("rightsList"), "rights") + licences
    grade_levels = _dedupe(_clean(g) for g in record.grade_levels)
    year = _year(attrs, published_at)
    text = {
        "title": "\n".join(_texts(attrs.get("titles"), "title")),
        "subjects": "\n".join(subjects),
        "description": "\n".join(_texts(attrs.get("descriptions"), "description")),
        "columns": "\n".join(
            _clean(f"{c.name}: {c.description}" if c.description else c.name)
            for c in record.columns
        ),
        "creators": "\n".join(_dedupe(creators)),
        "licence": "\n".join(_dedupe(rights_text)),
    }
    facets = (
        [(FACET_SUBJECT, s) for s in subjects]
        + [(FACET_LICENCE, lic) for lic in licences]
        + [(FACET_GRADE_LEVEL, g) for g in grade_levels]
        + ([(FACET_YEAR, str(year))] if year is not None else [])
    )
    return _Row(
        doi=doi,
        doi_key=doi.lower(),
        dataset_id=str(record.dataset_id).strip(),
        version=record.version,
        concept_doi=concept,
        published_at=published_at,
        content_hash=digest,
        datacite=datacite_json,
        extra=extra_json,
        text=text,
        facets=tuple(facets),
    )


def _parse_marked(marked: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Text with FTS5's markers -> plain text and [start, end) offsets of the hits."""
    text: list[str] = []
    spans: list[tuple[int, int]] = []
    length = 0
    start: int | None = None
    for part in re.split(f"([{_MARK_OPEN}{_MARK_CLOSE}])", marked):
        if part == _MARK_OPEN:
            start = length
        elif part == _MARK_CLOSE:
            if start is not None and length > start:
                spans.append((start, length))
            start = None
        else:
            text.append(part)
            length += len(part)
    return "".join(text), tuple(spans)


def _facet_filters(facets: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    filters: dict[str, tuple[str, ...]] = {}
    for name, values in (facets or {}).items():
        if name not in FACETS:
            raise SearchIndexError(f"unknown facet {name!r}: choose from {', '.join(FACETS)}")
        items = [values] if isinstance(values, str) else list(values)
        cleaned = tuple(_dedupe(_clean(v) for v in items if str(v).strip()))
        if len(cleaned) > 100:
            raise SearchIndexError(f"facet {name!r}: at most 100 values")
        if cleaned:
            filters[name] = cleaned
    return filters


_RECORD_COLUMNS = (
    "id, doi, dataset_id, version, concept_doi, published_at, modified_at, seq, deleted, "
    "is_latest, datacite"
)


def _stored(row: sqlite3.Row) -> StoredRecord:
    return StoredRecord(
        doi=row["doi"],
        dataset_id=row["dataset_id"],
        version=row["version"],
        concept_doi=row["concept_doi"],
        published_at=row["published_at"],
        datestamp=row["modified_at"],
        seq=row["seq"],
        deleted=bool(row["deleted"]),
        latest=bool(row["is_latest"]),
        datacite=json.loads(row["datacite"]),
    )


# --------------------------------------------------------------------------- facet arrays


def _id_array(text: str | None) -> np.ndarray:
    """A `group_concat` of integers as an int64 array (one string crosses from SQLite to
    Python instead of one tuple per row)."""
    if not text:
        return np.empty(0, dtype=np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")


@dataclass(frozen=True)
class _FacetArrays:
    """One reader's copy of what facet counting needs, valid while `head` (the largest
    change number) is the index's.

    `record` and `value` are the (version id, facet value id) pairs; `live` and `latest`
    are flags indexed by version id; `newest` holds the live version ids, most recently
    published first (a blank query's order); `names[value id]` is (facet, value as first
    spelled).
    """

    head: int
    names: Mapping[int, tuple[str, str]]
    lookup: Mapping[tuple[str, str], int]
    record: np.ndarray
    value: np.ndarray
    live: np.ndarray
    latest: np.ndarray
    newest: np.ndarray

    @property
    def size(self) -> int:
        return len(self.live)

    def mask(self, ids: np.ndarray) -> np.ndarray:
        out = np.zeros(self.size, dtype=bool)
        out[ids[ids < self.size]] = True
        return out

    def having(self, value_ids: Sequence[int]) -> np.ndarray:
        """Versions holding any of these values."""
        return self.mask(self.record[np.isin(self.value, np.asarray(value_ids))])

    def listing(self, selected: np.ndarray, limit: int, offset: int) -> list[int]:
        """One page of the selected versions, newest first: a blank query's hits. The
        order is already in `newest`, so no row is read and nothing is sorted."""
        return [int(i) for i in self.newest[selected[self.newest]][offset : offset + limit]]

    def counts(self, selected: np.ndarray) -> dict[str, list[FacetCount]]:
        """Each facet's value counts over the selected versions, most first."""
        tally = np.bincount(self.value[selected[self.record]], minlength=0)
        out: dict[str, list[FacetCount]] = {}
        for value_id in np.flatnonzero(tally):
            name = self.names.get(int(value_id))
            if name is not None:
                out.setdefault(name[0], []).append(FacetCount(name[1], int(tally[value_id])))
        for values in out.values():
            values.sort(key=lambda c: (-c.count, c.value.casefold()))
        return out


# --------------------------------------------------------------------------- the index


class SearchIndex:
    """The index in one SQLite file: upsert and delete versions, search, harvest.

    One connection, guarded by a lock, so a threaded HTTP server may share an instance;
    several processes may open the same file (WAL journal: readers do not block the
    writer, and each search reads one consistent snapshot). `clock` gives the time a
    change is stamped with (tests pin it).
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._lock = threading.RLock()
        self._arrays: _FacetArrays | None = None
        self._db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute("PRAGMA cache_size = -65536")  # 64 MiB: the index of 100k versions
        self._db.execute("PRAGMA temp_store = MEMORY")
        self._ensure_schema()

    @classmethod
    def open_default(cls) -> SearchIndex:
        """The embedded index under SPANDA_HOME."""
        return cls(default_path())

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _ensure_schema(self) -> None:
        """Create the tables on first use. The script is idempotent (IF NOT EXISTS) and
        runs in one immediate transaction, so two processes opening a new file at once
        both end up with the same schema."""
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                self._db.executescript(
                    "BEGIN IMMEDIATE;"
                    + _SCHEMA
                    + _FTS_SCHEMA
                    + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
                )
            elif version != SCHEMA_VERSION:
                raise SearchIndexError(
                    f"{self.path} was written by a different version of Spanda (schema "
                    f"{version}, this one reads {SCHEMA_VERSION}): delete it and re-index"
                )

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One write transaction (taken at once, so two writers queue instead of failing
        at their first write)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[None]:
        """One read transaction: the statements of a search see one snapshot, even while
        another process writes."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    # ---------------------------------------------------------------- writes

    def upsert(self, record: IndexRecord) -> bool:
        """Index one version; True if anything changed (False: already indexed as is)."""
        return self.upsert_many([record]) == 1

    def upsert_many(self, records: Iterable[IndexRecord]) -> int:
        """Index many versions in one transaction (all or none); returns how many changed.

        Every record is validated before the first write, so a bad one leaves the index
        as it was.
        """
        rows = [_row(r) for r in records]
        changed = 0
        with self._write():
            now = utc_stamp(self._clock())
            seq = self._next_seq()
            value_ids: dict[tuple[str, str], int] = {}
            for row in rows:
                if self._upsert_row(row, now, seq, value_ids):
                    changed += 1
                    seq += 1
        return changed

    def _next_seq(self) -> int:
        return int(self._db.execute("SELECT coalesce(max(seq), 0) + 1 FROM records").fetchone()[0])

    def _value_id(self, facet: str, value: str, known: dict[tuple[str, str], int]) -> int:
        key = (facet, value.casefold())
        if key not in known:
            self._db.execute(
                "INSERT INTO facet_dict (facet, key, value) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (*key, value),
            )
            known[key] = int(
                self._db.execute(
                    "SELECT id FROM facet_dict WHERE facet = ? AND key = ?", key
                ).fetchone()[0]
            )
        return known[key]

    def _upsert_row(
        self, row: _Row, now: str, seq: int, value_ids: dict[tuple[str, str], int]
    ) -> bool:
        db = self._db
        old = db.execute(
            "SELECT id, dataset_id, content_hash, deleted FROM records WHERE doi_key = ?",
            (row.doi_key,),
        ).fetchone()
        if old is not None and not old["deleted"] and old["content_hash"] == row.content_hash:
            return False
        clash = db.execute(
            "SELECT doi FROM records WHERE dataset_id = ? AND version = ? AND deleted = 0 "
            "AND doi_key != ?",
            (row.dataset_id, row.version, row.doi_key),
        ).fetchone()
        if clash is not None:
            raise SearchIndexError(
                f"{row.doi}: version {row.version} of {row.dataset_id} is already indexed "
                f"as {clash['doi']}; delete that DOI first if it was replaced"
            )
        values = {
            "doi": row.doi,
            "doi_key": row.doi_key,
            "dataset_id": row.dataset_id,
            "version": row.version,
            "concept_doi": row.concept_doi,
            "published_at": row.published_at,
            "modified_at": now,
            "seq": seq,
            "content_hash": row.content_hash,
            "datacite": row.datacite,
            "extra": row.extra,
            **row.text,
        }
        record_id = db.execute(
            """
            INSERT INTO records (doi, doi_key, dataset_id, version, concept_doi, published_at,
                                 modified_at, seq, deleted, content_hash, datacite, extra,
                                 title, subjects, description, columns, creators, licence)
            VALUES (:doi, :doi_key, :dataset_id, :version, :concept_doi, :published_at,
                    :modified_at, :seq, 0, :content_hash, :datacite, :extra,
                    :title, :subjects, :description, :columns, :creators, :licence)
            ON CONFLICT (doi_key) DO UPDATE SET
                doi = excluded.doi, dataset_id = excluded.dataset_id,
                version = excluded.version, concept_doi = excluded.concept_doi,
                published_at = excluded.published_at, modified_at = excluded.modified_at,
                seq = excluded.seq, deleted = 0, content_hash = excluded.content_hash,
                datacite = excluded.datacite, extra = excluded.extra,
                title = excluded.title, subjects = excluded.subjects,
                description = excluded.description, columns = excluded.columns,
                creators = excluded.creators, licence = excluded.licence
            RETURNING id
            """,
            values,
        ).fetchone()[0]
        db.execute("DELETE FROM facet_values WHERE record_id = ?", (record_id,))
        db.executemany(
            "INSERT OR IGNORE INTO facet_values (record_id, value_id) VALUES (?, ?)",
            [(record_id, self._value_id(f, v, value_ids)) for f, v in row.facets],
        )
        self._mark_latest(row.dataset_id)
        if old is not None and old["dataset_id"] != row.dataset_id:
            self._mark_latest(old["dataset_id"])
        return True

    def _mark_latest(self, dataset_id: str) -> None:
        """Exactly one live version of a dataset, the highest, is its latest."""
        latest = self._db.execute(
            "SELECT id FROM records WHERE dataset_id = ? AND deleted = 0 "
            "ORDER BY version DESC, id DESC LIMIT 1",
            (dataset_id,),
        ).fetchone()
        latest_id = latest[0] if latest is not None else -1
        self._db.execute(
            "UPDATE records SET is_latest = (id = ?1) "
            "WHERE dataset_id = ?2 AND is_latest != (id = ?1)",
            (latest_id, dataset_id),
        )

    def delete(self, doi: str) -> bool:
        """Withdraw a version from search; True if it was there.

        The row stays as a tombstone (DOI, dataset, version, datestamp) so that OAI-PMH
        harvesters are told of the deletion; its text, metadata and facets go. If it was
        its dataset's latest version, the previous one becomes the latest.
        """
        key = normalize_doi(doi).lower()
        with self._write():
            old = self._db.execute(
                "SELECT id, dataset_id FROM records WHERE doi_key = ? AND deleted = 0", (key,)
            ).fetchone()
            if old is None:
                return False
            self._db.execute(
                """
                UPDATE records SET deleted = 1, is_latest = 0, seq = ?, modified_at = ?,
                    content_hash = '', datacite = '{}', extra = '{}', title = '',
                    subjects = '', description = '', columns = '', creators = '',
                    licence = ''
                WHERE id = ?
                """,
                (self._next_seq(), utc_stamp(self._clock()), old["id"]),
            )
            self._db.execute("DELETE FROM facet_values WHERE record_id = ?", (old["id"],))
            self._mark_latest(old["dataset_id"])
        return True

    def optimize(self) -> None:
        """Merge the full-text index's segments into one (after a bulk load: fewer
        b-trees to read per query)."""
        with self._write():
            for table in (ALL_VERSIONS, LATEST_VERSIONS):
                self._db.execute(f"INSERT INTO {table} ({table}) VALUES ('optimize')")
        with self._lock:
            self._db.execute("PRAGMA optimize")

    # ---------------------------------------------------------------- reads

    def count(self, *, latest_only: bool = False) -> int:
        """Live (not deleted) versions indexed; with latest_only, datasets."""
        sql = "SELECT count(*) FROM records WHERE deleted = 0"
        if latest_only:
            sql += " AND is_latest = 1"
        with self._lock:
            return int(self._db.execute(sql).fetchone()[0])

    def get(self, doi: str) -> StoredRecord | None:
        """A version by its DOI (any spelling, any case), tombstones included."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE doi_key = ?",
                (normalize_doi(doi).lower(),),
            ).fetchone()
        return _stored(row) if row is not None else None

    def harvest(
        self,
        *,
        from_: str | None = None,
        until: str | None = None,
        after_seq: int = 0,
        limit: int = 100,
    ) -> list[StoredRecord]:
        """Versions (tombstones included) changed within [from_, until] (UTC stamps as
        `utc_stamp` writes them), in change order after `after_seq`: OAI-PMH's lists."""
        conds, params = self._harvest_conditions(from_, until)
        conds.append("seq > ?")
        params.append(after_seq)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_RECORD_COLUMNS} FROM records WHERE {' AND '.join(conds)} "
                "ORDER BY seq LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_stored(r) for r in rows]

    def harvest_count(self, *, from_: str | None = None, until: str | None = None) -> int:
        """How many versions (tombstones included) changed within [from_, until]."""
        conds, params = self._harvest_conditions(from_, until)
        with self._lock:
            return int(
                self._db.execute(
                    f"SELECT count(*) FROM records WHERE {' AND '.join(conds)}", params
                ).fetchone()[0]
            )

    @staticmethod
    def _harvest_conditions(from_: str | None, until: str | None) -> tuple[list[str], list[Any]]:
        conds: list[str] = ["1 = 1"]
        params: list[Any] = []
        if from_ is not None:
            conds.append("modified_at >= ?")
            params.append(from_)
        if until is not None:
            conds.append("modified_at <= ?")
            params.append(until)
        return conds, params

    def earliest_datestamp(self) -> str | None:
        """The oldest datestamp in the index (None when it is empty)."""
        with self._lock:
            value = self._db.execute("SELECT min(modified_at) FROM records").fetchone()[0]
        return str(value) if value is not None else None

    def search(
        self,
        query: str = "",
        facets: Mapping[str, Sequence[str]] | None = None,
        limit: int = 20,
        offset: int = 0,
        *,
        latest_only: bool = True,
        facet_counts: bool = True,
        max_facet_values: int = DEFAULT_FACET_VALUES,
    ) -> SearchResults:
        """Find dataset versions; one page of hits plus the facet counts of all matches.

        `query` is free text (see `compile_query`); blank lists everything, newest first;
        otherwise versions with a query word in the title or subjects come first, then
        the rest, each in BM25 order (title weighted highest).
        `facets` filters: values of one facet are alternatives (OR), facets combine with
        AND; values match case-insensitively. Only each dataset's latest version is
        searched unless `latest_only` is False. `max_facet_values` caps the values listed
        per facet; `facet_counts=False` skips counting them (a next page of the same
        query needs only hits), leaving `facets` empty.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise SearchIndexError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        if not 0 <= offset <= MAX_OFFSET:
            raise SearchIndexError(f"offset must be between 0 and {MAX_OFFSET}, got {offset}")
        filters = _facet_filters(facets)
        compiled = compile_query(query)
        table = LATEST_VERSIONS if latest_only else ALL_VERSIONS
        match = compiled.match if compiled is not None else None
        page: list[tuple[int, float | None]] = []
        total = 0
        counts: dict[str, list[FacetCount]] = {}
        snippets: dict[int, tuple[Snippet, ...]] = {}
        details: dict[int, sqlite3.Row] = {}
        # A query with characters but no words matches nothing, never everything.
        if compiled is not None or not query.strip():
            with self._read():
                arrays = self._facet_arrays()
                wanted = self._filter_values(arrays, filters)
                if wanted is not None:
                    selected = self._selected(arrays, table, match, wanted, latest_only)
                    total = int(np.count_nonzero(selected))
                    if facet_counts:
                        counts = arrays.counts(selected)
                    if total > offset and compiled is None:
                        page = [(i, None) for i in arrays.listing(selected, limit, offset)]
                    elif total > offset and compiled is not None:
                        page = self._page(table, compiled, wanted, limit, offset)
                        ids = [rid for rid, _ in page]
                        snippets = self._snippets(table, compiled.match, ids, compiled.prefix)
                    details = self._details([rid for rid, _ in page])
        hits = tuple(self._hit(details[rid], score, snippets.get(rid, ())) for rid, score in page)
        facet_lists: dict[str, tuple[FacetCount, ...]] = {}
        if facet_counts:
            facet_lists = {f: tuple(counts.get(f, [])[:max_facet_values]) for f in FACETS}
        return SearchResults(
            query=query,
            filters=filters,
            latest_only=latest_only,
            total=total,
            limit=limit,
            offset=offset,
            hits=hits,
            facets=facet_lists,
        )

    def _facet_arrays(self) -> _FacetArrays:
        """This reader's facet arrays, reloaded when the index changed since they were
        read (any write takes a new change number). A reload reads three strings."""
        head = int(self._db.execute("SELECT coalesce(max(seq), 0) FROM records").fetchone()[0])
        if self._arrays is not None and self._arrays.head == head:
            return self._arrays

        def ids(sql: str) -> np.ndarray:
            return _id_array(self._db.execute(sql).fetchone()[0])

        size = int(self._db.execute("SELECT coalesce(max(id), 0) + 1 FROM records").fetchone()[0])
        # Two aggregates of one statement see the rows in the same order: aligned arrays.
        live_ids, published = (
            _id_array(text)
            for text in self._db.execute(
                "SELECT group_concat(id), group_concat(CAST(strftime('%s', published_at) "
                "AS INTEGER)) FROM records WHERE deleted = 0"
            ).fetchone()
        )
        live = np.zeros(size, dtype=bool)
        live[live_ids] = True
        latest = np.zeros(size, dtype=bool)
        latest[ids("SELECT group_concat(id) FROM records WHERE is_latest = 1")] = True
        # One integer per pair (id * 2^32 + value id): a single string, split by numpy.
        pairs = ids("SELECT group_concat(record_id * 4294967296 + value_id) FROM facet_values")
        names: dict[int, tuple[str, str]] = {}
        lookup: dict[tuple[str, str], int] = {}
        for value_id, facet, key, value in self._db.execute(
            "SELECT id, facet, key, value FROM facet_dict"
        ):
            names[int(value_id)] = (facet, value)
            lookup[(facet, key)] = int(value_id)
        self._arrays = _FacetArrays(
            head=head,
            names=names,
            lookup=lookup,
            record=pairs >> 32,
            value=pairs & 0xFFFFFFFF,
            live=live,
            latest=latest,
            newest=live_ids[np.lexsort((-live_ids, -published))],
        )
        return self._arrays

    @staticmethod
    def _filter_values(
        arrays: _FacetArrays, filters: Mapping[str, tuple[str, ...]]
    ) -> list[list[int]] | None:
        """Each filtered facet's value ids; None when a facet has none of the values
        asked for (then nothing can match)."""
        wanted: list[list[int]] = []
        for facet, values in filters.items():
            ids = [
                arrays.lookup[k] for v in values if (k := (facet, v.casefold())) in arrays.lookup
            ]
            if not ids:
                return None
            wanted.append(ids)
        return wanted

    def _selected(
        self,
        arrays: _FacetArrays,
        table: str,
        match: str | None,
        wanted: list[list[int]],
        latest_only: bool,
    ) -> np.ndarray:
        """The matching versions as a flag per version id."""
        if match is None:
            selected = arrays.live.copy()
        else:
            ids = _id_array(
                self._db.execute(
                    f"SELECT group_concat(rowid) FROM {table} WHERE {table} MATCH ?", (match,)
                ).fetchone()[0]
            )
            selected = arrays.mask(ids) & arrays.live
        if latest_only:
            selected &= arrays.latest
        for value_ids in wanted:
            selected &= arrays.having(value_ids)
        return selected

    def _page(
        self,
        table: str,
        query: CompiledQuery,
        wanted: list[list[int]],
        limit: int,
        offset: int,
    ) -> list[tuple[int, float | None]]:
        """One page of version ids with their relevance.

        Text queries rank in two tiers: versions with a query word in the title or
        subjects, then the rest, each by BM25. That is what a reader of a catalog
        expects, and it keeps broad queries fast: "students" matches most versions
        somewhere in their column documentation, and BM25 costs about a microsecond
        per version it scores, while few versions have the word in their title. The
        second tier is scored only when the first runs out within the page.
        """
        match, head = query.match, query.head
        if head is None:
            return self._ranked(table, match, wanted, limit, offset)
        first = f"({match}) AND ({head})"
        rows = self._ranked(table, first, wanted, limit, offset)
        if len(rows) == limit:
            return rows
        # The first tier ends on this page (or before it): how many did it hold?
        held = offset + len(rows) if rows else self._count(table, first, wanted)
        rest = f"({match}) NOT ({head})"
        return rows + self._ranked(table, rest, wanted, limit - len(rows), max(0, offset - held))

    @staticmethod
    def _filter_sql(key: str, wanted: list[list[int]]) -> tuple[list[str], list[Any]]:
        """`key IN (versions holding one of the values)`, once per filtered facet: fixed
        SQL with a placeholder per value id."""
        conds: list[str] = []
        params: list[Any] = []
        for value_ids in wanted:
            marks = ", ".join("?" for _ in value_ids)
            conds.append(
                f"{key} IN (SELECT record_id FROM facet_values WHERE value_id IN ({marks}))"
            )
            params.extend(value_ids)
        return conds, params

    def _ranked(
        self, table: str, match: str, wanted: list[list[int]], limit: int, offset: int
    ) -> list[tuple[int, float | None]]:
        # `+rowid` keeps a facet filter from driving the query: the planner would walk
        # the filter's versions and run the full-text query once for each of them.
        conds, params = self._filter_sql("+rowid", wanted)
        rows = self._db.execute(
            f"SELECT rowid, bm25({table}, {_WEIGHTS}) AS score FROM {table} "
            f"WHERE {' AND '.join([f'{table} MATCH ?', *conds])} "
            "ORDER BY score, rowid DESC LIMIT ? OFFSET ?",
            (match, *params, limit, offset),
        ).fetchall()
        # bm25() is lower-is-better and negative; hits carry relevance, higher is better.
        return [(r[0], -float(r[1])) for r in rows]

    def _count(self, table: str, match: str, wanted: list[list[int]]) -> int:
        conds, params = self._filter_sql("+rowid", wanted)
        return int(
            self._db.execute(
                f"SELECT count(*) FROM {table} WHERE {' AND '.join([f'{table} MATCH ?', *conds])}",
                (match, *params),
            ).fetchone()[0]
        )

    def _snippets(
        self, table: str, match: str, ids: Sequence[int], prefix: bool
    ) -> dict[int, tuple[Snippet, ...]]:
        """Passages around the query's words for one page of hits, computed for these
        rows only. FTS5 looks each row up on its own, except for prefix queries: each
        lookup would expand the prefix again, so those walk the matches between the
        page's smallest and largest id once."""
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        where = f"{table} MATCH ?4 AND rowid IN ({marks})"
        bounds: tuple[int, ...] = ()
        if prefix:
            where = f"{table} MATCH ?4 AND rowid BETWEEN ?5 AND ?6 AND +rowid IN ({marks})"
            bounds = (min(ids), max(ids))
        calls = []
        for i, (name, _) in enumerate(_TEXT_COLUMNS):
            if name == "title":
                calls.append(f"highlight({table}, {i}, ?1, ?2)")
            else:
                calls.append(f"snippet({table}, {i}, ?1, ?2, ?3, 16)")
        rows = self._db.execute(
            f"SELECT rowid, {', '.join(calls)} FROM {table} WHERE {where}",
            (_MARK_OPEN, _MARK_CLOSE, _ELLIPSIS, match, *bounds, *ids),
        ).fetchall()
        out: dict[int, tuple[Snippet, ...]] = {}
        for row in rows:
            snippets = []
            for i, (name, _) in enumerate(_TEXT_COLUMNS):
                marked = row[i + 1] or ""
                if _MARK_OPEN not in marked:
                    continue
                text, spans = _parse_marked(marked)
                if spans:
                    snippets.append(Snippet(name, text, spans))
            out[row[0]] = tuple(snippets)
        return out

    def _details(self, ids: Sequence[int]) -> dict[int, sqlite3.Row]:
        if not ids:
            return {}
        marks = ", ".join("?" for _ in ids)
        rows = self._db.execute(
            "SELECT id, doi, dataset_id, version, concept_doi, published_at, is_latest, "
            f"datacite, extra FROM records WHERE id IN ({marks})",
            list(ids),
        ).fetchall()
        return {r["id"]: r for r in rows}

    @staticmethod
    def _hit(row: sqlite3.Row, score: float | None, snippets: tuple[Snippet, ...]) -> SearchHit:
        attrs = json.loads(row["datacite"])
        extra = json.loads(row["extra"])
        return SearchHit(
            doi=row["doi"],
            dataset_id=row["dataset_id"],
            version=row["version"],
            title=_main_title(attrs),
            description=_abstract(attrs),
            creators=tuple(_texts(attrs.get("creators"), "name")),
            publisher=_publisher(attrs),
            year=_year(attrs, row["published_at"]),
            subjects=tuple(_dedupe(_texts(attrs.get("subjects"), "subject"))),
            licences=tuple(_licences(attrs)),
            grade_levels=tuple(extra.get("grade_levels") or ()),
            concept_doi=row["concept_doi"],
            published_at=row["published_at"],
            latest=bool(row["is_latest"]),
            score=score,
            snippets=snippets,
        )
