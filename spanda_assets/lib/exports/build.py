"""One export run: read the sources' main snapshots, write, audit, put in place, prune.

An export is made only when its key changes. The key is a digest of the sources'
main snapshot ids, the export format version (`FORMAT_VERSION`, raised whenever the
mapping changes), the public URL statements are written under and the dataset
description (declared licences, creators, ...): the same key means the same bytes.
A run whose key is the latest export's does nothing ("unchanged").

Write-audit-publish, as for the tables: the package is written into a staging
folder and checked there by the platform's own validator (`lib/submissions/validate`,
the code behind `spanda validate`); only a package with zero errors is moved into
place (store.py says how). A package that fails is deleted and the previous export
stays what readers get ("rejected").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from spanda_assets.lib.exports import oneroster, store, xapi
from spanda_assets.lib.exports.common import ExportError
from spanda_assets.lib.exports.store import ExportFile, ExportInfo
from spanda_assets.lib.files import file_digest
from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.publish.datasets import DatasetDeclaration, load_datasets
from spanda_assets.lib.publish.export import snapshot_batches
from spanda_assets.lib.publish.versions import public_url
from spanda_assets.lib.submissions.validate import IGNORE_FILE, Report, validate
from spanda_assets.lib.writes import MAIN

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

FORMAT_VERSION = 1
# table -> columns read, per kind (the tables are store.EXPORT_SOURCES, which readers see)
SOURCES: dict[str, dict[str, tuple[str, ...]]] = {
    "oneroster": oneroster.SOURCES,
    "xapi": xapi.SOURCES,
}
TITLES = {"oneroster": "OneRoster 1.1 CSV roster", "xapi": "xAPI 1.0.3 learning events"}
MEDIA_TYPES = {
    ".csv": "text/csv",
    ".jsonl": "application/x-ndjson",
    ".json": "application/json",
}
DESCRIPTION_FILE = "dataset_description.json"
CONSENT_BASIS = (
    "Informed consent (ISO/IEC TS 27560 consent records): only rows of students with "
    "active consent for model training and research reach the gold tables this export "
    "is read from; a withdrawal or an erasure removes them from gold, and the next "
    "export (which replaces this one) leaves them out."
)

Action = Literal["exported", "unchanged", "recovered", "no_source", "rejected"]


@dataclass(frozen=True)
class Source:
    """A table as the export reads it: its main snapshot, fixed for the whole run."""

    name: str  # <namespace>.<table>
    table: Table
    snapshot_id: int
    timestamp_ms: int
    columns: tuple[str, ...]

    def batches(self) -> Iterator[pa.RecordBatch]:
        return snapshot_batches(self.table, self.snapshot_id, self.columns)


@dataclass
class ExportOutcome:
    """What one run did, for the asset's metadata and log."""

    kind: str
    action: Action
    note: str
    info: ExportInfo | None = None  # the export readers get after the run
    key: str | None = None
    sources: dict[str, int] = field(default_factory=dict)
    report: Report | None = None  # the audit of a package written in this run
    rows: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)  # older exports deleted
    staging_removed: int = 0  # leftovers of crashed runs deleted


def build_export(
    kind: str,
    catalog: Catalog,
    *,
    root: Path | None = None,
    datasets: list[DatasetDeclaration] | None = None,
    home_page: str | None = None,
    now: dt.datetime | None = None,
    run_keys: int = 1_000_000,
) -> ExportOutcome:
    """Make the `kind` export from its sources' main snapshots, unless it exists already.

    `root` defaults to SPANDA_HOME/exports, `datasets` to the declared datasets,
    `home_page` to SPANDA_PUBLIC_URL, `now` (export.json's `created`) to the clock;
    `run_keys` bounds the users' external sort (lib/exports/spill.py). One run per
    kind at a time: the kind's lock is held throughout."""
    directory = store.kind_dir(kind, root)
    with store.locked(directory):
        stale = store.remove_staging(directory)
        sources = _sources(kind, catalog)
        if isinstance(sources, str):
            return ExportOutcome(kind, "no_source", sources, staging_removed=stale)
        snapshots = {s.name: s.snapshot_id for s in sources}
        declared = _declared(sources, datasets if datasets is not None else load_datasets())
        home = (home_page or public_url()).rstrip("/")
        description = _description(kind, sources, declared, home)
        key = _key(kind, snapshots, description, home)
        description = {**description, "Identifier": f"urn:spanda:export:{kind}:{key}"}
        outcome = ExportOutcome(
            kind, "unchanged", "", key=key, sources=snapshots, staging_removed=stale
        )
        target = directory / key
        current = store.read_pointer(directory)
        if (target / store.MANIFEST_NAME).is_file():
            # the same key: the same sources and mapping, so the same bytes
            outcome.info = store.load_info(target)
            if current == key:
                outcome.note = "the sources' main snapshots are the ones already exported"
            else:
                # moved into place by a run that crashed before it was pointed to
                outcome.action = "recovered"
                outcome.note = "an export of these snapshots was in place but not yet current"
                store.write_pointer(directory, key)
            outcome.removed = store.prune(directory, keep=key)
            return outcome
        if target.exists():  # not a complete export (cannot happen by rename): rebuild
            shutil.rmtree(target)
        work = directory / f"{store.STAGING_PREFIX}{key}-{uuid.uuid4().hex}"
        package = work / "package"
        package.mkdir(parents=True)
        try:
            outcome.rows, outcome.skipped = _write(
                kind, sources, package, work, home, str(description["Publisher"]), run_keys
            )
            _write_json(package / DESCRIPTION_FILE, description)
            # export.json is the platform's record, not part of the package
            (package / IGNORE_FILE).write_text(f"{store.MANIFEST_NAME}\n", encoding="utf-8")
            report = validate(package)
            outcome.report = report
            if not report.valid:
                outcome.action = "rejected"
                outcome.note = (
                    f"the package failed validation ({len(report.errors)} error(s)); "
                    "the previous export stays current"
                )
                outcome.info = _current(directory)
                return outcome
            info = _info(kind, key, target, package, outcome, declared, report, now)
            _write_json(package / store.MANIFEST_NAME, info.to_dict())
            for path in package.iterdir():
                store.fsync_path(path)
            store.fsync_path(package)
            package.rename(target)
            store.fsync_path(directory)
            store.write_pointer(directory, key)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        outcome.removed = store.prune(directory, keep=key)
        outcome.action = "exported"
        outcome.info = info
        outcome.note = f"written from {len(sources)} table(s): " + ", ".join(
            f"{name}@{snap}" for name, snap in snapshots.items()
        )
        return outcome


def issue_counts(report: Report) -> tuple[dict[str, int], dict[str, int]]:
    """(errors, warnings) per code, counting the issues a report lists and those it only
    counts (beyond 50 per code and file). Codes and counts only: an issue's message may
    quote a value."""
    counts: dict[str, dict[str, int]] = {"error": {}, "warning": {}}
    severity: dict[str, str] = {}
    for issue in report.issues:
        severity[issue.code] = issue.severity
        bucket = counts.setdefault(issue.severity, {})
        bucket[issue.code] = bucket.get(issue.code, 0) + 1
    for code, n in report.suppressed.items():
        # a code is suppressed only after 50 listed issues, which give its severity
        bucket = counts.setdefault(severity.get(code, "error"), {})
        bucket[code] = bucket.get(code, 0) + n
    return dict(sorted(counts["error"].items())), dict(sorted(counts["warning"].items()))


def _current(directory: Path) -> ExportInfo | None:
    key = store.read_pointer(directory)
    return store.load_info(directory / key) if key else None


def _sources(kind: str, catalog: Catalog) -> list[Source] | str:
    """The kind's tables at their main snapshots, or why the export cannot be made yet."""
    out = []
    for name, columns in SOURCES[kind].items():
        namespace, _, table_name = name.partition(".")
        table = load_table_or_none(catalog, namespace, table_name)
        head = table.snapshot_by_name(MAIN) if table is not None else None
        if table is None or head is None:
            return f"{name} has no published rows yet"
        out.append(Source(name, table, head.snapshot_id, head.timestamp_ms, columns))
    return out


def _declared(
    sources: list[Source], datasets: Iterable[DatasetDeclaration]
) -> list[DatasetDeclaration]:
    """The declared datasets the sources publish: their access policy governs the export."""
    by_table = {d.table: d for d in datasets}
    missing = [s.name for s in sources if s.name not in by_table]
    if missing:
        raise ExportError(
            f"{', '.join(missing)} is not declared in the datasets file "
            "(config/datasets.yaml or SPANDA_DATASETS_FILE): an export of its rows would "
            "have no licence, agreement or access policy; declare it first"
        )
    return sorted((by_table[s.name] for s in sources), key=lambda d: d.id)


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _description(
    kind: str, sources: list[Source], declared: list[DatasetDeclaration], home: str
) -> dict[str, Any]:
    """dataset_description.json, from the declarations and the snapshots only: nothing in
    it depends on when the export runs (PublicationYear is the newest snapshot's year)."""
    publisher = declared[0].publisher.name
    newest = max(s.timestamp_ms for s in sources)
    year = dt.datetime.fromtimestamp(newest / 1000, tz=dt.UTC).year
    licences = _unique(d.licence.id for d in declared)
    by_table = {d.table: d.id for d in declared}
    return {
        "Title": f"{publisher}: {TITLES[kind]} (de-identified)",
        "Description": (
            f"A {TITLES[kind]} export of the de-identified, validated gold tables "
            f"{', '.join(s.name for s in sources)} at the snapshots listed under DerivedFrom. "
            "People are identified by keyed pseudonyms only; dates are reduced to the year."
        ),
        "Creators": _unique(c.name for d in declared for c in d.creators),
        "Publisher": publisher,
        "PublicationYear": year,
        "ResourceType": "Dataset",
        "License": licences[0] if len(licences) == 1 else licences,
        "DataUseAgreement": [
            {"id": i, "title": t, "url": u}
            for i, t, u in _unique((d.dua.id, d.dua.title, d.dua.url) for d in declared)
        ],
        "Contact": home,
        "ConsentBasis": CONSENT_BASIS,
        "Subjects": _unique(s.subject for d in declared for s in d.subjects),
        "Keywords": _unique([TITLES[kind].split()[0], *(k for d in declared for k in d.keywords)]),
        "Version": f"{kind}-format-{FORMAT_VERSION}",
        "Language": declared[0].language,
        "Discipline": "Educational sciences",
        "DerivedFrom": [
            {"dataset": by_table[src.name], "table": src.name, "snapshot_id": src.snapshot_id}
            for src in sources
        ],
    }


def _key(kind: str, snapshots: dict[str, int], description: dict[str, Any], home: str) -> str:
    raw = json.dumps(
        {
            "format": FORMAT_VERSION,
            "kind": kind,
            "sources": snapshots,
            "home_page": home,
            "description": description,
        },
        sort_keys=True,
    )
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


def _write(
    kind: str,
    sources: list[Source],
    package: Path,
    work: Path,
    home: str,
    publisher: str,
    run_keys: int,
) -> tuple[dict[str, int], dict[str, int]]:
    by_name = {s.name: s for s in sources}
    if kind == "oneroster":
        rows, skipped = oneroster.write_oneroster(
            by_name[oneroster.ENROLLMENTS].batches(),
            by_name[oneroster.ASSESSMENTS].batches(),
            package,
            work / "spill",
            oneroster.Org(publisher),
            run_keys=run_keys,
        )
        return {f"{name}.csv": n for name, n in rows.items()}, skipped
    return xapi.write_xapi(
        by_name[xapi.POSTS].batches(), by_name[xapi.ASSESSMENTS].batches(), package, home
    )


def _info(
    kind: str,
    key: str,
    target: Path,
    package: Path,
    outcome: ExportOutcome,
    declared: list[DatasetDeclaration],
    report: Report,
    now: dt.datetime | None,
) -> ExportInfo:
    hidden = {store.MANIFEST_NAME, IGNORE_FILE}
    files = tuple(
        ExportFile(
            name=p.name,
            size=p.stat().st_size,
            sha256=file_digest(p),
            media_type=MEDIA_TYPES.get(p.suffix, "application/octet-stream"),
            rows=outcome.rows.get(p.name, 0),
        )
        for p in sorted(package.iterdir())
        if p.name not in hidden
    )
    _, warnings = issue_counts(report)
    created = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return ExportInfo(
        kind=kind,
        key=key,
        directory=target,
        files=files,
        sources=dict(outcome.sources),
        datasets=tuple(d.id for d in declared),
        created=created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        columns={name: tuple(cols) for name, cols in SOURCES[kind].items()},
        validation={
            "valid": report.valid,
            "errors": len(report.errors),
            "warnings": sum(warnings.values()),
            "warning_codes": dict(sorted(warnings.items())),
            "rules_version": report.rules_version,
            "rows_checked": report.rows_checked,
        },
    )


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
