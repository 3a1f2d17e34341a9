"""`spanda validate`: check a dataset submission the way the BIDS validator checks BIDS.

A submission is a folder (or a .zip of one) with `dataset_description.json` and
data files in education formats: OneRoster 1.1 CSV, xAPI statements (JSON
Lines), or generic CSV with a JSON sidecar describing each column. Rules are
data (`schemas/submission_rules.yaml`); every issue has a code, a severity,
the file, the line and column where known, a message and a suggestion.

Files are read line by line: memory depends on the number of distinct ids kept
for uniqueness and references, not on file size. Malformed input (bad
encoding, ragged rows, duplicate headers, broken JSON, hostile archives)
becomes an issue with a code, never a traceback.
"""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import json
import re
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

DESCRIPTION = "dataset_description.json"
MANIFEST = "manifest.csv"
CONFIG_FILE = ".spanda-validator.yaml"
IGNORE_FILE = ".spandaignore"
MAX_PER_CODE_AND_FILE = 50
_DATE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
SEVERITIES = ("error", "warning", "ignore")


@cache
def rules() -> dict[str, Any]:
    text = resources.files("spanda_assets").joinpath("schemas/submission_rules.yaml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


@dataclass
class Issue:
    code: str
    severity: str
    location: str
    message: str
    suggestion: str
    line: int | None = None
    column: int | str | None = None


@dataclass
class Report:
    root: str
    issues: list[Issue] = field(default_factory=list)
    suppressed: dict[str, int] = field(default_factory=dict)
    files_checked: int = 0
    rows_checked: int = 0
    formats: list[str] = field(default_factory=list)
    rules_version: str = ""

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps(
            {
                "valid": self.valid,
                "root": self.root,
                "rules_version": self.rules_version,
                "formats": self.formats,
                "files_checked": self.files_checked,
                "rows_checked": self.rows_checked,
                "summary": {"errors": len(self.errors), "warnings": len(self.warnings)},
                "suppressed": self.suppressed,
                "issues": [asdict(i) for i in self.issues],
            },
            indent=2,
        )

    def to_text(self) -> str:
        out = [
            f"spanda validate {self.root} (rules {self.rules_version})",
            f"  formats: {', '.join(self.formats) or 'none recognised'}; "
            f"{self.files_checked} file(s), {self.rows_checked:,} row(s) checked",
        ]
        for severity in ("error", "warning"):
            group = [i for i in self.issues if i.severity == severity]
            if not group:
                continue
            out.append(f"\n{severity.upper()}S ({len(group)})")
            for i in group:
                where = (
                    i.location
                    + (f":{i.line}" if i.line else "")
                    + (f" col {i.column}" if i.column not in (None, "") else "")
                )
                out.append(f"  [{i.code}] {where}: {i.message}")
                out.append(f"      -> {i.suggestion}")
        for code, n in sorted(self.suppressed.items()):
            out.append(f"  ({n} more {code} not listed)")
        verdict = "VALID" if self.valid else "INVALID"
        out.append(f"\n{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(out)


@dataclass
class Config:
    """Reclassify (`rules: {CODE: warning}`) or ignore issues by code and location glob."""

    severities: dict[str, str] = field(default_factory=dict)
    ignore: list[dict[str, str]] = field(default_factory=list)
    ignore_globs: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, path: Path | None = None) -> Config:
        cfg = cls()
        source = path or (root / CONFIG_FILE if (root / CONFIG_FILE).is_file() else None)
        if source is not None:
            doc = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
            for code, sev in (doc.get("rules") or {}).items():
                if sev not in SEVERITIES:
                    raise ValueError(f"{source}: severity of {code} must be one of {SEVERITIES}")
                cfg.severities[code] = sev
            cfg.ignore = list(doc.get("ignore") or [])
            cfg.limits = dict(doc.get("limits") or {})
        ignore_file = root / IGNORE_FILE
        if ignore_file.is_file():
            cfg.ignore_globs = [
                line.strip()
                for line in ignore_file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")
            ]
        return cfg


class Validator:
    def __init__(self, root: Path, config: Config | None = None) -> None:
        self.root = root
        self.config = config or Config()
        self.rules = rules()
        self.limits = {**self.rules["limits"], **self.config.limits}
        self.report = Report(root=str(root), rules_version=str(self.rules["version"]))
        self._counts: dict[tuple[str, str], int] = {}

    # -- issue bookkeeping ------------------------------------------------------------

    def add(
        self,
        code: str,
        location: str,
        line: int | None = None,
        at_column: int | str | None = None,
        **fmt: Any,
    ) -> None:
        """Record an issue; `fmt` fills the message (its `column` is also the location)."""
        spec = self.rules["issues"][code]
        severity = self.config.severities.get(code, spec["severity"])
        if severity == "ignore":
            return
        for rule in self.config.ignore:
            if rule.get("code") in (None, code) and fnmatch.fnmatch(
                location, rule.get("location", "*")
            ):
                return
        key = (code, location)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._counts[key] > MAX_PER_CODE_AND_FILE:
            self.report.suppressed[code] = self.report.suppressed.get(code, 0) + 1
            return
        self.report.issues.append(
            Issue(
                code=code,
                severity=severity,
                location=location,
                line=line,
                column=at_column if at_column is not None else fmt.get("column"),
                message=spec["message"].format(**fmt),
                suggestion=spec["suggestion"].format(**fmt),
            )
        )

    # -- entry point -------------------------------------------------------------------

    def run(self) -> Report:
        files = sorted(
            p
            for p in self.root.rglob("*")
            if p.is_file()
            and p.name not in (CONFIG_FILE, IGNORE_FILE)
            and not any(fnmatch.fnmatch(self.rel(p), g) for g in self.config.ignore_globs)
        )
        known: set[Path] = set()
        description = self.root / DESCRIPTION
        if description.is_file():
            known.add(description)
            self.check_description(description)
        else:
            self.add("MISSING_DATASET_DESCRIPTION", DESCRIPTION)
        for p in files:
            if p.stat().st_size == 0:
                self.add("EMPTY_FILE", self.rel(p))
                known.add(p)
            elif p.stat().st_size > self.limits["max_file_bytes"]:
                self.add(
                    "FILE_TOO_LARGE",
                    self.rel(p),
                    size=p.stat().st_size,
                    limit=self.limits["max_file_bytes"],
                )
                known.add(p)
        manifest = self.root / MANIFEST
        if manifest.is_file() and manifest not in known:
            self.report.formats.append("OneRoster 1.1")
            known |= self.check_oneroster(manifest, files)
        for p in files:
            if p in known:
                continue
            if p.suffix == ".jsonl":
                if "xAPI" not in self.report.formats:
                    self.report.formats.append("xAPI")
                self.check_xapi(p)
                known.add(p)
            elif p.suffix == ".csv":
                if "CSV + sidecar" not in self.report.formats:
                    self.report.formats.append("CSV + sidecar")
                known |= self.check_generic_csv(p)
        for p in files:
            if p not in known and not (p.suffix == ".json" and p.with_suffix(".csv").is_file()):
                self.add("UNKNOWN_FILE", self.rel(p))
        self.report.files_checked = len(files)
        return self.report

    def rel(self, p: Path) -> str:
        return p.relative_to(self.root).as_posix()

    # -- JSON ---------------------------------------------------------------------------

    def load_json(self, p: Path) -> Any:
        raw = p.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):
            self.add("BOM_PRESENT", self.rel(p))
            raw = raw[3:]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            self.add(
                "INVALID_ENCODING", self.rel(p), line=line, detail=f"byte {exc.start}: {exc.reason}"
            )
            return None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            self.add(
                "JSON_INVALID", self.rel(p), line=exc.lineno, at_column=exc.colno, detail=exc.msg
            )
            return None

    def check_description(self, p: Path) -> None:
        doc = self.load_json(p)
        if doc is None:
            return
        if not isinstance(doc, dict):
            self.add("JSON_INVALID", DESCRIPTION, detail="the top level must be an object")
            return
        spec = self.rules["dataset_description"]
        for key in spec["required"]:
            if doc.get(key) in (None, "", []):
                self.add("JSON_KEY_REQUIRED", DESCRIPTION, key=key)
        for key in spec["recommended"]:
            if doc.get(key) in (None, "", []):
                self.add("JSON_KEY_RECOMMENDED", DESCRIPTION, key=key)
        if doc.get("ConsentBasis") in (None, "", []):
            self.add("CONSENT_BASIS_MISSING", DESCRIPTION)

    # -- CSV ----------------------------------------------------------------------------

    def csv_rows(self, p: Path) -> Iterator[tuple[int, list[str]]]:
        """(line number, fields) for every row after the header; header first as line 1."""
        loc = self.rel(p)

        def lines() -> Iterator[str]:
            with p.open("rb") as f:
                for n, raw in enumerate(f, start=1):
                    data = raw
                    if n == 1 and data.startswith(b"\xef\xbb\xbf"):
                        self.add("BOM_PRESENT", loc)
                        data = data[3:]
                    try:
                        yield data.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        self.add(
                            "INVALID_ENCODING",
                            loc,
                            line=n,
                            at_column=exc.start + 1,
                            detail=exc.reason,
                        )
                        yield data.decode("utf-8", errors="replace")

        reader = csv.reader(lines())
        try:
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:
            self.add("CSV_RAGGED_ROW", loc, line=reader.line_num, found="?", expected=f"? ({exc})")

    def data_rows(
        self, loc: str, rows: Iterator[tuple[int, list[str]]], width: int
    ) -> Iterator[tuple[int, list[str]]]:
        """Non-blank rows with as many fields as the header; ragged ones become issues."""
        for line, row in rows:
            if not any(v.strip() for v in row):
                continue
            self.report.rows_checked += 1
            if len(row) != width:
                self.add("CSV_RAGGED_ROW", loc, line=line, found=len(row), expected=width)
                continue
            yield line, row

    def read_header(self, p: Path, rows: Iterator[tuple[int, list[str]]]) -> list[str] | None:
        first = next(rows, None)
        if first is None:
            return None
        header = [h.strip() for h in first[1]]
        seen: set[str] = set()
        for i, h in enumerate(header, start=1):
            if h in seen:
                self.add("CSV_DUPLICATE_HEADER", self.rel(p), line=1, at_column=i, column=h)
            seen.add(h)
        return header

    def check_identifiers(self, p: Path, header: list[str], first_values: dict[str, int]) -> None:
        for name, line in first_values.items():
            self.add("IDENTIFIER_NOT_DEIDENTIFIED", self.rel(p), line=line, column=name)

    # -- OneRoster ----------------------------------------------------------------------

    def check_oneroster(self, manifest: Path, files: list[Path]) -> set[Path]:
        spec = self.rules["oneroster"]
        used = {manifest}
        entries: dict[str, str] = {}
        rows = self.csv_rows(manifest)
        header = self.read_header(manifest, rows)
        for _line, row in rows:
            if len(row) >= 2:
                entries[row[0].strip()] = row[1].strip()
        if header is None:
            return used
        for key in ("manifest.version", "oneroster.version"):
            if key not in entries:
                self.add("ONEROSTER_MANIFEST_KEY_MISSING", MANIFEST, key=key)
        declared: dict[str, str] = {}
        for key, value in entries.items():
            if key.startswith("file."):
                if value not in ("bulk", "delta", "absent"):
                    self.add("ONEROSTER_MANIFEST_VALUE", MANIFEST, key=key, value=value)
                declared[key[5:]] = value
        present = {
            p.stem: p
            for p in files
            if p.parent == self.root and p.suffix == ".csv" and p.stem in spec["files"]
        }
        for name, mode in declared.items():
            if mode in ("bulk", "delta") and name not in present:
                self.add("ONEROSTER_FILE_MISSING", f"{name}.csv", name=f"{name}.csv", mode=mode)
        for name, p in present.items():
            used.add(p)
            if declared.get(name) not in ("bulk", "delta"):
                self.add("ONEROSTER_FILE_NOT_IN_MANIFEST", self.rel(p))
        # Referenced files first, so references can be resolved in one pass each.
        order = [
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
        ids: dict[str, set[bytes]] = {}
        for name in order:
            if name in present and present[name].stat().st_size > 0:
                ids[name] = self.check_oneroster_file(
                    present[name], spec["files"][name], spec["statuses"], ids
                )
        return used

    def check_oneroster_file(
        self, p: Path, spec: dict[str, Any], statuses: list[str], ids: dict[str, set[bytes]]
    ) -> set[bytes]:
        loc = self.rel(p)
        rows = self.csv_rows(p)
        header = self.read_header(p, rows)
        own: dict[bytes, int] = {}
        if header is None:
            return set()
        index = {h: i for i, h in enumerate(header)}
        for col in spec["required"]:
            if col not in index:
                self.add("CSV_COLUMN_MISSING", loc, line=1, column=col)
        enums = {c: set(v) for c, v in (spec.get("enums") or {}).items() if c in index}
        enums["status"] = set(statuses) if "status" in index else set()
        enums = {c: v for c, v in enums.items() if v}
        typed = [
            (c, _DATE, "date", "YYYY-MM-DD (ISO 8601)") for c in spec.get("dates", []) if c in index
        ] + [
            (c, _DECIMAL, "decimal", "a decimal number such as 87.5")
            for c in spec.get("decimals", [])
            if c in index
        ]
        refs = {c: t for c, t in (spec.get("refs") or {}).items() if c in index}
        listed = self.rules["identifier_columns"]["oneroster"].get(p.stem, [])
        identifier_cols = [c for c in listed if c in index]
        first_identifier: dict[str, int] = {}
        must_fill = [c for c in ("sourcedId",) if c in index]
        sid = index.get("sourcedId")
        width = len(header)
        for line, row in self.data_rows(loc, rows, width):
            for c in must_fill:
                if not row[index[c]].strip():
                    self.add("CSV_VALUE_REQUIRED", loc, line=line, column=c)
            if sid is not None and row[sid].strip():
                h = _hash(row[sid])
                if h in own:
                    self.add(
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
                    self.add(
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
                    self.add(
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
                if v and target in ids and _hash(v) not in ids[target]:
                    self.add(
                        "FOREIGN_KEY_MISSING",
                        loc,
                        line=line,
                        column=c,
                        value=v,
                        target=f"{target}.csv",
                    )
            for c in identifier_cols:
                if c not in first_identifier and row[index[c]].strip():
                    first_identifier[c] = line
        self.check_identifiers(p, header, first_identifier)
        return set(own)

    # -- xAPI -----------------------------------------------------------------------------

    def check_xapi(self, p: Path) -> None:
        loc = self.rel(p)
        with p.open("rb") as f:
            for n, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                self.report.rows_checked += 1
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    self.add(
                        "INVALID_ENCODING", loc, line=n, at_column=exc.start + 1, detail=exc.reason
                    )
                    continue
                try:
                    stmt = json.loads(text)
                except json.JSONDecodeError as exc:
                    self.add("JSON_INVALID", loc, line=n, at_column=exc.colno, detail=exc.msg)
                    continue
                problem = _xapi_problem(stmt)
                if problem:
                    self.add("XAPI_STATEMENT_INVALID", loc, line=n, detail=problem)
                else:
                    self._free_text(
                        loc,
                        n,
                        "object.definition",
                        json.dumps(stmt.get("result", {})) + json.dumps(stmt.get("object", {})),
                    )

    # -- generic CSV with sidecar ------------------------------------------------------

    def check_generic_csv(self, p: Path) -> set[Path]:
        loc = self.rel(p)
        sidecar = p.with_suffix(".json")
        used = {p}
        described: dict[str, Any] = {}
        aggregate: dict[str, Any] = {}
        if not sidecar.is_file():
            self.add("SIDECAR_MISSING", loc, sidecar=sidecar.name)
        else:
            used.add(sidecar)
            doc = self.load_json(sidecar)
            if isinstance(doc, dict):
                described = doc.get("columns") or {}
                aggregate = doc.get("aggregate") or {}
        rows = self.csv_rows(p)
        header = self.read_header(p, rows)
        if header is None:
            return used
        if sidecar.is_file():
            for h in header:
                if h not in described:
                    self.add(
                        "SIDECAR_COLUMN_UNDESCRIBED", loc, line=1, column=h, sidecar=sidecar.name
                    )
        width = len(header)
        identifiers = set(self.rules["identifier_columns"]["generic"])
        text_cols = [
            i for i, h in enumerate(header) if (described.get(h) or {}).get("type") == "text"
        ]
        count_cols = [header.index(c) for c in aggregate.get("count_columns", []) if c in header]
        threshold = int(self.limits["small_cell_threshold"])
        first_identifier: dict[str, int] = {}
        for line, row in self.data_rows(loc, rows, width):
            for i, h in enumerate(header):
                if h in identifiers and h not in first_identifier and row[i].strip():
                    first_identifier[h] = line
            for i in text_cols:
                self._free_text(loc, line, header[i], row[i])
            for i in count_cols:
                v = row[i].strip()
                if v.isdigit() and 0 < int(v) < threshold:
                    self.add(
                        "SMALL_CELL", loc, line=line, column=header[i], value=v, threshold=threshold
                    )
        self.check_identifiers(p, header, first_identifier)
        return used

    def _free_text(self, loc: str, line: int, column: str, text: str) -> None:
        from spanda_assets.lib.privacy.scrub import find_spans

        for span in find_spans(text):
            if span.category in ("EMAIL", "PHONE", "SSN", "IP", "URL"):
                self.add(
                    "FREE_TEXT_PII", loc, line=line, column=column, category=span.category.lower()
                )
                return


def _hash(value: str) -> bytes:
    return hashlib.blake2b(value.strip().encode(), digest_size=8).digest()


def _xapi_problem(stmt: Any) -> str | None:
    if not isinstance(stmt, dict):
        return "a statement must be a JSON object"
    missing = [k for k in ("actor", "verb", "object") if k not in stmt]
    if missing:
        return f"missing {', '.join(missing)}"
    verb = stmt["verb"]
    if not isinstance(verb, dict) or not isinstance(verb.get("id"), str) or "://" not in verb["id"]:
        return "verb.id must be an IRI"
    actor = stmt["actor"]
    if not isinstance(actor, dict):
        return "actor must be an object"
    if not any(k in actor for k in ("mbox", "mbox_sha1sum", "openid", "account", "member")):
        return "actor needs an identifier (account, mbox_sha1sum, openid, mbox)"
    if "mbox" in actor:
        return (
            "actor.mbox is an email address: use account or mbox_sha1sum in a de-identified "
            "submission"
        )
    obj = stmt["object"]
    if not isinstance(obj, dict) or "id" not in obj:
        return "object.id is required"
    return None


# ----------------------------------------------------------------------------- archives


def safe_extract(archive: Path, into: Path, limits: dict[str, int], add: Any) -> bool:
    """Extract a .zip after refusing path traversal and decompression bombs."""
    try:
        with zipfile.ZipFile(archive) as z:
            total = 0
            for info in z.infolist():
                name = info.filename
                target = (into / name).resolve()
                if (
                    name.startswith(("/", "\\"))
                    or ".." in Path(name).parts
                    or not str(target).startswith(str(into.resolve()))
                ):
                    add("ARCHIVE_PATH_TRAVERSAL", archive.name, member=name)
                    return False
                total += info.file_size
            compressed = max(1, archive.stat().st_size)
            ratio = total / compressed
            if total > limits["max_archive_bytes"] or ratio > limits["max_compression_ratio"]:
                add("ARCHIVE_BOMB", archive.name, size=total, ratio=int(ratio))
                return False
            z.extractall(into)
    except (zipfile.BadZipFile, OSError) as exc:
        add("ARCHIVE_INVALID", archive.name, detail=str(exc))
        return False
    return True


def validate(path: Path, config_path: Path | None = None) -> Report:
    """Validate a submission folder or .zip archive."""
    if path.is_file() and path.suffix == ".zip":
        tmp = Path(tempfile.mkdtemp(prefix="spanda-submission-"))
        probe = Validator(tmp)
        if not safe_extract(path, tmp, probe.limits, probe.add):
            probe.report.root = str(path)
            return probe.report
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
        report = Validator(root, Config.load(root, config_path)).run()
        report.root = str(path)
        return report
    return Validator(path, Config.load(path, config_path)).run()
