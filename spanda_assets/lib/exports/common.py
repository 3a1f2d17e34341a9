"""What both export formats share: how a year becomes a date, how a number becomes text,
and how a file is written so that the same rows always give the same bytes."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from spanda_assets.lib.errors import SpandaError


class ExportError(SpandaError):
    """An export cannot be made from the tables as they are; says what to change."""


# Gold keeps dates as years only (Safe Harbor keeps no finer date element). A year that
# stands for a point in time or the start of a period becomes its first day; a year
# that ends a period becomes its last day, so the period still covers the whole year.
def year_start(year: int | None) -> str:
    """2026 -> 2026-01-01 (a point in time or a start); None -> ''."""
    return "" if year is None else f"{int(year):04d}-01-01"


def year_end(year: int | None) -> str:
    """2026 -> 2026-12-31 (the end of a period); None -> ''."""
    return "" if year is None else f"{int(year):04d}-12-31"


def number_text(value: Any) -> str:
    """A number as plain decimal text (no exponent, the scale gold keeps): 18.55, 20.00, 3."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(int(value))


def number_json(value: Any) -> float | int:
    """A number as JSON takes it (Decimal is not a JSON type)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, float):
        return value
    return int(value)


def require_columns(batch_schema: pa.Schema, columns: Sequence[str], table: str) -> None:
    missing = [c for c in columns if c not in batch_schema.names]
    if missing:
        raise ExportError(
            f"{table} lacks column(s) {', '.join(missing)} that the export maps; "
            "restore them in the gold table's spec (lib/validation/gold.py) or change the "
            "export's mapping (docs/exports.md)"
        )


def rows_of(batch: pa.RecordBatch, columns: Sequence[str]) -> Iterable[tuple[Any, ...]]:
    """The batch's rows as tuples of Python values, in `columns` order."""
    return zip(*(batch.column(c).to_pylist() for c in columns), strict=True)


class DurableFile:
    """A text file written once, counted, flushed and fsynced on close.

    CSV uses RFC 4180 line ends (CRLF) and minimal quoting; JSON lines end in LF. The
    encoding is UTF-8 without a byte-order mark."""

    def __init__(self, path: Path, newline: str) -> None:
        self.path = path
        self.rows = 0
        self._raw = path.open("wb")
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline=newline)

    def write(self, text: str) -> None:
        self._text.write(text)

    def close(self) -> None:
        if self._text.closed:
            return
        self._text.flush()
        os.fsync(self._raw.fileno())
        self._text.close()

    def __enter__(self) -> DurableFile:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class CsvFile(DurableFile):
    """A CSV file with a header; `row()` writes one record."""

    def __init__(self, path: Path, header: Sequence[str]) -> None:
        super().__init__(path, newline="")
        self.header = tuple(header)
        self._csv = csv.writer(self._text, lineterminator="\r\n")
        self._csv.writerow(self.header)

    def row(self, values: Sequence[str]) -> None:
        if len(values) != len(self.header):  # a mapping bug, never a data problem
            raise ValueError(f"{self.path.name}: {len(values)} values for {len(self.header)}")
        self._csv.writerow(values)
        self.rows += 1

    def __enter__(self) -> CsvFile:
        return self


# The columns both exports read from gold.validated_assessments (results, scored events).
ASSESSMENT_COLUMNS = (
    "result_id",
    "subject_id",
    "course_id",
    "assessment_name",
    "score",
    "max_score",
    "submitted_at_year",
    "attempt_no",
)
