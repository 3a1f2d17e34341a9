"""Ingest a validated submission as de-identified Iceberg tables `submissions.<dataset>__<file>`.

The same privacy layer as silver: identifier columns are dropped, ids are
replaced by keyed pseudonyms (namespaced per dataset, so two submissions
cannot be joined on a partner's ids), and free-text columns are scrubbed.
CSV files stream in Arrow batches and each table is replaced in one commit, so
re-ingesting a resubmission is idempotent. The commit goes to the table's audit
branch: the asset publishes the tables after the residual-PII scan of all of
them passed (write-audit-publish).
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.lakehouse import ensure_namespace, load_table_or_none
from spanda_assets.lib.naming import snake_case
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer
from spanda_assets.lib.privacy.scrub import scrub
from spanda_assets.lib.submissions.csvio import CsvFile
from spanda_assets.lib.submissions.validate.archive import safe_extract
from spanda_assets.lib.submissions.validate.config import Config
from spanda_assets.lib.submissions.validate.digest import stage_validated
from spanda_assets.lib.submissions.validate.rules import DESCRIPTION, MANIFEST, rules

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

BATCH_BYTES = 32 << 20


def _is_id(column: str) -> bool:
    c = column.lower()
    return c in ("id", "sourcedid", "student_id", "user_id") or c.endswith(
        ("sourcedid", "sourcedids")
    )


def pseudonym_columns(names: list[str]) -> list[str]:
    """The columns of an ingested table that hold pseudonyms (ids replaced at ingest)."""
    ids = ("statement_id", "actor_id")
    return [n for n in names if _is_id(n) or _is_id(n.replace("_", "")) or n in ids]


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    """String columns named by the header (BOM dropped), parsed as the validator parsed them."""
    return CsvFile(path, block_bytes=BATCH_BYTES).batches()


def _deidentify(
    batch: pa.RecordBatch,
    dataset: str,
    drop: set[str],
    text: set[str],
    pseudonymizer: Pseudonymizer,
) -> pa.Table:
    cols, names = [], []
    for name in batch.schema.names:
        if name in drop:
            continue
        col = batch.column(name)
        if _is_id(name):
            col = pa.array(
                [
                    pseudonymizer.one(f"submission:{dataset}", v) if v else None
                    for v in col.to_pylist()
                ],
                pa.string(),
            )
        elif name in text:
            col = pa.array([scrub(v) for v in col.to_pylist()], pa.string())
        cols.append(col)
        names.append(snake_case(name))
    return pa.Table.from_arrays(cols, names=names)


def _xapi_rows(path: Path, dataset: str, pseudonymizer: Pseudonymizer) -> pa.Table:
    rows: dict[str, list[Any]] = {
        "statement_id": [],
        "actor_id": [],
        "verb_id": [],
        "object_id": [],
        "timestamp": [],
        "result": [],
    }
    with path.open(encoding="utf-8-sig") as f:
        for line in f:
            if not line.strip():
                continue
            s = json.loads(line)
            actor = s.get("actor") or {}
            who = (
                (actor.get("account") or {}).get("name")
                or actor.get("mbox_sha1sum")
                or actor.get("openid")
            )
            rows["statement_id"].append(
                pseudonymizer.one(f"submission:{dataset}", s.get("id")) if s.get("id") else None
            )
            rows["actor_id"].append(
                pseudonymizer.one(f"submission:{dataset}", who) if who else None
            )
            rows["verb_id"].append((s.get("verb") or {}).get("id"))
            rows["object_id"].append((s.get("object") or {}).get("id"))
            rows["timestamp"].append(s.get("timestamp"))
            rows["result"].append(scrub(json.dumps(s["result"])) if "result" in s else None)
    return pa.table(rows, schema=pa.schema([(k, pa.string()) for k in rows]))


def _write(catalog: Catalog, name: str, parts: Iterator[pa.Table], description: str) -> int:
    # pyiceberg: only once a table is written (this module is also imported for reports)
    from spanda_assets.lib.writes import AUDIT, NO_RETRY, open_audit, replace_all  # noqa: PLC0415

    ensure_namespace(catalog, "submissions")
    tx = None
    rows = 0
    for part in parts:
        if tx is None:
            old = load_table_or_none(catalog, "submissions", name)
            if old is not None and old.schema().as_arrow().names != part.schema.names:
                catalog.drop_table(("submissions", name))  # a resubmission with other columns
            table = catalog.create_table_if_not_exists(
                ("submissions", name),
                schema=part.schema,
                properties={
                    "spanda.dataset-description": description[:60_000],
                    NO_RETRY: "0",
                },
            )
            open_audit(table)
            tx = table.transaction()
            replace_all(tx, table, part, branch=AUDIT)
        else:
            tx.append(part, branch=AUDIT)
        rows += part.num_rows
    if tx is not None:
        tx.commit_transaction()
    return rows


def table_names(dataset: str, paths: Iterable[str]) -> dict[str, str]:
    """The table of each data file: `<dataset>__<file>`, never shared with another file.

    A top-level CSV already named as a table (`users.csv`) gives `<dataset>__users`;
    any other file (nested, renamed by folding, JSON Lines) adds a digest of its
    path (`x/users.csv` -> `<dataset>__users_1a2b3c`). File parts never contain
    `__`, so `a__b_users` (dataset `a`) and `a_b__users` (dataset `a_b`) cannot
    meet; two files of one submission that still would are refused.
    """
    out: dict[str, str] = {}
    for p in paths:
        part = snake_case(PurePosixPath(p).stem) or "file"
        if p != f"{part}.csv":
            part = f"{part}_{hashlib.sha256(p.encode()).hexdigest()[:6]}"
        out[p] = f"{dataset}__{part}"
    seen: dict[str, str] = {}
    for p, name in sorted(out.items()):
        if name in seen:
            raise SpandaError(
                f"submission {dataset}: {seen[name]!r} and {p!r} would both load into "
                f"submissions.{name}; rename one of them and submit again"
            )
        seen[name] = p
    return out


def _data_files(root: Path, validated: Mapping[str, str]) -> list[str]:
    """The validated files that become tables (the description and manifest do not)."""
    return [
        rel
        for rel in sorted(validated)
        if PurePosixPath(rel).name not in (DESCRIPTION, MANIFEST)
        and PurePosixPath(rel).suffix in (".csv", ".jsonl")
        and (root / rel).stat().st_size > 0
    ]


def ingest(
    catalog: Catalog,
    dataset: str,
    source: Path,
    pseudonymizer: Pseudonymizer,
    validated: Mapping[str, str],
) -> dict[str, int]:
    """Stage the validated data files of a submission on their tables' audit branches;
    returns rows per table.

    `validated` is the report's file list (path -> sha256): exactly those files
    are loaded, from a private copy checked against it (validate/digest.py);
    anything else refuses the submission with SubmissionChanged.
    """
    root = source
    tmp: Path | None = None
    if source.is_file():
        tmp = Path(tempfile.mkdtemp(prefix="spanda-ingest-"))
        if not safe_extract(source, tmp, rules()["limits"], lambda *a, **k: None):
            raise ValueError(f"{source.name}: the archive cannot be extracted safely")
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    try:
        ignore = Config.load(root).ignore_globs
        staged = stage_validated(root, validated, ignore, dataset)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        return _ingest_staged(catalog, dataset, staged, pseudonymizer, validated)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def _ingest_staged(
    catalog: Catalog,
    dataset: str,
    root: Path,
    pseudonymizer: Pseudonymizer,
    validated: Mapping[str, str],
) -> dict[str, int]:
    description = (root / DESCRIPTION).read_text(encoding="utf-8-sig")
    spec = rules()
    generic_ids = set(spec["identifier_columns"]["generic"])
    files = _data_files(root, validated)
    names = table_names(dataset, files)
    out: dict[str, int] = {}
    for rel in files:
        path = root / rel
        table = names[rel]
        if path.suffix == ".csv":
            drop = generic_ids | set(spec["identifier_columns"]["oneroster"].get(path.stem, []))
            text: set[str] = set()
            sidecar = path.with_suffix(".json")
            if sidecar.is_file():
                cols = json.loads(sidecar.read_text(encoding="utf-8-sig")).get("columns") or {}
                text = {c for c, d in cols.items() if (d or {}).get("type") == "text"}
            parts = (_deidentify(b, dataset, drop, text, pseudonymizer) for b in _csv_batches(path))
            out[table] = _write(catalog, table, parts, description)
        elif path.suffix == ".jsonl":
            out[table] = _write(
                catalog, table, iter([_xapi_rows(path, dataset, pseudonymizer)]), description
            )
    return out


def html_report(report_json: str) -> str:
    """A self-contained HTML page of a validation report (all values escaped)."""
    doc = json.loads(report_json)
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(i.get(k) if i.get(k) is not None else ''))}</td>"
            for k in ("severity", "code", "location", "line", "column", "message", "suggestion")
        )
        + "</tr>"
        for i in doc["issues"]
    )
    verdict = "valid" if doc["valid"] else "rejected"
    return (
        "<!doctype html><meta charset='utf-8'><title>Submission report</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}</style>"
        f"<h1>Submission {html.escape(doc['root'])}: {verdict}</h1>"
        f"<p>{doc['summary']['errors']} error(s), {doc['summary']['warnings']} warning(s); "
        f"rules {html.escape(doc['rules_version'])}; "
        f"formats {html.escape(', '.join(doc['formats']))}</p>"
        "<table><tr><th>severity</th><th>code</th><th>file</th><th>line</th><th>column</th>"
        f"<th>message</th><th>suggestion</th></tr>{rows}</table>"
    )
