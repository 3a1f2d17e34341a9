"""What every format checker shares during one run: the rules, the config and the report.

`Context.add` is the only way an issue enters a report, so reclassification,
ignore rules and the per-file cap apply to every checker alike.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path
from typing import Any

from spanda_assets.lib.privacy.scrub import find_spans
from spanda_assets.lib.submissions.validate.config import Config
from spanda_assets.lib.submissions.validate.report import Issue, Report
from spanda_assets.lib.submissions.validate.rules import MAX_PER_CODE_AND_FILE, rules

FREE_TEXT_CATEGORIES = ("EMAIL", "PHONE", "SSN", "IP", "URL")


class Context:
    def __init__(self, root: Path, config: Config | None = None) -> None:
        self.root = root
        self.config = config or Config()
        self.rules = rules()
        self.limits: dict[str, int] = {**self.rules["limits"], **self.config.limits}
        self.report = Report(root=str(root), rules_version=str(self.rules["version"]))
        self._counts: dict[tuple[str, str], int] = {}
        self.files: list[Path] = []  # every file of the submission that is checked, sorted

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

    def rel(self, p: Path) -> str:
        """A file's location as issues name it: relative to the submission root."""
        return p.relative_to(self.root).as_posix()

    def add_format(self, name: str) -> None:
        if name not in self.report.formats:
            self.report.formats.append(name)

    def load_json(self, p: Path) -> Any:
        """A whole JSON document, or None after recording why it cannot be read."""
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

    def free_text(self, loc: str, line: int, column: str, text: str) -> None:
        """Warn once per value when free text seems to hold a direct identifier."""
        for span in find_spans(text):
            if span.category in FREE_TEXT_CATEGORIES:
                self.add(
                    "FREE_TEXT_PII", loc, line=line, column=column, category=span.category.lower()
                )
                return
