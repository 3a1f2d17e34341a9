"""Safe extraction of a submitted .zip: nothing is written before the whole archive passed."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path


def safe_extract(
    archive: Path, into: Path, limits: dict[str, int], add: Callable[..., None]
) -> bool:
    """Extract a .zip after refusing path traversal and decompression bombs.

    Sizes are the ones the archive declares; the ratio limit is what catches a
    small file that claims a huge expansion. Refusals go to `add` as issues.
    """
    try:
        with zipfile.ZipFile(archive) as z:
            total = 0
            for info in z.infolist():
                name = info.filename
                target = (into / name).resolve()
                if (
                    name.startswith(("/", "\\"))
                    or ".." in Path(name).parts
                    or not str(target).startswith(str(into.resolve()))
                ):
                    add("ARCHIVE_PATH_TRAVERSAL", archive.name, member=name)
                    return False
                total += info.file_size
            compressed = max(1, archive.stat().st_size)
            ratio = total / compressed
            if total > limits["max_archive_bytes"] or ratio > limits["max_compression_ratio"]:
                add("ARCHIVE_BOMB", archive.name, size=total, ratio=int(ratio))
                return False
            z.extractall(into)
    except (zipfile.BadZipFile, OSError) as exc:
        add("ARCHIVE_INVALID", archive.name, detail=str(exc))
        return False
    return True
