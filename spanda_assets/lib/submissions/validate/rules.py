"""The validator's rules file and the fixed names of a submission's special files.

Rules are data (`schemas/submission_rules.yaml`): codes, severities, messages,
OneRoster file specs, identifier columns and limits change there, not in code.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import yaml

DESCRIPTION = "dataset_description.json"
MANIFEST = "manifest.csv"
CONFIG_FILE = ".spanda-validator.yaml"
IGNORE_FILE = ".spandaignore"
MAX_PER_CODE_AND_FILE = 50
SEVERITIES = ("error", "warning", "ignore")


@cache
def rules() -> dict[str, Any]:
    """The parsed rules file (read once per process)."""
    text = resources.files("spanda_assets").joinpath("schemas/submission_rules.yaml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc
