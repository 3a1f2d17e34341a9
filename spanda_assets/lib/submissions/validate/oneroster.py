"""1EdTech OneRoster 1.1 CSV: a `manifest.csv` at the root and the roster files it declares.

Files are checked in reference order (orgs before the courses that point to
them, ...) so every foreign key is resolved in one pass over each file; only
8-byte hashes of ids are kept.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.rules import MANIFEST
from spanda_assets.lib.submissions.validate.tabular import Table, id_hash

DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
# Referenced files first, so references can be resolved in one pass each.
ORDER = [
    "orgs",
    "academicSessions",
    "courses",
    "categories",
    "classes",
    "users",
    "lineItems",
    "enrollments",
    "results",
    "demographics",
]


class OneRosterChecker:
    """Manifest keys and modes, declared files present, values, uniqueness and references."""

    name = "OneRoster 1.1"

    def claims(self, path: Path, ctx: Context) -> bool:
        return path == ctx.root / MANIFEST

    def check(self, path: Path, ctx: Context) -> set[Path]:
        spec = ctx.rules["oneroster"]
        used = {path}
        entries: dict[str, str] = {}
        manifest = Table(ctx, path)
        for _line, row in manifest.records():
            if len(row) >= 2:
                entries[row[0].strip()] = row[1].strip()
        if manifest.header is None:
            return used
        for key in ("manifest.version", "oneroster.version"):
            if key not in entries:
                ctx.add("ONEROSTER_MANIFEST_KEY_MISSING", MANIFEST, key=key)
        declared: dict[str, str] = {}
        for key, value in entries.items():
            if key.startswith("file."):
                if value not in ("bulk", "delta", "absent"):
                    ctx.add("ONEROSTER_MANIFEST_VALUE", MANIFEST, key=key, value=value)
                declared[key[5:]] = value
        present = {
            p.stem: p
            for p in ctx.files
            if p.parent == ctx.root and p.suffix == ".csv" and p.stem in spec["files"]
        }
        for name, mode in declared.items():
            if mode in ("bulk", "delta") and name not in present:
                ctx.add("ONEROSTER_FILE_MISSING", f"{name}.csv", name=f"{name}.csv", mode=mode)
        for name, p in present.items():
            used.add(p)
            if declared.get(name) not in ("bulk", "delta"):
                ctx.add("ONEROSTER_FILE_NOT_IN_MANIFEST", ctx.rel(p))
        ids: dict[str, set[bytes]] = {}
        for name in ORDER:
            if name in present and present[name].stat().st_size > 0:
                ids[name] = _check_file(
                    ctx, present[name], spec["files"][name], spec["statuses"], ids
                )
        return used


def _check_file(
    ctx: Context, p: Path, spec: dict[str, Any], statuses: list[str], ids: dict[str, set[bytes]]
) -> set[bytes]:
    """Check one roster file; returns the hashes of its sourcedIds for later references."""
    table = Table(ctx, p)
    loc = table.loc
    header = table.header
    own: dict[bytes, int] = {}
    if header is None:
        return set()
    index = {h: i for i, h in enumerate(header)}
    for col in spec["required"]:
        if col not in index:
            ctx.add("CSV_COLUMN_MISSING", loc, line=table.header_line, column=col)
    enums = {c: set(v) for c, v in (spec.get("enums") or {}).items() if c in index}
    enums["status"] = set(statuses) if "status" in index else set()
    enums = {c: v for c, v in enums.items() if v}
    typed = [
        (c, DATE, "date", "YYYY-MM-DD (ISO 8601)") for c in spec.get("dates", []) if c in index
    ] + [
        (c, DECIMAL, "decimal", "a decimal number such as 87.5")
        for c in spec.get("decimals", [])
        if c in index
    ]
    refs = {c: t for c, t in (spec.get("refs") or {}).items() if c in index}
    listed = ctx.rules["identifier_columns"]["oneroster"].get(p.stem, [])
    identifier_cols = [c for c in listed if c in index]
    first_identifier: dict[str, int] = {}
    sid = index.get("sourcedId")
    for line, row in table.rows():
        if sid is not None:
            if not row[sid].strip():
                ctx.add("CSV_VALUE_REQUIRED", loc, line=line, column="sourcedId")
            else:
                h = id_hash(row[sid])
                if h in own:
                    ctx.add(
                        "DUPLICATE_SOURCED_ID",
                        loc,
                        line=line,
                        at_column="sourcedId",
                        value=row[sid],
                        first=own[h],
                    )
                else:
                    own[h] = line
        for c, allowed in enums.items():
            v = row[index[c]]
            if v not in allowed:
                ctx.add(
                    "CSV_VALUE_NOT_ALLOWED",
                    loc,
                    line=line,
                    column=c,
                    value=v,
                    allowed=", ".join(sorted(a for a in allowed if a)),
                )
        for c, pattern, kind, hint in typed:
            v = row[index[c]]
            if v and not pattern.match(v):
                ctx.add(
                    "CSV_VALUE_INCORRECT_TYPE",
                    loc,
                    line=line,
                    column=c,
                    value=v,
                    type=kind,
                    hint=hint,
                )
        for c, target in refs.items():
            v = row[index[c]]
            if v and target in ids and id_hash(v) not in ids[target]:
                ctx.add(
                    "FOREIGN_KEY_MISSING", loc, line=line, column=c, value=v, target=f"{target}.csv"
                )
        for c in identifier_cols:
            if c not in first_identifier and row[index[c]].strip():
                first_identifier[c] = line
    table.report_identifiers(first_identifier)
    return set(own)
