"""Streaming CSV reading for submissions: one parser (pyarrow) for the validator and ingest.

pyarrow parses in blocks and never loads a whole file. It does not know what a
validator must report, so this module adds it around the parser:

* the bytes reach pyarrow through `stream.Utf8Stream`, which drops a UTF-8 BOM
  and leading blank lines, and replaces invalid UTF-8 after recording the line
  and byte column (pyarrow would only say "invalid UTF8" for a whole block);
* pyarrow numbers records, not lines; `walk.Walk` turns that into the physical
  line each record starts on, counting newlines inside quoted values;
* ragged records are skipped by pyarrow's invalid-row handler and re-parsed
  alone (`walk`), so the validator still sees their fields in file order;
* a quoted field still open at the end of the file is reported at its line;
* a record pyarrow cannot finish within one block (usually a quote that is
  never closed) becomes a "malformed" problem at its line instead of an
  exception.

Problems go to a callback; without one (ingest of an already validated
submission) they raise `CsvError` naming the file and line.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from spanda_assets.lib.submissions.csvio.stream import CsvProblem, Utf8Stream
from spanda_assets.lib.submissions.csvio.walk import Walk, is_blank, parse_options, skip

__all__ = ["BLOCK_BYTES", "CsvError", "CsvFile", "CsvProblem", "OnProblem"]

# Also the longest record a file may hold. Larger blocks parse no faster here but
# pyarrow keeps more of them in flight (8 MiB: +80 MB peak RSS).
BLOCK_BYTES = 1 << 20
_PROBE_BYTES = 1 << 20


class CsvError(ValueError):
    """A CSV problem met where nobody collects problems (ingest)."""


OnProblem = Callable[[CsvProblem], None]


def _raise(path: Path) -> OnProblem:
    def on_problem(problem: CsvProblem) -> None:
        if problem.kind != "bom":  # a BOM is only worth a warning where warnings are kept
            raise CsvError(f"{path.name}, line {problem.line}: {problem.detail}")

    return on_problem


class _Unparseable(Exception):
    """Not even the header could be parsed."""


class CsvFile:
    """One CSV file read in blocks: `records()` for checking, `batches()` for loading."""

    def __init__(
        self, path: Path, on_problem: OnProblem | None = None, block_bytes: int = BLOCK_BYTES
    ) -> None:
        self.path = path
        self.on_problem = on_problem or _raise(path)
        self.block_bytes = block_bytes
        self.empty = False  # set by the readers: nothing but a BOM and blank lines

    def _names(self) -> list[str]:
        """The header as pyarrow parses it (a first, small block; problems are the reader's)."""
        block = min(self.block_bytes, _PROBE_BYTES)
        with self.path.open("rb") as f:
            while True:
                f.seek(0)
                try:
                    reader = pacsv.open_csv(
                        Utf8Stream(f, None),
                        read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
                        parse_options=parse_options(skip, keep_empty=True),
                    )
                    return list(reader.schema.names)
                except pa.ArrowInvalid as exc:
                    if block >= self.block_bytes:
                        raise _Unparseable(str(exc)) from exc
                    block = self.block_bytes

    def _open(
        self,
        stream: Utf8Stream,
        names: list[str],
        handler: Callable[[pacsv.InvalidRow], str],
        keep_empty: bool = True,
    ) -> pacsv.CSVStreamingReader:
        """The real pass: every column a string, so no value is ever converted or refused."""
        return pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=self.block_bytes, use_threads=False),
            parse_options=parse_options(handler, keep_empty),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )

    def _explain(self, detail: str) -> str:
        """pyarrow's message in a submitter's words, where it has a usual cause."""
        if "straddl" in detail:  # a record that outgrows a block
            return (
                f"a record starting here is longer than {self.block_bytes:,} bytes "
                "(is a quoted field never closed?)"
            )
        if "cannot infer number of columns" in detail:  # not even one whole record
            return "the header never ends (is a quoted field never closed?)"
        return detail.strip()

    def _malformed(self, line: int, detail: str) -> None:
        self.on_problem(CsvProblem("malformed", line, detail=self._explain(detail)))

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """(line, fields): the header first, then every record, blank and ragged ones included.

        `line` is the physical line a record starts on. Problems (BOM, bad
        bytes, unparseable rest of file) reach `on_problem` in file order,
        before the record they belong to.
        """
        pending: deque[CsvProblem] = deque()

        def flush(upto: int | None = None) -> None:
            while pending and (upto is None or (pending[0].line or 0) <= upto):
                self.on_problem(pending.popleft())

        with self.path.open("rb") as f:
            stream = Utf8Stream(f, pending)
            line = stream.first_line
            if stream.empty:
                self.empty = True
                flush()
                return
            invalid: dict[int, tuple[str, int]] = {}

            def handler(row: pacsv.InvalidRow) -> str:
                invalid[row.number] = (row.text, row.actual_columns)
                return "skip"

            try:
                names = self._names()
                reader = self._open(stream, names, handler)
            except (_Unparseable, pa.ArrowInvalid) as exc:
                flush(line)
                self._malformed(line, str(exc))
                stream.drain()
                flush()
                return
            end = line + sum(n.count("\n") for n in names)
            flush(end)
            yield line, names
            walk = Walk(reader, end + 1, invalid, flush, pending)
            yield from walk
            last = walk.last or (line, names)
            if walk.error is not None:
                flush(walk.line)
                self._malformed(walk.line, walk.error)
                stream.drain()
            elif last and "\n" in last[1][-1] and not stream.tail.rstrip().endswith(b'"'):
                # Only a quote left open swallows line ends into a file's last field.
                self._malformed(
                    last[0],
                    "the quoted field on this row runs to the end of the file "
                    "(is its closing quote missing?)",
                )
            flush()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Record batches of string columns named by the header; blank lines are dropped.

        Bad bytes go to `on_problem` (by default: raise); a ragged record that
        is not blank, or an unparseable block, raise `CsvError`: a validated
        submission has none of them.
        """
        pending: deque[CsvProblem] = deque()
        ragged: list[pacsv.InvalidRow] = []

        def handler(row: pacsv.InvalidRow) -> str:
            if not is_blank(row.text):
                ragged.append(row)
            return "skip"

        with self.path.open("rb") as f:
            stream = Utf8Stream(f, pending)
            if stream.empty:
                self.empty = True
                return
            try:
                reader = self._open(stream, self._names(), handler, keep_empty=False)
                for batch in reader:
                    while pending:
                        self.on_problem(pending.popleft())
                    if ragged:
                        row = ragged[0]
                        raise CsvError(
                            f"{self.path.name}: record {row.number} has {row.actual_columns} "
                            f"fields, the header has {row.expected_columns}"
                        )
                    yield batch
            except (_Unparseable, pa.ArrowInvalid) as exc:
                raise CsvError(f"{self.path.name}: {self._explain(str(exc))}") from exc
            while pending:
                self.on_problem(pending.popleft())
