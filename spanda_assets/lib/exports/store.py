"""Where exports live, how one is put in place atomically, and how a reader finds the latest.

Layout, one folder per kind under `SPANDA_HOME/exports`:

    exports/<kind>/LATEST                the key of the export readers see (one line)
    exports/<kind>/<key>/                a complete export: its files and export.json
    exports/<kind>/.staging-<key>-<id>/  a run in progress (or a crashed run's leftovers)
    exports/<kind>/.lock                 one writer per kind at a time

A run writes into its staging folder, fsyncs every file, renames the finished package
to `<key>` (one rename: a reader never sees half an export), fsyncs the folder, then
replaces `LATEST` (temporary file, fsync, rename) and only then removes every other
export of the kind. A crash at any point leaves `LATEST` naming a complete export:
the previous one until the new one is in place. The next run deletes the staging
leftovers, and an export renamed in place before the crash but never pointed to is
adopted (same key, same sources, same bytes) instead of written again.

Only the latest export of a kind is kept: an erasure removes a student's rows from
gold, and an older export would keep serving them.

This module imports no pyarrow or pyiceberg: the HTTP API reads exports through it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spanda_assets import settings
from spanda_assets.lib.files import fsync_path

EXPORT_KINDS: tuple[str, ...] = ("oneroster", "xapi")
# The tables each kind reads (their main snapshots), in the order they are read.
EXPORT_SOURCES: dict[str, tuple[str, ...]] = {
    "oneroster": ("gold.validated_enrollments", "gold.validated_assessments"),
    "xapi": ("gold.validated_posts", "gold.validated_assessments"),
}
MANIFEST_NAME = "export.json"
POINTER_NAME = "LATEST"
STAGING_PREFIX = ".staging-"
LOCK_NAME = ".lock"
# Files of an export folder that are the platform's, not the package's.
NOT_PACKAGE = (MANIFEST_NAME,)


@dataclass(frozen=True)
class ExportFile:
    """One file of an export, as export.json records it."""

    name: str
    size: int  # bytes
    sha256: str
    media_type: str
    rows: int  # records (CSV rows after the header, JSON lines); 0 for metadata files

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "media_type": self.media_type,
            "rows": self.rows,
        }


@dataclass(frozen=True)
class ExportInfo:
    """The latest export of one kind: what a reader may download and what it derives from.

    `sources` maps each table read to the main snapshot it was read at; `datasets` are
    the declared dataset ids (config/datasets.yaml) those tables publish, so access to
    an export can be decided by the policy of every dataset it holds rows of; `columns`
    lists, per table, the columns read (for column-level policy). `created` is when the
    export was written (UTC, ISO 8601); `key` changes whenever any source snapshot does,
    so it is a good ETag."""

    kind: str
    key: str
    directory: Path
    files: tuple[ExportFile, ...]
    sources: dict[str, int]
    datasets: tuple[str, ...]
    created: str
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)

    def file(self, name: str) -> Path:
        """The path of a listed file; KeyError for any other name (no path is built from
        a caller's string)."""
        for f in self.files:
            if f.name == name:
                return self.directory / f.name
        raise KeyError(f"export {self.kind}/{self.key} has no file {name!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "created": self.created,
            "sources": dict(self.sources),
            "datasets": list(self.datasets),
            "columns": {t: list(c) for t, c in self.columns.items()},
            "files": [f.to_dict() for f in self.files],
            "validation": dict(self.validation),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], directory: Path) -> ExportInfo:
        return cls(
            kind=str(doc["kind"]),
            key=str(doc["key"]),
            directory=directory,
            files=tuple(
                ExportFile(
                    name=str(f["name"]),
                    size=int(f["size"]),
                    sha256=str(f["sha256"]),
                    media_type=str(f["media_type"]),
                    rows=int(f.get("rows", 0)),
                )
                for f in doc["files"]
            ),
            sources={str(t): int(s) for t, s in doc["sources"].items()},
            datasets=tuple(str(d) for d in doc["datasets"]),
            created=str(doc["created"]),
            columns={str(t): tuple(str(c) for c in cs) for t, cs in doc["columns"].items()},
            validation=dict(doc.get("validation") or {}),
        )


def export_root() -> Path:
    """SPANDA_HOME/exports."""
    return settings.spanda_home() / "exports"


def kind_dir(kind: str, root: Path | None = None) -> Path:
    if kind not in EXPORT_KINDS:
        raise ValueError(f"unknown export kind {kind!r}: one of {', '.join(EXPORT_KINDS)}")
    return (root or export_root()) / kind


def read_pointer(directory: Path) -> str | None:
    """The key `LATEST` names, or None when there is none (nothing exported yet)."""
    try:
        key = (directory / POINTER_NAME).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return key or None


def load_info(directory: Path) -> ExportInfo | None:
    """The export in `directory`, or None if it is not a complete one."""
    try:
        doc = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return ExportInfo.from_dict(doc, directory)


def latest_export(kind: str, root: Path | None = None) -> ExportInfo | None:
    """The export of `kind` readers should get now, or None if none was made yet.

    Reads `LATEST` and the export.json it names, without a lock: both only change by
    rename, and a folder is complete before `LATEST` names it. A run that replaces the
    export between the two reads deletes the folder just read from; the pointer has
    moved on by then, so it is read again."""
    directory = kind_dir(kind, root)
    for _ in range(3):
        key = read_pointer(directory)
        if key is None:
            return None
        info = load_info(directory / key)
        if info is not None or read_pointer(directory) == key:
            return info
    return None


def write_durable(path: Path, data: bytes) -> None:
    """Replace `path` with `data`: a temporary file beside it, fsync, rename, fsync the
    folder, so a crash leaves the old content or the new, never a torn file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_pointer(directory: Path, key: str) -> None:
    """Make `key` the export readers see."""
    write_durable(directory / POINTER_NAME, f"{key}\n".encode())


def remove_staging(directory: Path) -> int:
    """Delete what crashed runs left in `directory` (their rows included)."""
    removed = 0
    if not directory.is_dir():
        return 0
    for leftover in directory.glob(f"{STAGING_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed


def prune(directory: Path, keep: str) -> list[str]:
    """Remove every export of the kind but `keep`; returns the keys removed."""
    removed = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and entry.name != keep:
            shutil.rmtree(entry)
            removed.append(entry.name)
    if removed:
        fsync_path(directory)
    return removed


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One writer per kind at a time, across processes (an export run, a removal)."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / LOCK_NAME).open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def remove_exports(tables: set[str] | None = None, root: Path | None = None) -> list[str]:
    """Delete every export that read one of `tables` (every export when None), e.g. right
    after an erasure, instead of waiting for the next export run. Returns `<kind>/<key>`
    of each export removed. The pointer goes first, so a reader gets "no export" rather
    than a folder being deleted; the next run writes a new export without the rows."""
    removed = []
    for kind in EXPORT_KINDS:
        directory = kind_dir(kind, root)
        if not directory.is_dir():
            continue
        with locked(directory):
            remove_staging(directory)
            doomed = [
                entry
                for entry in sorted(directory.iterdir())
                if entry.is_dir()
                and not entry.name.startswith(".")
                and _reads_any(_info_or_none(entry), tables)
            ]
            if read_pointer(directory) in {d.name for d in doomed}:
                (directory / POINTER_NAME).unlink()
                fsync_path(directory)
            for entry in doomed:
                shutil.rmtree(entry)
                removed.append(f"{kind}/{entry.name}")
    return removed


def _info_or_none(directory: Path) -> ExportInfo | None:
    """The export's manifest, or None when it cannot be read: an export nobody can tell
    the sources of is removed with the rest (an erasure must not stop at it)."""
    try:
        return load_info(directory)
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _reads_any(info: ExportInfo | None, tables: set[str] | None) -> bool:
    # an incomplete folder is removed too: nobody can tell what it holds
    return tables is None or info is None or bool(tables & set(info.sources))
