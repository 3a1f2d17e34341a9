"""`spanda validate`: check a dataset submission the way the BIDS validator checks BIDS.

A submission is a folder (or a .zip of one) with `dataset_description.json` and
data files in education formats: OneRoster 1.1 CSV, xAPI statements (JSON
Lines), or generic CSV with a JSON sidecar describing each column. Rules are
data (`schemas/submission_rules.yaml`, `schemas/xapi-statement-1.0.3.json`);
every issue has a code, a severity, the file, the line and column where known,
a message and a suggestion.

Files are streamed: memory depends on the number of distinct ids kept for
uniqueness and references, not on file size. Malformed input (bad encoding,
ragged rows, duplicate headers, broken JSON, hostile archives) becomes an
issue with a code, never a traceback.

Modules: `runner` (the run and `validate`), one module per format behind
`base.FormatChecker` (`oneroster`, `xapi` with `xapi_schema`, `sidecar_csv`),
`description`, `tabular` (rules shared by the CSV formats; parsing is
`submissions.csvio`, shared with ingest), `context` (issue bookkeeping),
`config`, `archive`, `report`, `rules`.
"""

from spanda_assets.lib.submissions.validate.archive import safe_extract
from spanda_assets.lib.submissions.validate.base import FormatChecker
from spanda_assets.lib.submissions.validate.config import Config
from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.report import Issue, Report
from spanda_assets.lib.submissions.validate.rules import (
    CONFIG_FILE,
    DESCRIPTION,
    IGNORE_FILE,
    MANIFEST,
    rules,
)
from spanda_assets.lib.submissions.validate.runner import CHECKERS, Validator, validate

__all__ = [
    "CHECKERS",
    "CONFIG_FILE",
    "DESCRIPTION",
    "IGNORE_FILE",
    "MANIFEST",
    "Config",
    "Context",
    "FormatChecker",
    "Issue",
    "Report",
    "Validator",
    "rules",
    "safe_extract",
    "validate",
]
