"""The validator's historical import path: `spanda_assets.lib.submissions.validate` holds it now."""

from spanda_assets.lib.submissions.validate import (
    CONFIG_FILE,
    DESCRIPTION,
    IGNORE_FILE,
    MANIFEST,
    Config,
    Issue,
    Report,
    Validator,
    rules,
    safe_extract,
    validate,
)

__all__ = [
    "CONFIG_FILE",
    "DESCRIPTION",
    "IGNORE_FILE",
    "MANIFEST",
    "Config",
    "Issue",
    "Report",
    "Validator",
    "rules",
    "safe_extract",
    "validate",
]
