"""From pyarrow's numbered records to physical lines, ragged records in their place.

pyarrow counts records, not lines, and hands ragged records to an
invalid-row handler instead of the batches. `Walk` merges both back into file
order and gives each record the line it starts on.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from spanda_assets.lib.submissions.csvio.stream import CsvProblem

ROWS_PER_SLICE = 4096  # rows turned into Python objects at a time (bounds memory)


def parse_options(
    handler: Callable[[pacsv.InvalidRow], str], keep_empty: bool
) -> pacsv.ParseOptions:
    """Quoted values may hold line ends (the old reader allowed them, so submitters use them)."""
    return pacsv.ParseOptions(
        newlines_in_values=True, ignore_empty_lines=not keep_empty, invalid_row_handler=handler
    )


def skip(_row: pacsv.InvalidRow) -> str:
    """The invalid-row handler of a pass that only wants the header."""
    return "skip"


def _fields(text: str, count: int) -> list[str]:
    """The fields of one ragged record, parsed alone now that its width is known."""
    names = [f"f{i}" for i in range(count)]
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False),
            parse_options=parse_options(skip, keep_empty=True),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False
            ),
        )
        return [str(table.column(i)[0].as_py()) for i in range(count)]
    except (pa.ArrowInvalid, IndexError):
        return [text] + [""] * (count - 1)


def is_blank(text: str) -> bool:
    """A raw record with nothing but delimiters and whitespace (the validator skips those)."""
    return not text.replace(",", "").strip()


def _newlines(part: pa.RecordBatch) -> list[int] | None:
    """Newlines inside each row's values (None when there are none, the common case)."""
    total: list[int] | None = None
    for column in part.columns:
        counts = pc.count_substring(column, "\n")
        if pc.max(counts).as_py():
            add = counts.to_pylist()
            total = add if total is None else [a + b for a, b in zip(total, add, strict=True)]
    return total


class Walk:
    """(line, fields) of every record after the header, in file order.

    pyarrow numbers records (the header is 1) and hands ragged ones to the
    invalid-row handler, which fills `invalid` before the batch that follows
    them arrives; lines advance by one per record plus its quoted newlines.
    Problems queued by the stream are flushed before the record they fall in.
    An unparseable block ends the walk with `error` set and `line` where the
    unread part begins.
    """

    def __init__(
        self,
        reader: pacsv.CSVStreamingReader,
        line: int,
        invalid: dict[int, tuple[str, int]],
        flush: Callable[[int], None],
        pending: deque[CsvProblem],
    ) -> None:
        self.reader = reader
        self.line = line
        self.record = 2
        self.invalid = invalid
        self.flush = flush
        self.pending = pending
        self.error: str | None = None
        self.last: tuple[int, list[str]] | None = None

    def _ragged(self) -> Iterator[tuple[int, list[str]]]:
        """The ragged records numbered from the current one on, while they follow each other."""
        while self.record in self.invalid:
            text, count = self.invalid.pop(self.record)
            start, self.line = self.line, self.line + 1 + text.count("\n")
            self.record += 1
            if self.pending:
                self.flush(self.line - 1)
            self.last = (start, _fields(text, count))
            yield self.last

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        batches = iter(self.reader)
        while True:
            try:
                batch = next(batches, None)
            except pa.ArrowInvalid as exc:
                self.error = str(exc)
                break
            if batch is None:
                break
            for offset in range(0, batch.num_rows, ROWS_PER_SLICE):
                part = batch.slice(offset, ROWS_PER_SLICE)
                rows = zip(*(c.to_pylist() for c in part.columns), strict=True)
                newlines = _newlines(part)
                if newlines is None and not self.invalid and not self.pending:
                    start = self.line  # the common case: one line per record, nothing to report
                    for values in rows:
                        yield start, list(values)
                        start += 1
                    self.line, self.record = start, self.record + part.num_rows
                    self.last = (start - 1, list(values))
                    continue
                for i, values in enumerate(rows):
                    yield from self._ragged()
                    start, self.line = self.line, self.line + 1 + (newlines[i] if newlines else 0)
                    self.record += 1
                    if self.pending:
                        self.flush(self.line - 1)
                    self.last = (start, list(values))
                    yield self.last
        yield from self._ragged()
        for number in sorted(self.invalid):  # not expected: a gap in pyarrow's numbering
            self.record = number
            yield from self._ragged()
