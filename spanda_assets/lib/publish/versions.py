"""Published versions of declared datasets: when a new one is made, and how it is made safe.

A dataset gets a new version when its table's data changed since the last version
(`export.content_digest`, blind to row order), never merely because a run happened.
Making a version takes several steps that cannot share one transaction: files, an
Iceberg tag, DataCite metadata, two DOIs, the catalog record. The record is written
first as `pending` (with the snapshot it is about), the snapshot is tagged next, and
the record is marked `published` last, so a run that died after the tag is finished by
the next run with the same snapshot, the same version number and the same DOI. A
version DOI therefore never comes to point at other bytes, even when the table moved
on in between. One writer per dataset at a time (a file lock; `spanda erase` takes it
too, to withdraw versions that hold an erased student).

The Iceberg tag `publish/<dataset>/v<N>` keeps the version's snapshot from snapshot
expiry (`lib/writes/expiry.py` protects every ref): a version DOI can be served from
the table itself, not only from the files written here.

Readers read main only, as everywhere: the version is made from main's head, which
passed its table's audit before it got there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spanda_assets import settings
from spanda_assets.lib import writes
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.publish import datacite, doi
from spanda_assets.lib.publish.datasets import DatasetDeclaration
from spanda_assets.lib.publish.export import Export, export_snapshot, remove_staging
from spanda_assets.lib.publish.search import SearchIndex, default_path
from spanda_assets.lib.writes import MAIN

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

ENV_PUBLIC_URL = "SPANDA_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
VERSIONS_FILE = "versions.json"

Status = Literal["pending", "published", "withdrawn"]
PUBLISH_TAG_PREFIX = "publish/"
Action = Literal["published", "resumed", "unchanged", "no_table", "empty"]


class PublishError(SpandaError):
    """A version could not be made; names the dataset, the version and what to do."""


@dataclass
class PublishedVersion:
    """One version of a dataset as the catalog records it."""

    dataset_id: str
    version: int
    doi: str
    concept_doi: str
    table: str
    snapshot_id: int
    status: Status
    created: str  # ISO date the version was made
    content_digest: str = ""
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    distributions: list[dict[str, Any]] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # DataCite 4.5 JSON
    withdrawn_reason: str = ""

    @property
    def tag(self) -> str:
        return version_tag(self.dataset_id, self.version)

    @property
    def byte_size(self) -> int:
        return sum(int(d["size"]) for d in self.distributions)


@dataclass
class DatasetState:
    """Every version of one dataset, and the last snapshot found to hold no new data."""

    dataset_id: str
    versions: list[PublishedVersion] = field(default_factory=list)
    unchanged_snapshot_id: int | None = None
    concept_stale: bool = False  # a version was withdrawn since the concept's last release

    @property
    def published(self) -> list[PublishedVersion]:
        return [v for v in self.versions if v.status == "published"]

    @property
    def pending(self) -> PublishedVersion | None:
        return next((v for v in self.versions if v.status == "pending"), None)

    @property
    def latest(self) -> PublishedVersion | None:
        done = self.published
        return done[-1] if done else None


@dataclass(frozen=True)
class PublishOutcome:
    dataset_id: str
    action: Action
    version: PublishedVersion | None
    note: str


def version_tag(dataset_id: str, version: int) -> str:
    return f"{PUBLISH_TAG_PREFIX}{dataset_id}/v{version}"


def withdraw_version(tag: str, reason: str, store: VersionStore | None = None) -> bool:
    """Withdraw the version `tag` names (`publish/<id>/v<N>`): its files are deleted and
    its record says why. Its number is never given again; its DOI stays registered (a
    DOI is permanent) and resolves to a tombstone page (HTTP 410 with the metadata and
    the reason); the next publish run hides it at the provider. False if no such
    version."""
    _, dataset_id, number = tag.split("/", 2)
    store = store or VersionStore(publish_root())
    with store.locked(dataset_id):
        state = store.load(dataset_id)
        version = next((v for v in state.versions if f"v{v.version}" == number), None)
        if version is None:
            return False
        directory = store.directory(dataset_id, version.version)
        shutil.rmtree(directory, ignore_errors=True)
        remove_staging(directory)
        version.status = "withdrawn"
        version.withdrawn_reason = reason
        state.concept_stale = True  # the next publish run re-releases the concept's list
        store.save(state)
    _unindex(version.doi)
    return True


def _unindex(version_doi: str) -> None:
    if default_path().exists():
        with SearchIndex.open_default() as index:
            index.delete(version_doi)


def publish_root() -> Path:
    """Where versions' files and records live: SPANDA_HOME/publish."""
    return settings.spanda_home() / "publish"


def public_url() -> str:
    """The HTTP API's public base URL, which landing pages and DOIs resolve to."""
    return (os.environ.get(ENV_PUBLIC_URL) or DEFAULT_PUBLIC_URL).rstrip("/")


def landing_url(dataset_id: str, version: int | None = None) -> str:
    base = f"{public_url()}/datasets/{dataset_id}"
    return base if version is None else f"{base}/versions/{version}"


class VersionStore:
    """The catalog's record of versions: one JSON file per dataset under `root/<id>/`,
    replaced atomically (write a temporary file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, dataset_id: str) -> Path:
        return self.root / dataset_id / VERSIONS_FILE

    def directory(self, dataset_id: str, version: int) -> Path:
        return self.root / dataset_id / f"v{version}"

    def load(self, dataset_id: str) -> DatasetState:
        path = self.path(dataset_id)
        if not path.is_file():
            return DatasetState(dataset_id)
        try:
            raw = json.loads(path.read_text())
            versions = [PublishedVersion(**v) for v in raw.get("versions", [])]
        except (ValueError, TypeError) as exc:
            raise PublishError(
                f"{path} is not a version record this release can read ({exc}); restore it "
                "from backup: it is the catalog's only list of published versions"
            ) from exc
        return DatasetState(
            dataset_id,
            versions,
            raw.get("unchanged_snapshot_id"),
            bool(raw.get("concept_stale", False)),
        )

    def save(self, state: DatasetState) -> None:
        path = self.path(state.dataset_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = {
            "dataset_id": state.dataset_id,
            "unchanged_snapshot_id": state.unchanged_snapshot_id,
            "concept_stale": state.concept_stale,
            "versions": [asdict(v) for v in state.versions],
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".versions.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself survives a power loss
            finally:
                os.close(dir_fd)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def locked(self, dataset_id: str) -> Iterator[None]:
        """One writer of a dataset's versions at a time, across processes (a publish run,
        `spanda erase`): an exclusive lock on `<id>/.lock`, held from load to save."""
        path = self.root / dataset_id / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def datasets(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{VERSIONS_FILE}"))


def _tag_snapshot(table: Table, tag: str, snapshot_id: int) -> None:
    try:
        writes.keep_snapshot(table, tag, snapshot_id)
    except ValueError as exc:
        raise PublishError(f"{exc}; find out who set it before publishing") from exc


def _distributions(export: Export, dataset_id: str, version: int) -> list[dict[str, Any]]:
    base = landing_url(dataset_id, version)
    return [{**d.to_dict(), "url": f"{base}/data?format={d.format}"} for d in export.distributions]


def _facts(
    record: PublishedVersion, previous: str | None, following: str | None
) -> datacite.VersionFacts:
    return datacite.VersionFacts(
        version=record.version,
        doi=record.doi,
        concept_doi=record.concept_doi,
        table=record.table,
        snapshot_id=record.snapshot_id,
        published=dt.date.fromisoformat(record.created),
        row_count=record.rows,
        byte_size=record.byte_size,
        distributions=tuple(
            datacite.Distribution(
                name=d["file_name"],
                media_type=d["media_type"],
                sha256=d["sha256"],
                byte_size=int(d["size"]),
                url=d.get("url"),
            )
            for d in record.distributions
        ),
        previous_doi=previous,
        next_doi=following,
        sources=tuple(
            datacite.SourceSnapshot(s["table"], s.get("snapshot_id"), s.get("doi"))
            for s in record.sources
        ),
        url=landing_url(record.dataset_id, record.version),
    )


def concept_metadata(dataset: DatasetDeclaration, state: DatasetState) -> dict[str, Any]:
    """The concept DOI's DataCite record over the published versions of `state` (at least
    one): what the provider holds and what the concept's landing page shows."""
    done = state.published
    concept = datacite.ConceptFacts(
        concept_doi=done[0].concept_doi,
        version_dois=tuple(v.doi for v in done),
        first_published=dt.date.fromisoformat(done[0].created),
        last_updated=dt.date.fromisoformat(done[-1].created),
        url=landing_url(dataset.id),
    )
    return datacite.build_concept_metadata(dataset, concept)


def _release_concept(
    provider: doi.DoiProvider, dataset: DatasetDeclaration, state: DatasetState
) -> None:
    metadata = concept_metadata(dataset, state)
    doi.release(provider, state.published[0].concept_doi, metadata, landing_url(dataset.id))


def _hide_withdrawn(provider: doi.DoiProvider, state: DatasetState) -> None:
    """Hide each withdrawn version's DOI that the provider still lists as findable.
    Done by the publish run, not by the erasure itself, so an erasure never waits on (or
    fails with) the DOI provider; the run retries until the provider agrees."""
    for version in state.versions:
        if version.status != "withdrawn":
            continue
        current = provider.resolve(version.doi)
        if current is not None and current.state == "findable":
            url = landing_url(version.dataset_id, version.version)
            provider.hide(version.doi, version.metadata, url)


def publish_dataset(
    catalog: Catalog,
    dataset: DatasetDeclaration,
    provider: doi.DoiProvider,
    store: VersionStore,
    *,
    sources: Iterable[str] = (),
    today: dt.date | None = None,
    on_step: Callable[[str], None] | None = None,
) -> PublishOutcome:
    """Make a new version of `dataset` when its table's main holds new data; finish a
    version a crashed run left pending. `sources` are the tables the dataset derives
    from (IsDerivedFrom, at their current main snapshot). `on_step` is called after
    each step (tests use it to crash between steps). One run per dataset at a time:
    the dataset's lock is held throughout (`spanda erase` waits for it)."""
    table = load_table_or_none(catalog, *dataset.identifier)
    if table is None:
        return PublishOutcome(dataset.id, "no_table", None, f"{dataset.table} does not exist yet")
    with store.locked(dataset.id):
        state = store.load(dataset.id)
        if state.concept_stale:
            # a version was withdrawn (an erasure): its DOI leaves the index (it still
            # resolves, to the tombstone page) and the concept lists what is left
            _hide_withdrawn(provider, state)
            if state.published:
                _release_concept(provider, dataset, state)
            state.concept_stale = False
            store.save(state)
        return _publish_locked(
            catalog, table, dataset, provider, store, state, sources, today, on_step
        )


def _publish_locked(
    catalog: Catalog,
    table: Table,
    dataset: DatasetDeclaration,
    provider: doi.DoiProvider,
    store: VersionStore,
    state: DatasetState,
    sources: Iterable[str],
    today: dt.date | None,
    on_step: Callable[[str], None] | None,
) -> PublishOutcome:
    step = on_step or (lambda _name: None)
    record = state.pending
    action: Action = "resumed" if record is not None else "published"
    if record is None:
        head = table.snapshot_by_name(MAIN)
        if head is None:
            return PublishOutcome(dataset.id, "empty", None, f"{dataset.table} has no rows yet")
        latest = state.latest
        if latest is not None and latest.snapshot_id == head.snapshot_id:
            return PublishOutcome(dataset.id, "unchanged", latest, "same snapshot as the latest")
        if state.unchanged_snapshot_id == head.snapshot_id:
            return PublishOutcome(dataset.id, "unchanged", latest, "checked before: no new data")
        # never a number given before, withdrawn ones included
        number = max((v.version for v in state.versions), default=0) + 1
        record = PublishedVersion(
            dataset_id=dataset.id,
            version=number,
            doi=provider.version_doi(dataset.id, number),
            concept_doi=provider.concept_doi(dataset.id),
            table=dataset.table,
            snapshot_id=head.snapshot_id,
            status="pending",
            created=(today or dt.date.today()).isoformat(),
            sources=_source_snapshots(catalog, sources),
        )
        state.versions.append(record)
        store.save(state)
        step("pending")
    if table.snapshot_by_id(record.snapshot_id) is None:
        # expired between the journal and the tag (the only window without a tag): no
        # file or DOI can exist yet, so the number is given up and the next run starts anew
        record.status = "withdrawn"
        record.withdrawn_reason = "its snapshot expired before it was tagged"
        store.save(state)
        return PublishOutcome(dataset.id, "unchanged", state.latest, record.withdrawn_reason)

    # Tagged first: from here expiry keeps the rows, and an erasure finds the version.
    _tag_snapshot(table, record.tag, record.snapshot_id)
    step("tag")
    directory = store.directory(dataset.id, record.version)
    columns = list(dataset.columns) or None
    export = export_snapshot(
        table, record.snapshot_id, directory, f"{dataset.id}-v{record.version}", columns
    )
    step("files")
    latest = state.latest
    same = latest is not None and export.content_digest == latest.content_digest
    if (same or export.rows == 0) and provider.resolve(record.doi) is None:
        # New snapshot, same data (a compaction, an empty publish), or no rows at all,
        # and no DOI asked for yet: no version. The snapshot is remembered so the next
        # run does not read it again.
        shutil.rmtree(directory, ignore_errors=True)
        writes.release_snapshot(table, record.tag)
        state.versions.remove(record)
        state.unchanged_snapshot_id = record.snapshot_id
        store.save(state)
        if not same:
            return PublishOutcome(dataset.id, "empty", latest, f"{dataset.table} has no rows")
        return PublishOutcome(
            dataset.id, "unchanged", latest, f"snapshot {record.snapshot_id} holds the same data"
        )
    record.content_digest = export.content_digest
    record.rows = export.rows
    record.columns = list(export.columns)
    record.distributions = _distributions(export, dataset.id, record.version)
    previous = latest.doi if latest is not None else None
    record.metadata = datacite.build_version_metadata(dataset, _facts(record, previous, None))
    store.save(state)
    doi.release(provider, record.doi, record.metadata, landing_url(dataset.id, record.version))
    step("doi")
    if latest is not None:
        # The previous version now has a successor. Its record is the one it was
        # published with, plus IsPreviousVersionOf: a later change of the declaration
        # (a licence, a title) never rewrites what an older version was released under.
        latest.metadata = _with_successor(latest.metadata, record.doi)
        store.save(state)
        doi.release(provider, latest.doi, latest.metadata, landing_url(dataset.id, latest.version))
        step("previous")
    record.status = "published"
    state.unchanged_snapshot_id = None
    _release_concept(provider, dataset, state)
    state.concept_stale = False
    store.save(state)
    step("published")
    return PublishOutcome(dataset.id, action, record, f"version {record.version}: {record.doi}")


def _with_successor(metadata: dict[str, Any], successor: str) -> dict[str, Any]:
    related = [
        r
        for r in metadata.get("relatedIdentifiers", [])
        if r["relationType"] != "IsPreviousVersionOf"
    ]
    related.append(
        {
            "relatedIdentifier": successor,
            "relatedIdentifierType": "DOI",
            "relationType": "IsPreviousVersionOf",
        }
    )
    updated = {**metadata, "relatedIdentifiers": related}
    datacite.validate_metadata(updated)
    return updated


def _source_snapshots(catalog: Catalog, sources: Iterable[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in sources:
        namespace, _, table_name = name.partition(".")
        table = load_table_or_none(catalog, namespace, table_name)
        head = table.snapshot_by_name(MAIN) if table is not None else None
        out.append({"table": name, "snapshot_id": head.snapshot_id if head else None})
    return out
