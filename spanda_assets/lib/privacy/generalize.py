"""Safe Harbor generalizations: dates to years, ZIP to ZIP3, ages over 89 to "90+"."""

from __future__ import annotations

import datetime as dt
from functools import cache
from importlib import resources

import pyarrow as pa
import pyarrow.compute as pc
import yaml

AGE_CAP = 89
OVER_CAP = "90+"


@cache
def restricted_zip3() -> frozenset[str]:
    """The versioned list of ZIP3 areas with 20,000 people or fewer."""
    text = resources.files("spanda_assets").joinpath("schemas/restricted_zip3.yaml").read_text()
    doc = yaml.safe_load(text)
    return frozenset(str(p).zfill(3) for p in doc["prefixes"])


def year(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Dates and timestamps to their year (int32); NULL stays NULL."""
    if pa.types.is_null(values.type):  # a column that is all NULL at the source
        return pa.nulls(len(values), pa.int32())
    return pc.cast(pc.year(values), pa.int32())


def zip3(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`02139-4307` -> `021`; restricted areas -> `000`; anything not a ZIP -> NULL."""
    restricted = restricted_zip3()
    out: list[str | None] = []
    for v in values.to_pylist():
        digits = (v or "").strip()[:5]
        if len(digits) < 3 or not digits[:3].isdigit():
            out.append(None)
            continue
        prefix = digits[:3]
        out.append("000" if prefix in restricted else prefix)
    return pa.array(out, type=pa.string())


def age_on(birth: dt.date, on: dt.date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def birth_year(values: pa.Array | pa.ChunkedArray, on: dt.date) -> pa.Array:
    """Birth dates to birth year; anyone over 89 on `on` becomes "90+" (year withheld)."""
    out: list[str | None] = []
    for v in values.to_pylist():
        if v is None:
            out.append(None)
            continue
        born = v.date() if isinstance(v, dt.datetime) else v
        out.append(OVER_CAP if age_on(born, on) > AGE_CAP else str(born.year))
    return pa.array(out, type=pa.string())
