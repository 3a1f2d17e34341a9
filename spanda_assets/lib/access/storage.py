"""Files of the access directory: private to their owner, replaced atomically, changed
under a lock.

The token store and the audit log's head anchor are small files rewritten whole; the
audit log itself is only appended to. All of them live in `SPANDA_HOME/access` (mode
0700), every file mode 0600: they name who may read what, and the token store holds
the hashes that let a token in.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner can enter (created if missing)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself survives a power loss
    finally:
        os.close(fd)


def replace_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` atomically, mode 0600 from its first byte.

    `mkstemp` creates the temporary file with O_CREAT|O_EXCL and mode 0600; it is
    fsynced and renamed over `path`, so a reader sees the old bytes or the new ones,
    never a half-written file, and never a moment at which the file is readable by
    others (as a write-then-chmod would leave).
    """
    private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (created 0600) for the block.

    Each call opens its own file description, so the lock excludes other threads of
    this process as well as other processes.
    """
    private_dir(lock_path.parent)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
