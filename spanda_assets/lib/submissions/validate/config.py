"""Who may change the rules: the platform's steward, and (only to be stricter) the submitter.

Two configuration files can adjust a run:

* the steward's (`--config`, or `SPANDA_VALIDATOR_CONFIG` for the pipeline) may
  reclassify any code, ignore issues by code and location, and change limits;
* the submission's own `.spanda-validator.yaml` may only make the gate
  stricter: raise a severity (warning -> error), lower a limit. A request to
  lower a severity, ignore an issue or raise a limit is refused, the stricter
  value stays, and the report says so (CONFIG_LOWERING_REFUSED), so a submitter
  can never switch off the gate their own data must pass.

`.spandaignore` narrows the submission: the files it names are neither
validated nor ingested (the report lists what was validated, and ingest takes
exactly those files).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spanda_assets.lib.submissions.validate.rules import (
    CONFIG_FILE,
    IGNORE_FILE,
    SEVERITIES,
    rules,
)

ENV_STEWARD_CONFIG = "SPANDA_VALIDATOR_CONFIG"
RANK = {"ignore": 0, "warning": 1, "error": 2}


@dataclass(frozen=True)
class Refusal:
    """A submitter's request to lower the gate, and what stays instead."""

    request: str
    kept: str


@dataclass
class Config:
    """Reclassify (`rules: {CODE: warning}`) or ignore issues by code and location glob."""

    severities: dict[str, str] = field(default_factory=dict)
    ignore: list[dict[str, str]] = field(default_factory=list)
    ignore_globs: list[str] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)
    refused: list[Refusal] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path, steward_path: Path | None = None) -> Config:
        """The steward's config (`steward_path`, else SPANDA_VALIDATOR_CONFIG), then what
        the submission's own config may add to it, plus the submission's ignore file."""
        cfg = cls()
        env = os.environ.get(ENV_STEWARD_CONFIG)
        steward = steward_path or (Path(env) if env else None)
        if steward is not None:
            doc = _read(steward)
            cfg.severities = _severities(doc, steward)
            cfg.ignore = list(doc.get("ignore") or [])
            cfg.limits = {k: int(v) for k, v in (doc.get("limits") or {}).items()}
        own = root / CONFIG_FILE
        if own.is_file():
            cfg._stricter(_read(own), own)
        ignore_file = root / IGNORE_FILE
        if ignore_file.is_file():
            cfg.ignore_globs = [
                line.strip()
                for line in ignore_file.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")
            ]
        return cfg

    def severity(self, code: str) -> str:
        """The severity of `code` after the steward's config (before any ignore rule)."""
        default: str = rules()["issues"].get(code, {}).get("severity", "error")
        return self.severities.get(code, default)

    def _stricter(self, doc: dict[str, Any], source: Path) -> None:
        """Apply the submitter's config, keeping only what makes the gate stricter."""
        for code, wanted in _severities(doc, source).items():
            now = self.severity(code)
            if RANK[wanted] >= RANK[now]:
                self.severities[code] = wanted
            else:
                self.refused.append(Refusal(f"set {code} to {wanted}", f"{code} stays {now}"))
        for entry in doc.get("ignore") or []:
            named = (entry or {}).get("code")
            where = (entry or {}).get("location", "*")
            if named is not None and self.severity(str(named)) == "ignore":
                continue  # already ignored: nothing is lowered
            what = str(named or "every issue")
            self.refused.append(Refusal(f"ignore {what} in {where}", f"{what} is still reported"))
        limits = rules()["limits"]
        for name, value in (doc.get("limits") or {}).items():
            now_limit = self.limits.get(name, limits.get(name))
            if now_limit is not None and int(value) <= int(now_limit):
                self.limits[name] = int(value)
            else:
                self.refused.append(
                    Refusal(f"raise limit {name} to {value}", f"{name} stays {now_limit}")
                )


def _read(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a validator config is a mapping (rules, ignore, limits)")
    return doc


def _severities(doc: dict[str, Any], source: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for code, sev in (doc.get("rules") or {}).items():
        if sev not in SEVERITIES:
            raise ValueError(f"{source}: severity of {code} must be one of {SEVERITIES}")
        out[str(code)] = str(sev)
    return out
