"""What was validated is what is ingested: content digests of a submission's files.

The validation report records the SHA-256 of every file it checked (the files
`.spandaignore` leaves in). Ingest copies exactly those files into a private
staging folder, hashing each byte as it copies, and refuses the submission if
any digest differs, a file is gone, or a file appeared that validation never
saw: a submission changed between its validation and its ingest is validated
again, never loaded unchecked. Ingest then reads only the private copy, so a
later change in the inbox cannot reach the tables either.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.submissions.validate.rules import (
    CONFIG_FILE,
    DESCRIPTION,
    IGNORE_FILE,
    MANIFEST,
)

CHUNK = 1 << 20


class SubmissionChanged(SpandaError):
    """The submission's files are not the ones its validation report checked."""


def submission_digest(files: Mapping[str, str]) -> str:
    """One digest for the whole submission: its file names and their digests."""
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(f"{rel}\0{files[rel]}\n".encode())
    return h.hexdigest()


def _kept(rel: str, globs: list[str]) -> bool:
    # the description and the manifest define the submission: an ignore file cannot drop them
    return rel in (DESCRIPTION, MANIFEST) or not any(fnmatch.fnmatch(rel, g) for g in globs)


def _walk(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Regular files below `root` by relative path, and what is not one (symbolic links,
    devices, pipes): never followed, so nothing outside the submission is read."""
    files: dict[str, Path] = {}
    odd: list[str] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        base = Path(folder)
        for d in list(dirs):
            if (base / d).is_symlink():
                odd.append((base / d).relative_to(root).as_posix())
                dirs.remove(d)
        for name in names:
            p = base / name
            rel = p.relative_to(root).as_posix()
            if stat.S_ISREG(p.lstat().st_mode):
                files[rel] = p
            else:
                odd.append(rel)
    return files, sorted(odd)


def _checked(files: Mapping[str, Path], ignore_globs: Iterable[str]) -> dict[str, Path]:
    """Of a walk's regular files, those validation checks and ingest may load."""
    globs = list(ignore_globs)
    return {
        rel: p
        for rel, p in files.items()
        if p.name not in (CONFIG_FILE, IGNORE_FILE) and _kept(rel, globs)
    }


def checked_files(root: Path, ignore_globs: Iterable[str]) -> list[Path]:
    """The regular files of a submission that validation checks and ingest may load, sorted."""
    return sorted(_checked(_walk(root)[0], ignore_globs).values())


def _copy(source: Path, target: Path) -> str:
    """Copy one file without following a link, returning the SHA-256 of what was copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as src, target.open("wb") as dst:
        while chunk := src.read(CHUNK):
            h.update(chunk)
            dst.write(chunk)
    return h.hexdigest()


def private_copy(root: Path, ignore_globs: Iterable[str]) -> tuple[Path, dict[str, str], list[str]]:
    """What validation checks: a private copy of the submission's kept regular files
    (plus its own config files), so the bytes checked are the bytes hashed and nothing
    changed in the inbox meanwhile, or ignored, or linked from elsewhere is ever read.
    Returns the copy, the SHA-256 of each checked file (taken while copying), and the
    paths that are not regular files."""
    files, odd = _walk(root)
    checked = _checked(files, ignore_globs)
    copy = Path(tempfile.mkdtemp(prefix="spanda-checked-"))
    digests: dict[str, str] = {}
    try:
        for rel, p in files.items():
            if rel in checked:
                digests[rel] = _copy(p, copy / rel)
            elif p.name in (CONFIG_FILE, IGNORE_FILE):
                _copy(p, copy / rel)
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    return copy, digests, odd


def stage_validated(
    root: Path, validated: Mapping[str, str], ignore_globs: Iterable[str], name: str
) -> Path:
    """A private copy of exactly the validated files, each checked against its digest.

    Raises SubmissionChanged naming every file that changed, vanished or appeared.
    """
    files, odd = _walk(root)
    present = _checked(files, ignore_globs)
    staged = Path(tempfile.mkdtemp(prefix="spanda-validated-"))
    changed: list[str] = []
    try:
        for rel, expected in sorted(validated.items()):
            source = present.get(rel)
            if source is None:
                changed.append(f"{rel} is gone")
                continue
            got = _copy(source, staged / rel)  # never follows a link swapped in since
            if got != expected:
                changed.append(f"{rel} changed (sha256 {got[:12]}, validated {expected[:12]})")
        changed += [f"{rel} was added" for rel in sorted(set(present) - set(validated))]
        changed += [f"{rel} is not a regular file" for rel in odd]
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    if changed:
        shutil.rmtree(staged, ignore_errors=True)
        raise SubmissionChanged(
            f"submission {name}: its files are not the ones validation checked: "
            + "; ".join(changed)
            + ". Nothing was ingested. Validate it again (the inbox sensor does when "
            "the files change) and ingest the new report."
        )
    return staged
