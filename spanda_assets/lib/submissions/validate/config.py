"""A submitter's own settings: `.spanda-validator.yaml` and `.spandaignore` at the root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from spanda_assets.lib.submissions.validate.rules import CONFIG_FILE, IGNORE_FILE, SEVERITIES


@dataclass
class Config:
    """Reclassify (`rules: {CODE: warning}`) or ignore issues by code and location glob."""

    severities: dict[str, str] = field(default_factory=dict)
    ignore: list[dict[str, str]] = field(default_factory=list)
    ignore_globs: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, root: Path, path: Path | None = None) -> Config:
        """The config at `path`, else the root's config file, plus the root's ignore file."""
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
