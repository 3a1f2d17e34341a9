"""Generic CSV with a JSON sidecar (`x.csv` + `x.json`) describing every column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.tabular import Table


class SidecarCsvChecker:
    """Columns described, identifier columns empty, free text and small cells screened."""

    name = "CSV + sidecar"

    def claims(self, path: Path, ctx: Context) -> bool:
        return path.suffix == ".csv"

    def check(self, path: Path, ctx: Context) -> set[Path]:
        loc = ctx.rel(path)
        sidecar = path.with_suffix(".json")
        used = {path}
        described: dict[str, Any] = {}
        aggregate: dict[str, Any] = {}
        if not sidecar.is_file():
            ctx.add("SIDECAR_MISSING", loc, sidecar=sidecar.name)
        else:
            used.add(sidecar)
            doc = ctx.load_json(sidecar)
            if isinstance(doc, dict):
                described = doc.get("columns") or {}
                aggregate = doc.get("aggregate") or {}
        table = Table(ctx, path)
        header = table.header
        if header is None:
            return used
        if sidecar.is_file():
            for h in header:
                if h not in described:
                    ctx.add(
                        "SIDECAR_COLUMN_UNDESCRIBED",
                        loc,
                        line=table.header_line,
                        column=h,
                        sidecar=sidecar.name,
                    )
        identifiers = set(ctx.rules["identifier_columns"]["generic"])
        text_cols = [
            i for i, h in enumerate(header) if (described.get(h) or {}).get("type") == "text"
        ]
        count_cols = [header.index(c) for c in aggregate.get("count_columns", []) if c in header]
        threshold = int(ctx.limits["small_cell_threshold"])
        first_identifier: dict[str, int] = {}
        for line, row in table.rows():
            for i, h in enumerate(header):
                if h in identifiers and h not in first_identifier and row[i].strip():
                    first_identifier[h] = line
            for i in text_cols:
                ctx.free_text(loc, line, header[i], row[i])
            for i in count_cols:
                v = row[i].strip()
                if v.isdigit() and 0 < int(v) < threshold:
                    ctx.add(
                        "SMALL_CELL", loc, line=line, column=header[i], value=v, threshold=threshold
                    )
        table.report_identifiers(first_identifier)
        return used
