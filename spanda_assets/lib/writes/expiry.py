"""Expiry: snapshots past retention, then the files only they referenced, then orphans."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pyarrow.fs as pafs
from pyiceberg.io.pyarrow import PyArrowFileIO

from spanda_assets.lib.writes.rows import table_name

if TYPE_CHECKING:
    from pyiceberg.table import Table


@dataclass
class Expired:
    table: str
    snapshots_expired: int = 0
    files_removed: int = 0
    orphans_removed: int = 0
    orphans_kept_in_grace: int = 0
    bytes_removed: int = 0
    removed: list[str] = field(default_factory=list)


def _reachable(table: Table) -> set[str]:
    """Every file a snapshot of the table still needs: manifest lists, manifests, data files."""
    out: set[str] = set()
    seen_manifests: set[str] = set()
    for snap in table.snapshots():
        out.add(snap.manifest_list)
        for manifest in snap.manifests(table.io):
            out.add(manifest.manifest_path)
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                out.add(entry.data_file.file_path)
    return out


def _strip(uri: str) -> str:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return parsed.path
    return f"{parsed.netloc}{parsed.path}"


def _filesystem(table: Table) -> tuple[Any, str]:
    """The pyarrow filesystem under the table's location, and the location as its path."""
    location = table.location()
    parsed = urlparse(location)
    io = table.io
    if isinstance(io, PyArrowFileIO):
        fs = io.fs_by_scheme(parsed.scheme or "file", parsed.netloc)
    else:  # pragma: no cover - pyiceberg picks PyArrowFileIO for file:// and s3://
        fs, _ = pafs.FileSystem.from_uri(location)
    return fs, _strip(location)


def expire(
    table: Table,
    *,
    older_than: dt.datetime | None,
    orphan_grace: dt.timedelta = dt.timedelta(hours=1),
) -> Expired:
    """Expire snapshots older than `older_than` (None: every snapshot no branch points at),
    then delete the files no remaining snapshot needs.

    Files only the expired snapshots referenced are deleted at once: nothing can
    need them again. Files no snapshot ever referenced (a write that crashed
    before its commit, or one still in flight) are deleted only when older than
    `orphan_grace`, so a concurrent writer's files are never taken from under it.
    """
    result = Expired(table=table_name(table))
    before = _reachable(table)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    doomed = [
        s.snapshot_id
        for s in table.snapshots()
        if s.snapshot_id not in protected
        and (older_than is None or s.timestamp_ms < older_than.timestamp() * 1000)
    ]
    if doomed:
        table.maintenance.expire_snapshots().by_ids(doomed).commit()
        result.snapshots_expired = len(doomed)
    table.refresh()
    after = _reachable(table)
    keep = {_strip(p) for p in after}
    fs, root = _filesystem(table)
    gone = {_strip(p) for p in before} - keep
    now = dt.datetime.now(dt.UTC)
    for folder in ("data", "metadata"):
        selector = pafs.FileSelector(f"{root}/{folder}", recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.type != pafs.FileType.File or info.path in keep:
                continue
            if info.path.endswith(".metadata.json") or info.path.endswith("version-hint.text"):
                continue  # the catalog's own history of metadata versions: no rows in it
            if info.path in gone:
                result.files_removed += 1
            elif info.mtime is not None and now - _utc(info.mtime) >= orphan_grace:
                result.orphans_removed += 1
            else:
                result.orphans_kept_in_grace += 1
                continue
            result.bytes_removed += info.size or 0
            fs.delete_file(info.path)
            result.removed.append(info.path)
    return result


def _utc(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def keep_snapshot(table: Table, tag: str, snapshot_id: int) -> bool:
    """Tag `snapshot_id` as `tag`, so `expire` keeps it (it protects every ref). True if
    the tag was made, False if it already named this snapshot; a tag on another snapshot
    is an error, since a kept snapshot is a promise about exact rows."""
    ref = table.metadata.refs.get(tag)
    if ref is not None:
        if ref.snapshot_id != snapshot_id:
            raise ValueError(
                f"{table_name(table)} already has tag {tag} on snapshot {ref.snapshot_id}, "
                f"not {snapshot_id}: a kept snapshot's tag never moves"
            )
        return False
    table.manage_snapshots().create_tag(snapshot_id=snapshot_id, tag_name=tag).commit()
    return True


def release_snapshot(table: Table, tag: str) -> bool:
    """Remove `tag`, so the next `expire` may delete its snapshot; False if absent."""
    if tag not in table.metadata.refs:
        return False
    table.manage_snapshots().remove_tag(tag).commit()
    return True
