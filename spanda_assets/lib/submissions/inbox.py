"""The submissions inbox: a local folder or an object-store prefix, read through pyarrow.fs.

Each entry directly under the inbox (a folder or a .zip) is one submission.
Its partition key is the entry name itself when that is already a safe name
(lower-case letters, digits, single underscores); any other name is folded to
one and gets `__` and a digest of the full name, so keys never meet ("A b.zip"
and "a-b/" and "a_b/" are three keys) and never change when other entries come
or go. A safe name never contains `__`, so no entry can take another's key.
Its fingerprint (sizes and modification times of its files) tells the sensor
when it changed.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from spanda_assets import settings

ENV_INBOX = "SPANDA_INBOX"


def inbox_uri() -> str:
    return os.environ.get(ENV_INBOX) or str(settings.spanda_home() / "inbox")


def partition_key(name: str) -> str:
    """`district_2026` stays; `District 2026.zip` -> `district_2026__<digest of the name>`.

    Usable in partition keys and table names, one key per name, the same whatever
    else the inbox holds (docs/decisions/0026).
    """
    stem = name[:-4] if name.lower().endswith(".zip") else name
    key = re.sub(r"[^a-z0-9]+", "_", stem.lower()).strip("_") or "submission"
    if key == name:
        return key
    return f"{key}__{hashlib.sha256(name.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class Submission:
    key: str
    name: str
    fingerprint: str


def _fs(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri:
        return pafs.FileSystem.from_uri(uri)
    Path(uri).mkdir(parents=True, exist_ok=True)
    return pafs.LocalFileSystem(), str(Path(uri).resolve())


def list_submissions(uri: str | None = None) -> list[Submission]:
    fs, root = _fs(uri or inbox_uri())
    out = []
    for entry in fs.get_file_info(pafs.FileSelector(root, recursive=False)):
        name = entry.base_name
        if name.startswith("."):
            continue
        if entry.type == pafs.FileType.File and not name.lower().endswith(".zip"):
            continue
        files = (
            [entry]
            if entry.type == pafs.FileType.File
            else fs.get_file_info(pafs.FileSelector(entry.path, recursive=True))
        )
        h = hashlib.sha256()
        for f in sorted(files, key=lambda i: i.path):
            if f.type == pafs.FileType.File:
                h.update(f"{f.path}|{f.size}|{f.mtime_ns}".encode())
        out.append(Submission(partition_key(name), name, h.hexdigest()[:16]))
    return sorted(out, key=lambda s: s.key)


def fetch(key: str, uri: str | None = None) -> Path:
    """A local copy of the submission (a folder or a .zip) to validate and ingest."""
    fs, root = _fs(uri or inbox_uri())
    match = next((s for s in list_submissions(uri) if s.key == key), None)
    if match is None:
        raise FileNotFoundError(f"submission {key!r} is not in the inbox {uri or inbox_uri()}")
    source = f"{root.rstrip('/')}/{match.name}"
    if isinstance(fs, pafs.LocalFileSystem):
        return Path(source)
    local = Path(tempfile.mkdtemp(prefix="spanda-inbox-")) / match.name
    info = fs.get_file_info(source)
    files = (
        [info]
        if info.type == pafs.FileType.File
        else fs.get_file_info(pafs.FileSelector(source, recursive=True))
    )
    for f in files:
        if f.type != pafs.FileType.File:
            continue
        rel = f.path[len(source) :].lstrip("/")
        target = local / rel if rel else local
        target.parent.mkdir(parents=True, exist_ok=True)
        with fs.open_input_stream(f.path) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    return local
