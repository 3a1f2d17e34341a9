"""The bytes of a CSV file as pyarrow should see them, and what was wrong with them.

pyarrow would only say "invalid UTF8" for a whole block; `Utf8Stream` checks
whole lines on their way through, records the line and byte of each bad one
and repairs it (U+FFFD, as the validator's old line-by-line reader did), drops
a UTF-8 BOM and leading blank lines, and ends the last line.
"""

from __future__ import annotations

import io
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

BOM = b"\xef\xbb\xbf"
READ_BYTES = 1 << 20


@dataclass(frozen=True)
class CsvProblem:
    """Something wrong with a file's bytes or syntax, at a physical line where known."""

    kind: Literal["bom", "encoding", "malformed"]
    line: int | None = None
    column: int | None = None  # 1-based byte within the line (encoding problems)
    detail: str = ""


class Utf8Stream(io.RawIOBase):
    """A file's bytes as pyarrow should see them: valid UTF-8, no BOM, no leading blank lines.

    Validation runs on runs of whole lines, so a line with a bad byte can be
    named and repaired (U+FFFD, as the old line-by-line reader did) without
    decoding the file twice on the common all-valid path.
    """

    def __init__(self, f: BinaryIO, problems: deque[CsvProblem] | None) -> None:
        super().__init__()
        self._f = f
        self._problems = problems
        self._out = memoryview(b"")
        self._eof = False
        first = f.readline()
        if first.startswith(BOM):
            self._problem(CsvProblem("bom"))
            first = first[len(BOM) :]
        skipped = 0
        while first and not first.strip():
            skipped += 1
            first = f.readline()
        self._carry = first
        self.first_line = skipped + 1
        self.empty = not first
        self._line = self.first_line  # line of the first byte not yet checked
        self.tail = b""  # the last bytes handed on (raw; enough to see a closing quote)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        # Fill the whole buffer: pyarrow parses what one read returns as one block, and
        # short reads cost it a re-parse of every record that straddles them.
        target = memoryview(buffer).cast("B")
        n = 0
        while n < len(target):
            if not self._out:
                data = self._next_lines()
                if not data:
                    break
                self._out = memoryview(data)
            k = min(len(target) - n, len(self._out))
            target[n : n + k] = self._out[:k]
            self._out = self._out[k:]
            n += k
        return n

    def drain(self) -> None:
        while self._next_lines():
            pass

    def _problem(self, problem: CsvProblem) -> None:
        if self._problems is not None:
            self._problems.append(problem)

    def _next_lines(self) -> bytes:
        """The next run of whole lines (or the unterminated last line), checked; b"" at the end."""
        while True:
            chunk = b"" if self._eof else self._f.read(READ_BYTES)
            if not chunk:
                self._eof = True
                data, self._carry = self._carry, b""
                if not data:
                    return b""
                data = self._checked(data)
                # pyarrow reads a lone header without a line end as no header at all
                if not data.endswith((b"\n", b"\r")):
                    data += b"\n"
                self.tail = data[-64:]
                return data
            data = self._carry + chunk
            cut = data.rfind(b"\n") + 1
            if cut:
                self._carry = data[cut:]
                self.tail = data[max(0, cut - 64) : cut]
                return self._checked(data[:cut])
            self._carry = data

    def _checked(self, data: bytes) -> bytes:
        start = self._line
        self._line += data.count(b"\n")
        if data.isascii():
            return data
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            pass
        lines = _lines(data)
        for i, raw in enumerate(lines):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self._problem(CsvProblem("encoding", start + i, exc.start + 1, exc.reason))
                lines[i] = raw.decode("utf-8", errors="replace").encode("utf-8")
        return b"".join(lines)


def _lines(data: bytes) -> list[bytes]:
    """Lines split at b"\\n" only, each keeping its end (the line numbering of this module)."""
    parts = data.split(b"\n")
    return [p + b"\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
