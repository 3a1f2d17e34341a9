"""FAIR publication: each declared dataset (config/datasets.yaml) as an asset of its own.

`publish/<dataset>` turns its table's main (audited, so publishable) into a new
version with a DOI when the data changed since the last version: files written from
the exact snapshot with their SHA-256, an Iceberg tag that keeps the snapshot, DataCite
4.5 metadata validated against DataCite's schema, a version DOI linked to the concept
DOI and to its neighbours (lib/publish/versions.py). Nothing new, nothing made.

It runs daily under the daemon, after its table's blocking checks passed, and in the
`publish_datasets` job that `spanda demo` runs after the chain. Its checks read what
was published back: the metadata against the schema, the DOIs at the provider.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.automation.policies import at_cron_if_changed
from spanda_assets.resources import LakehouseResource

PUBLISH_GROUP = "publish"
OWNERS = ["team:data-stewards"]
# daily, after the nightly training (SPANDA_TRAIN_CRON)
PUBLISH_CRON = settings.cron(settings.ENV_PUBLISH_CRON, settings.DEFAULT_PUBLISH_CRON)
# What is handed out (versions, exports): de-identified rows, once a day under the
# daemon, and only after the tables they read passed their blocking checks.
PUBLISHED_TAGS = {"spanda/layer": "publish", "spanda/pii": "de-identified"}


def on_publish_cron() -> dg.AutomationCondition:
    return at_cron_if_changed(PUBLISH_CRON)


def publish_key(dataset_id: str) -> dg.AssetKey:
    return dg.AssetKey(["publish", dataset_id])


def _declared() -> list[Any]:
    from spanda_assets.lib.publish.datasets import load_datasets

    return load_datasets()


def _sources(context: dg.AssetExecutionContext, table_key: dg.AssetKey) -> list[str]:
    """The silver and gold tables the dataset's table is built from (IsDerivedFrom)."""
    graph = context.job_def.asset_layer.asset_graph
    if not graph.has(table_key):
        return []
    return sorted(
        ".".join(k.path)
        for k in graph.get(table_key).parent_keys
        if len(k.path) == 2 and k.path[0] in ("silver", "gold")
    )


def build_publish_asset(dataset: Any) -> dg.AssetsDefinition:
    key = publish_key(dataset.id)
    table_key = dg.AssetKey(list(dataset.identifier))

    @dg.asset(
        key=key,
        deps=[table_key],
        group_name=PUBLISH_GROUP,
        kinds={"iceberg", "datacite"},
        owners=OWNERS,
        tags=PUBLISHED_TAGS,
        automation_condition=on_publish_cron(),
        check_specs=[
            dg.AssetCheckSpec(
                "metadata_valid",
                asset=key,
                description=(
                    "The latest version's and the concept's DataCite 4.5 metadata validate "
                    "against DataCite's JSON schema."
                ),
            ),
            dg.AssetCheckSpec(
                "doi_resolvable",
                asset=key,
                description=(
                    "The latest version DOI and the concept DOI resolve at the DOI provider, "
                    "findable, to this dataset's landing pages."
                ),
            ),
            dg.AssetCheckSpec(
                "landing_page_jsonld",
                asset=key,
                description=(
                    "Each published version's landing page and the concept's, rendered as "
                    "the HTTP API serves them, embed one schema.org Dataset JSON-LD that "
                    "parses, names its DOI, licence, creators and keywords, and lists each "
                    "file with the SHA-256 the DOI's metadata gives."
                ),
            ),
        ],
        description=(
            f"**{dataset.title}**, published from `{dataset.table}` with a DOI per "
            "version and one concept DOI.\n\n"
            f"{dataset.description}\n\n"
            "A new version is made only when the table's data changed since the last one "
            "(an order-blind digest of its rows); each version's Parquet and CSV are written "
            "from the exact Iceberg snapshot, which an Iceberg tag keeps, with their SHA-256 "
            f"in the metadata. Licence {dataset.licence.id}; access under the data use "
            f"agreement {dataset.dua.id}. Daily ({PUBLISH_CRON} UTC) under the daemon, "
            "after the table's blocking checks passed."
        ),
    )
    def _publish(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator[Any]:
        from spanda_assets.lib.publish.doi import provider_from_env
        from spanda_assets.lib.publish.versions import (
            VersionStore,
            landing_url,
            publish_dataset,
            publish_root,
        )

        provider = provider_from_env()
        store = VersionStore(publish_root())
        outcome = publish_dataset(
            lakehouse.catalog(),
            dataset,
            provider,
            store,
            sources=_sources(context, table_key),
        )
        context.log.info(f"{dataset.id}: {outcome.action} ({outcome.note})")
        version = outcome.version
        state = store.load(dataset.id)  # once, for the metadata and the checks
        md: dict[str, Any] = {
            "outcome": outcome.action,
            "note": outcome.note,
            "table": dataset.table,
            "concept_doi": provider.concept_doi(dataset.id),
            "versions": len(state.published),
            "landing_page": dg.MetadataValue.url(landing_url(dataset.id)),
        }
        if version is not None:
            md |= {
                "version": version.version,
                "doi": version.doi,
                "snapshot_id": str(version.snapshot_id),
                "iceberg_tag": version.tag,
                "rows": version.rows,
                "bytes": version.byte_size,
                "sha256": dg.MetadataValue.json(
                    {d["file_name"]: d["sha256"] for d in version.distributions}
                ),
                "content_digest": version.content_digest,
                "files": dg.MetadataValue.path(str(store.directory(dataset.id, version.version))),
            }
        yield dg.MaterializeResult(metadata=md)
        yield from _checks(dataset, provider, state)

    return _publish


def _checks(dataset: Any, provider: Any, state: Any) -> Iterator[dg.AssetCheckResult]:
    from spanda_assets.lib.publish.datacite import metadata_problems
    from spanda_assets.lib.publish.versions import landing_url

    latest = state.latest
    if latest is None:
        for name in ("metadata_valid", "doi_resolvable", "landing_page_jsonld"):
            yield dg.AssetCheckResult(
                check_name=name, passed=True, metadata={"note": "nothing published yet"}
            )
        return
    # the records as released (the provider's copy carries fields of its own)
    problems = [
        f"v{v.version}: {p}" for v in state.published for p in metadata_problems(v.metadata)
    ]
    yield dg.AssetCheckResult(
        check_name="metadata_valid",
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "versions_checked": len(state.published),
            "problems": dg.MetadataValue.json(problems),
        },
    )
    found = {d: provider.resolve(d) for d in (latest.doi, latest.concept_doi)}
    expected = {
        latest.doi: landing_url(dataset.id, latest.version),
        latest.concept_doi: landing_url(dataset.id),
    }
    bad = {
        d: ("missing" if r is None else f"{r.state}, resolves to {r.url}")
        for d, r in found.items()
        if r is None or r.state != "findable" or r.url != expected[d]
    }
    concept = found[latest.concept_doi]
    if concept is not None:
        listed = {
            str(r.get("relatedIdentifier", "")).lower()
            for r in concept.attributes.get("relatedIdentifiers") or []
            if r.get("relationType") == "HasVersion"
        }
        published = {v.doi.lower() for v in state.published}
        if listed != published:
            bad[latest.concept_doi] = (
                f"lists versions {sorted(listed)}, published are {sorted(published)}"
            )
    yield dg.AssetCheckResult(
        check_name="doi_resolvable",
        passed=not bad,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "provider": type(provider).__name__,
            "dois": dg.MetadataValue.json(sorted(found)),
            "problems": dg.MetadataValue.json(bad),
        },
    )
    yield _jsonld_check(dataset, state)


_JSONLD_KEYS = ("name", "description", "identifier", "creator", "license", "keywords")


def _jsonld_problems(html: str, doi: str, files: dict[str, str]) -> list[str]:
    from spanda_assets.api.landing import embedded_json_ld

    try:
        documents = embedded_json_ld(html)
    except ValueError as exc:
        return [str(exc)]
    datasets = [d for d in documents if isinstance(d, dict) and d.get("@type") == "Dataset"]
    if len(datasets) != 1:
        return [f"{len(datasets)} schema.org Dataset documents on the page, not 1"]
    (doc,) = datasets
    problems = [f"no {k!r}" for k in _JSONLD_KEYS if not doc.get(k)]
    if doc.get("@context") not in ("https://schema.org", "https://schema.org/"):
        problems.append(f"@context is {doc.get('@context')!r}, not https://schema.org")
    if doc.get("identifier") != f"https://doi.org/{doi}":
        problems.append(f"identifier {doc.get('identifier')!r} is not the DOI {doi}")
    listed = {d.get("name"): d.get("sha256") for d in doc.get("distribution") or []}
    if files and listed != files:
        problems.append(f"distribution lists {listed}, the metadata {files}")
    return problems


def _jsonld_check(dataset: Any, state: Any) -> dg.AssetCheckResult:
    from spanda_assets.api.app import landing_html

    problems: dict[str, list[str]] = {}
    pages = [(v.version, v.doi, {d["file_name"]: d["sha256"] for d in v.distributions})
             for v in state.published]  # fmt: skip
    latest = state.latest
    pages.append(
        (None, latest.concept_doi, {d["file_name"]: d["sha256"] for d in latest.distributions})
    )
    for version, doi, files in pages:
        found = _jsonld_problems(landing_html(dataset, state, version), doi, files)
        if found:
            problems["concept" if version is None else f"v{version}"] = found
    return dg.AssetCheckResult(
        check_name="landing_page_jsonld",
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"pages_checked": len(pages), "problems": dg.MetadataValue.json(problems)},
    )


SEARCH_INDEX_KEY = dg.AssetKey(["publish", "search_index"])


def index_records(datasets: list[Any], states: dict[str, Any]) -> list[Any]:
    """One search record per published version of every declared dataset."""
    from spanda_assets.lib.publish.search import ColumnDoc, IndexRecord

    return [
        IndexRecord(
            datacite=v.metadata,
            dataset_id=d.id,
            version=v.version,
            published_at=v.created,
            columns=tuple(ColumnDoc(c, d.columns.get(c, "")) for c in v.columns),
            grade_levels=tuple(d.grade_levels),
            concept_doi=v.concept_doi,
        )
        for d in datasets
        for v in states[d.id].published
    ]


def build_search_index_asset(datasets: list[Any]) -> dg.AssetsDefinition:
    @dg.asset(
        key=SEARCH_INDEX_KEY,
        deps=[publish_key(d.id) for d in datasets],
        group_name=PUBLISH_GROUP,
        kinds={"sqlite"},
        owners=OWNERS,
        tags={"spanda/layer": "publish", "spanda/pii": "none"},
        automation_condition=dg.AutomationCondition.eager(),
        check_specs=[
            dg.AssetCheckSpec(
                "every_version_indexed",
                asset=SEARCH_INDEX_KEY,
                description="Every published version of every declared dataset is in the "
                "search index, under its DOI.",
            )
        ],
        description=(
            "The search index over published versions' metadata (SQLite FTS5 under "
            "SPANDA_HOME): titles, descriptions, subjects, column names and descriptions, "
            "creators, licence; BM25 ranking with facets (subject, licence, grade level, "
            "year) and snippets. `spanda search` reads it. Metadata only: no value of any "
            "row. Re-indexing an unchanged version writes nothing; it runs after any "
            "dataset published a version."
        ),
    )
    def _index() -> Iterator[Any]:
        from spanda_assets.lib.publish.search import SearchIndex, normalize_doi
        from spanda_assets.lib.publish.versions import VersionStore, publish_root

        store = VersionStore(publish_root())
        states = {d.id: store.load(d.id) for d in datasets}  # each record file read once
        records = index_records(datasets, states)
        withdrawn = [v.doi for s in states.values() for v in s.versions if v.status == "withdrawn"]
        with SearchIndex.open_default() as index:
            changed = index.upsert_many(records)
            removed = sum(index.delete(doi) for doi in withdrawn)
            # both ways: every published version is found, and nothing else is
            indexed = {
                normalize_doi(r.doi) for r in index.harvest(limit=1_000_000_000) if not r.deleted
            }
        published = {normalize_doi(str(r.datacite["doi"])) for r in records}
        missing, extra = sorted(published - indexed), sorted(indexed - published)
        yield dg.MaterializeResult(
            metadata={
                "versions_published": len(records),
                "records_changed": changed,
                "withdrawn_removed": removed,
                "records_in_index": len(indexed),
            }
        )
        yield dg.AssetCheckResult(
            check_name="every_version_indexed",
            passed=not missing and not extra,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "missing": dg.MetadataValue.json(missing),
                "not_published": dg.MetadataValue.json(extra),
                "indexed": len(indexed),
            },
        )

    return _index


publish_job = dg.define_asset_job(
    name="publish_datasets",
    selection=dg.AssetSelection.groups(PUBLISH_GROUP),
    # the group holds the export assets too (defs/publish/exports.py: export/oneroster,
    # export/xapi), so this job writes them when their gold tables changed
    description="A new version (files, DataCite metadata, DOIs) of every declared dataset "
    "whose table changed since its last version, and new OneRoster and xAPI exports "
    "when their gold tables changed.",
)


@dg.definitions
def defs() -> dg.Definitions:
    # a datasets file that does not validate stops the code location with its error list
    datasets = _declared()
    return dg.Definitions(
        assets=[*(build_publish_asset(d) for d in datasets), build_search_index_asset(datasets)],
        jobs=[publish_job],
    )
