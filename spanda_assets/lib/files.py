"""Small file helpers shared by stages that must agree on them byte for byte."""

from __future__ import annotations

import hashlib
import os
from importlib import resources
from pathlib import Path

from spanda_assets.lib.errors import ConfigError

CHUNK = 1 << 20  # bytes hashed at a time


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read a megabyte at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder: the names it holds, i.e. renames into it), so
    what was written, or moved into place, survives a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_text(path: Path | None, variable: str, packaged: str) -> tuple[str, str]:
    """(text, origin) of a YAML config: `path` if given (the file `variable` names), else
    the packaged default `spanda_assets/<packaged>`. The origin names the file in every
    error message about its contents."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"{variable}={path} does not exist")
        return path.read_text(encoding="utf-8"), str(path)
    text = resources.files("spanda_assets").joinpath(packaged).read_text("utf-8")
    return text, f"spanda_assets/{packaged}"
