"""The audit log: one hash-chained JSON line per access decision, and its head anchor.

Each line holds who asked for what, for which purpose, what was decided and by which
policies (`policy_set_hash` names the exact policy text), with `prev`, the hash of the
line before, and `hash`, the SHA-256 of the line's canonical JSON without `hash`. So
editing a line breaks its hash, and removing or reordering lines breaks the next
line's `prev`. Removing lines from the end breaks nothing in the chain: the head
anchor (`audit.head.json`, the last line's seq and hash, replaced atomically after
every append) catches that.

Appends hold an exclusive `flock` on the log from reading its last line to writing
the anchor, so writers in threads and processes never fork the chain; each line is
fsynced before the call returns. A log that shows signs of tampering (a torn last
line, a tail shorter than the anchor) takes no more lines: the decision that could
not be recorded is not made (fail closed) until a steward has looked.

What is never logged: tokens (only the short token id) and row values. The hash
chain proves the file was not edited by someone without the anchor; anyone who can
rewrite both can rewrite history, so record the head hash that `--verify` prints
somewhere else (a ticket, a signed e-mail) when it matters (ADR 0031).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spanda_assets.lib.access.model import AuditLogError
from spanda_assets.lib.access.storage import private_dir, replace_private

LOG_FILE = "audit.jsonl"
HEAD_FILE = "audit.head.json"
GENESIS = "0" * 64  # the `prev` of the first line
_CHUNK = 8192
_CHAIN_KEYS = ("seq", "time", "prev", "hash")


def canonical(entry: Mapping[str, Any]) -> bytes:
    """The bytes a line's hash covers: sorted keys, no whitespace, UTF-8.

    Not RFC 8785 (as the consent receipts use): Iceberg snapshot ids are 64-bit and
    RFC 8785 refuses integers beyond 2**53. There are no floats in a line, so sorted
    keys and fixed separators are canonical enough, and easy to reproduce with jq.
    """
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 of the entry without its `hash` field (`prev` included: the chain)."""
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Verification:
    """The outcome of checking the whole log and its anchor.

    ok         the chain and the anchor hold
    entries    lines read (up to the first bad one)
    head_seq   seq of the last good line (0 for an empty log)
    head_hash  hash of the last good line (GENESIS for an empty log)
    line       the first bad line's number (1-based), or None
    problem    what is wrong with it, in words
    note       something worth knowing that is not tampering (an interrupted append)
    """

    ok: bool
    entries: int
    head_seq: int
    head_hash: str
    line: int | None = None
    problem: str | None = None
    note: str | None = None


class AuditLog:
    """The append-only decision log in `directory` (SPANDA_HOME/access)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / LOG_FILE
        self.head_path = directory / HEAD_FILE

    # --- writing -----------------------------------------------------------------------
    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append `record` as the next line; returns the line as written (with seq,
        time, prev and hash). Raises AuditLogError when the log must not grow."""
        clash = [k for k in _CHAIN_KEYS if k in record]
        if clash:
            raise ValueError(f"an audit record may not set {', '.join(clash)}: the log does")
        private_dir(self.directory)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            seq, prev, before = self._last(fd)
            self._check_anchor(seq, prev, before)
            entry: dict[str, Any] = {"seq": seq + 1, "time": _now(), **record, "prev": prev}
            entry["hash"] = entry_hash(entry)
            # the line is the canonical form itself: verify compares bytes, so no
            # re-ordered keys, duplicate keys or other whitespace can pass for it
            data = canonical(entry) + b"\n"
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            replace_private(
                self.head_path, json.dumps({"seq": entry["seq"], "hash": entry["hash"]}).encode()
            )
            return entry
        finally:
            os.close(fd)  # releases the lock

    def _last(self, fd: int) -> tuple[int, str, str]:
        """(seq, hash, prev) of the last line, read backwards from the end of the file."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS, GENESIS
        if os.pread(fd, 1, size - 1) != b"\n":
            raise AuditLogError(
                f"the last line of {self.path} is incomplete (no newline at byte {size}): a "
                "write was cut off or the file was edited. No decision is made until a "
                "steward checks it: spanda access audit --verify"
            )
        pos, buf = size - 1, b""
        while True:
            start = max(0, pos - _CHUNK)
            buf = os.pread(fd, pos - start, start) + buf
            pos = start
            cut = buf.rfind(b"\n")
            if cut >= 0 or pos == 0:
                line = buf[cut + 1 :]
                break
        try:
            entry = json.loads(line)
            return int(entry["seq"]), str(entry["hash"]), str(entry["prev"])
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"the last line of {self.path} is not an audit entry ({exc}). No decision is "
                "made until a steward checks it: spanda access audit --verify"
            ) from None

    def _read_anchor(self) -> tuple[int, str] | None:
        try:
            raw = json.loads(self.head_path.read_bytes())
            return int(raw["seq"]), str(raw["hash"])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditLogError(
                f"the audit head anchor {self.head_path} cannot be read ({exc}); check the "
                "log with spanda access audit --verify"
            ) from None

    def _check_anchor(self, seq: int, last_hash: str, last_prev: str) -> None:
        """The log may grow only from the end its anchor names: the anchored line is the
        last one, or the last one follows it (an append whose anchor write was cut off).
        Anything else (lines cut from the end, a rewritten tail, a missing anchor beside
        a non-empty log) stops every decision: re-anchoring would hide it."""
        anchor = self._read_anchor()
        if anchor is None:
            if seq == 0:
                return
            found = f"has {seq} line(s) but no head anchor {self.head_path}"
        else:
            anchor_seq, anchor_hash = anchor
            if (seq == anchor_seq and last_hash == anchor_hash) or (
                seq == anchor_seq + 1 and last_prev == anchor_hash
            ):
                return
            found = (
                f"ends at seq {seq}, but its head anchor {self.head_path} names seq "
                f"{anchor_seq} ({anchor_hash[:12]})"
            )
        raise AuditLogError(
            f"the audit log {self.path} {found}: lines were removed from its end, replaced "
            "or rewritten. No decision is made until a steward has looked: run spanda "
            "access audit --verify, keep both files as evidence, and move them aside to "
            "start a new log"
        )

    # --- reading -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _reading(self) -> Iterator[Iterator[tuple[int, bytes]]]:
        """(line number, raw line) under a shared lock: no append is half-way through."""
        try:
            f = self.path.open("rb")
        except FileNotFoundError:
            yield iter(())
            return
        with f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            yield enumerate(f, start=1)

    def entries(self, limit: int | None = None) -> list[dict[str, Any]]:
        """The logged decisions, oldest first; with `limit`, only the last `limit`."""
        out: collections.deque[dict[str, Any]] = collections.deque(maxlen=limit)
        with self._reading() as lines:
            for number, raw in lines:
                try:
                    entry = json.loads(raw)
                except ValueError:
                    raise AuditLogError(
                        f"line {number} of {self.path} is not JSON; run spanda access audit "
                        "--verify to see what else is wrong"
                    ) from None
                out.append(entry)
        return list(out)

    def verify(self) -> Verification:
        """Check every line's hash, seq and prev, then the anchor; stop at the first bad
        line and say what happened to it."""
        prev, seq, anchored_hash = GENESIS, 0, None
        with self._reading() as lines:
            anchor = self._read_anchor()  # under the lock: no append moves it meanwhile
            for number, raw in lines:
                problem = _line_problem(number, raw, prev)
                if problem is not None:
                    return Verification(False, number - 1, seq, prev, number, problem)
                entry = json.loads(raw)
                prev, seq = entry["hash"], entry["seq"]
                if anchor is not None and seq == anchor[0]:
                    anchored_hash = prev
        return _check_tail(seq, prev, anchor, anchored_hash, self.head_path)


def _line_problem(number: int, raw: bytes, prev: str) -> str | None:
    """What is wrong with line `number` given the hash of the line before, or None."""
    if not raw.endswith(b"\n"):
        return f"line {number} is incomplete (no newline): a write was cut off, or it was edited"
    try:
        entry = json.loads(raw)
    except ValueError:
        return f"line {number} is not JSON: it was edited or cut"
    if not isinstance(entry, dict) or not all(k in entry for k in _CHAIN_KEYS):
        return f"line {number} is not an audit entry (it lacks seq, time, prev or hash)"
    seq = entry["seq"]
    if raw != canonical(entry) + b"\n":
        return (
            f"line {number} (seq {seq}) is not in the form it was written in (keys "
            "re-ordered, duplicated or re-spaced): it was edited"
        )
    if entry_hash(entry) != entry["hash"]:
        return f"line {number} (seq {seq}) was altered: its content no longer matches its hash"
    if seq != number:
        return (
            f"line {number} has seq {seq} where seq {number} belongs: lines before it were "
            "removed, or lines were reordered"
        )
    if entry["prev"] != prev:
        return (
            f"line {number} (seq {seq}) does not follow line {number - 1}: its prev is not "
            f"line {number - 1}'s hash, so line {number - 1} was rewritten (its hash "
            "recomputed) or replaced"
        )
    return None


def _check_tail(
    seq: int,
    last_hash: str,
    anchor: tuple[int, str] | None,
    anchored_hash: str | None,
    head_path: Path,
) -> Verification:
    """The chain held up to `seq`; does the anchor agree that the log ends there?"""
    if anchor is None:
        if seq == 0:
            return Verification(True, 0, 0, GENESIS)
        return Verification(
            False,
            seq,
            seq,
            last_hash,
            None,
            f"the head anchor {head_path} is missing, so a cut end cannot be detected: it "
            "was deleted, or the log was copied without it",
        )
    anchor_seq, anchor_hash = anchor
    if anchor_seq > seq:
        return Verification(
            False,
            seq,
            seq,
            last_hash,
            seq + 1,
            f"line {seq + 1} is missing: the log ends at line {seq}, but the head anchor "
            f"names seq {anchor_seq}: "
            f"{anchor_seq - seq} line(s) were removed from its end (truncated tail)",
        )
    if anchored_hash != anchor_hash:
        return Verification(
            False,
            seq,
            seq,
            last_hash,
            anchor_seq,
            f"line {anchor_seq} is not the line the head anchor recorded (its hash differs): "
            "the log's end was replaced",
        )
    if seq == anchor_seq:
        return Verification(True, seq, seq, last_hash)
    if seq == anchor_seq + 1:
        return Verification(
            True,
            seq,
            seq,
            last_hash,
            note=f"line {seq} was appended after the head anchor was last written (an "
            "append was interrupted before it); the next decision anchors it",
        )
    return Verification(
        False,
        seq,
        seq,
        last_hash,
        anchor_seq + 2,
        f"lines {anchor_seq + 1}-{seq} follow the head anchor (seq {anchor_seq}): one "
        "append can be interrupted before its anchor, not several; they were added by hand",
    )
