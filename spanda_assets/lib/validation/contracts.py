"""Run the data contracts of a gold table: Pandera models and Great Expectations suites.

Both read the Iceberg table in Arrow batches and convert only the columns a
contract needs (a post's text is reduced to its length before GX sees it), so
memory stays bounded by the batch, not the table. Great Expectations is
imported here, inside the function that runs it: it takes seconds to import
and must not slow down loading the Dagster definitions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from spanda_assets.lib.incremental import rows_added_after

if TYPE_CHECKING:
    from pyiceberg.table import Table

SAMPLE = 10
# Rows per contract batch: about 100 MB of the narrow columns the contracts read.
BATCH_ROWS = 1_000_000


@dataclass
class ContractResult:
    passed: bool
    evaluated: int = 0
    failed: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    docs_url: str | None = None
    rows: int = 0


def _derived(batch: pa.Table) -> pa.Table:
    """Columns the contracts check that are not stored: text length, score ratio."""
    names = batch.column_names
    if "body" in names and "body_length" not in names:
        batch = batch.append_column("body_length", pc.utf8_length(batch["body"]))
    if "score" in names and "max_score" in names and "score_ratio" not in names:
        ratio = pc.divide(
            pc.cast(batch["score"], pa.float64()), pc.cast(batch["max_score"], pa.float64())
        )
        batch = batch.append_column("score_ratio", ratio)
    return batch


DERIVED_FROM = {"body_length": ("body",), "score_ratio": ("score", "max_score")}


def batches(
    table: Table,
    columns: list[str] | None = None,
    rows: int = BATCH_ROWS,
    after_sequence: int = 0,
) -> Any:
    """The table in Arrow batches, with the derived columns; only the columns needed are read.

    With `after_sequence`, only the rows of the data files the checks have not
    seen pass: those added after that sequence number, except files a row delete
    rewrote from files that had passed (see lib/incremental.new_files).
    """
    fields: tuple[str, ...] = ("*",)
    if columns:
        stored = set(table.schema().column_names)
        # A derived column gold stores is read as is; otherwise its sources are read.
        wanted = [
            s
            for c in columns
            for s in ((c,) if c in stored else DERIVED_FROM.get(c, (c,)))
            if s in stored
        ]
        fields = tuple(dict.fromkeys(wanted))
    if after_sequence:
        reader = rows_added_after(table, after_sequence, rows, selected_fields=fields)
    else:
        reader = table.scan(selected_fields=fields).to_arrow_batch_reader()
    for chunk in _rebatch(reader, rows):
        t = _derived(chunk)
        yield t.select(columns) if columns else t


def _rebatch(reader: Any, rows: int) -> Any:
    """Group the reader's small batches (one per Parquet row group slice) into ~`rows` rows:
    a Pandera validation has a fixed cost per call that 8 small calls pay 8 times."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for b in reader:
        pending.append(b)
        size += b.num_rows
        if size >= rows:
            yield pa.Table.from_batches(pending)
            pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)


# ----------------------------------------------------------------------------- Pandera


def run_pandera(
    name: str,
    table: Table,
    references: dict[str, list[Any]],
    key: str,
    after_sequence: int = 0,
) -> ContractResult:
    """The Pandera model on the rows added after `after_sequence` (0: all), batch by batch,
    and key uniqueness across the whole table."""
    import pandera.pandas as pda
    from pandera.errors import SchemaErrors

    from spanda_assets.schemas.pandera_models import MODELS  # imports pandera

    schema = MODELS[name].to_schema()
    for column, allowed in references.items():
        if column in schema.columns:
            schema = schema.update_column(
                column,
                checks=[
                    *schema.columns[column].checks,
                    pda.Check.isin(allowed, name=f"{column}_exists"),
                ],
            )
    result = ContractResult(passed=True)
    checks_per_row = sum(len(c.checks) + 1 for c in schema.columns.values())
    calls = 0
    new_keys: list[pa.ChunkedArray] = []
    for batch in batches(table, list(schema.columns), after_sequence=after_sequence):
        new_keys.append(batch[key])
        # Arrow-backed columns: no copy into Python objects, and string checks run in Arrow.
        frame = batch.to_pandas(types_mapper=pd.ArrowDtype)
        result.rows += len(frame)
        calls += 1
        try:
            schema.validate(frame, lazy=True)
        except SchemaErrors as err:
            cases = err.failure_cases
            result.failed += len(cases)
            for row in cases.head(SAMPLE - len(result.failures)).to_dict("records"):
                index = row.get("index")
                row_key = (
                    frame[key].iloc[int(index)]
                    if index is not None and str(index).isdigit()
                    else None
                )
                result.failures.append(
                    {
                        "column": row.get("column"),
                        "check": str(row.get("check")),
                        "observed": str(row.get("failure_case")),
                        "key": row_key,
                    }
                )
    # Pandera's `unique` sees one batch. Unless that batch was the whole table, the
    # key column of the whole table is read (one narrow column) and checked.
    if result.rows and (after_sequence or calls > 1):
        checked = pa.chunked_array([c for k in new_keys for c in k.chunks])
        dupes, sample = duplicate_keys(table, key, checked if after_sequence else None)
        if dupes:
            result.failed += dupes
            result.failures.append(
                {
                    "column": key,
                    "check": "unique across table",
                    "observed": f"{dupes} duplicate rows",
                    "key": sample,
                }
            )
    result.evaluated = result.rows * checks_per_row
    result.passed = result.failed == 0
    return result


def duplicate_keys(
    table: Table, key: str, new: pa.ChunkedArray | None = None
) -> tuple[int, list[str]]:
    """Rows whose key another row also has, and a sample of such keys.

    With `new` (the keys of the rows this run checks), only duplicates that
    involve a new key are counted: older rows were checked against each other
    by an earlier passing run. That is a hash lookup per table row instead of a
    hash of every key: the key column is still read whole, the one part of the
    contracts whose cost follows the table rather than the increment.
    """
    keys = table.scan(selected_fields=(key,)).to_arrow().column(0).combine_chunks()
    if new is None:
        dupes = len(keys) - len(pc.unique(keys))
        suspects = keys
    else:
        distinct = pc.unique(new.combine_chunks())
        matches = keys.filter(pc.is_in(keys, value_set=distinct))
        dupes = len(matches) - len(distinct)
        suspects = matches
    if not dupes:
        return 0, []
    counts = pc.value_counts(suspects)
    repeated = counts.filter(pc.greater(counts.field("counts"), 1)).field("values")
    return dupes, [str(v) for v in repeated.slice(0, SAMPLE).to_pylist()]


# ----------------------------------------------------------------------------- Great Expectations


def load_suite(name: str) -> dict[str, Any]:
    text = resources.files("spanda_assets").joinpath(f"schemas/gx/{name}.yaml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def gx_frame(table: Table, columns: list[str], after_sequence: int = 0) -> pd.DataFrame:
    """The columns GX checks as one pandas frame: numbers as NumPy, text as Arrow strings.

    GX's pandas engine is fastest on NumPy numbers; text stays in Arrow
    (`string[pyarrow]`) so a million pseudonyms are never copied into Python
    objects (measured: 0.8 s instead of 1.9 s for the posts suite on 1M rows).
    """
    parts = list(batches(table, columns, after_sequence=after_sequence))
    data = pa.concat_tables(parts) if parts else pa.table({c: pa.array([]) for c in columns})
    # GX's range check is vectorized for 64-bit numbers only: on an int32 column it calls
    # a Python function per row (a second per million rows).
    data = data.cast(
        pa.schema(
            [
                pa.field(f.name, pa.int64()) if pa.types.is_integer(f.type) else f
                for f in data.schema
            ]
        )
    )
    text = pd.StringDtype("pyarrow")
    return data.to_pandas(
        types_mapper=lambda t: (
            text if pa.types.is_string(t) or pa.types.is_large_string(t) else None
        )
    )


def _docs_path(project_root: Path) -> Path:
    return project_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def docs_index(project_root: Path) -> str:
    """URL of the index of the Data Docs site GX builds under `project_root`."""
    return _docs_path(project_root).as_uri()


def existing_docs(project_root: Path) -> str | None:
    """The Data Docs site GX built under `project_root`, if any (no GX import needed)."""
    path = _docs_path(project_root)
    return path.as_uri() if path.is_file() else None


def run_gx(
    name: str,
    frame: pd.DataFrame,
    project_root: Path,
    key: str,
) -> dict[str, ContractResult]:
    """Validate `frame` with the whole suite in one run; results split by severity.

    One checkpoint run (and one Data Docs update) serves both the blocking gates
    and the soft signals: GX's fixed cost per run is paid once.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.execution_engine import pandas_execution_engine

    # GX fingerprints every in-memory frame below this size by hashing all its rows (half
    # a second per million rows) only to label the batch. The Iceberg snapshot id is the
    # batch's identity here, so the fingerprint is switched off; GX has no supported
    # setting for it (docs/decisions/0023).
    pandas_execution_engine.HASH_THRESHOLD = 0

    spec = load_suite(name)
    context = gx.get_context(mode="file", project_root_dir=str(project_root))
    # GX draws a tqdm bar per validation ("Calculating Metrics") on stderr: noise in a run's
    # log and the demo's terminal. TQDM_DISABLE cannot stop it (GX passes `disable=`
    # explicitly, which wins over tqdm's environment defaults); the validator reads this
    # context variable instead. GX saves it in the generated great_expectations.yml under
    # SPANDA_HOME/gx with the rest of the project it keeps there.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_or_update_pandas("spanda")
    asset = next((a for a in source.assets if a.name == name), None) or source.add_dataframe_asset(
        name=name
    )
    batch_def = next(
        (b for b in asset.batch_definitions if b.name == "whole_table"), None
    ) or asset.add_batch_definition_whole_dataframe("whole_table")
    suite = gx.ExpectationSuite(name=name)
    for exp in spec["expectations"]:
        cls = getattr(gx.expectations, "".join(p.title() for p in exp["type"].split("_")))
        suite.add_expectation(cls(**exp["kwargs"], meta={"severity": exp.get("severity", "gate")}))
    suite = context.suites.add_or_update(suite)
    definition = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(data=batch_def, suite=suite, name=name)
    )
    checkpoint = context.checkpoints.add_or_update(
        gx.Checkpoint(
            name=name,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format={
                "result_format": "COMPLETE",
                "partial_unexpected_count": SAMPLE,
                "unexpected_index_column_names": [key],
            },
        )
    )
    outcome = checkpoint.run(batch_parameters={"dataframe": frame})
    sites = context.get_docs_sites_urls()
    docs = sites[0]["site_url"] if sites else None
    results = {
        sev: ContractResult(passed=True, rows=len(frame), docs_url=docs) for sev in ("gate", "soft")
    }
    for run in outcome.run_results.values():
        for r in run.results:
            config = r.expectation_config
            assert config is not None
            result = results[str((config.meta or {}).get("severity", "gate"))]
            result.evaluated += 1
            if r.success:
                continue
            result.failed += 1
            result.passed = False
            details = r.result or {}
            result.failures.append(
                {
                    "expectation": config.type,
                    "column": config.kwargs.get("column"),
                    "observed": details.get("observed_value"),
                    "unexpected_count": details.get("unexpected_count"),
                    "unexpected_sample": [
                        str(v) for v in (details.get("partial_unexpected_list") or [])[:SAMPLE]
                    ],
                    "failing_keys": [
                        str(i.get(key)) if isinstance(i, dict) else str(i)
                        for i in (details.get("unexpected_index_list") or [])[:SAMPLE]
                    ],
                }
            )
    return results
