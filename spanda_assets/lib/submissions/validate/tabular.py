"""CSV files as the checkers see them: a header, then numbered rows, problems as issues.

Parsing is `csvio.CsvFile` (pyarrow, streaming), shared with ingest. This
module turns its problems into issue codes and applies the rules every CSV
format shares: duplicate headers, blank rows skipped, ragged rows reported,
identifier columns that must be empty.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from spanda_assets.lib.submissions.csvio import CsvFile, CsvProblem
from spanda_assets.lib.submissions.validate.context import Context


def id_hash(value: str) -> bytes:
    """What is kept of an id for uniqueness and references: 8 bytes, not the id."""
    return hashlib.blake2b(value.strip().encode(), digest_size=8).digest()


class Table:
    """One CSV file being checked. `header` is None when the file holds no record."""

    def __init__(self, ctx: Context, path: Path) -> None:
        self.ctx = ctx
        self.path = path
        self.loc = ctx.rel(path)
        self._file = CsvFile(path, on_problem=self._problem)
        self._records = self._file.records()
        self.header_line = 1
        self.header: list[str] | None = None
        first = next(self._records, None)
        if first is None:
            if self._file.empty:
                ctx.add("EMPTY_FILE", self.loc)
            return
        self.header_line, names = first
        self.header = [h.strip() for h in names]
        seen: set[str] = set()
        for i, h in enumerate(self.header, start=1):
            if h in seen:
                ctx.add(
                    "CSV_DUPLICATE_HEADER", self.loc, line=self.header_line, at_column=i, column=h
                )
            seen.add(h)

    def _problem(self, problem: CsvProblem) -> None:
        if problem.kind == "bom":
            self.ctx.add("BOM_PRESENT", self.loc)
        elif problem.kind == "encoding":
            self.ctx.add(
                "INVALID_ENCODING",
                self.loc,
                line=problem.line,
                at_column=problem.column,
                detail=problem.detail,
            )
        else:
            self.ctx.add("CSV_MALFORMED", self.loc, line=problem.line, detail=problem.detail)

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Every record after the header as parsed, blank and ragged ones included."""
        return self._records

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """Non-blank rows with as many fields as the header; ragged ones become issues."""
        width = len(self.header or [])
        for line, row in self._records:
            if not "".join(row).strip():  # blank: only whitespace in every field
                continue
            self.ctx.report.rows_checked += 1
            if len(row) != width:
                self.ctx.add("CSV_RAGGED_ROW", self.loc, line=line, found=len(row), expected=width)
                continue
            yield line, row

    def report_identifiers(self, first_values: dict[str, int]) -> None:
        """One issue per identifier column that holds a value (at its first such row)."""
        for name, line in first_values.items():
            self.ctx.add("IDENTIFIER_NOT_DEIDENTIFIED", self.loc, line=line, column=name)
