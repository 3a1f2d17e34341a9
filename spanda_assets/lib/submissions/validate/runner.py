"""One validation run: list the files, offer each to the format checkers, report the rest.

Order matters for a stable report: the description first, then files too
empty or too large to read, then the OneRoster manifest (it accounts for the
roster files it names), then the remaining files in name order.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from spanda_assets.lib.files import file_digest
from spanda_assets.lib.submissions.validate.archive import safe_extract
from spanda_assets.lib.submissions.validate.base import FormatChecker
from spanda_assets.lib.submissions.validate.config import Config
from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.description import check_description
from spanda_assets.lib.submissions.validate.digest import (
    checked_files,
    private_copy,
    submission_digest,
)
from spanda_assets.lib.submissions.validate.oneroster import OneRosterChecker
from spanda_assets.lib.submissions.validate.report import Report
from spanda_assets.lib.submissions.validate.rules import (
    CONFIG_FILE,
    DESCRIPTION,
    MANIFEST,
)
from spanda_assets.lib.submissions.validate.sidecar_csv import SidecarCsvChecker
from spanda_assets.lib.submissions.validate.xapi import XapiChecker

# First claim wins; a file no checker claims is UNKNOWN_FILE (unless it is a CSV's sidecar).
CHECKERS: tuple[FormatChecker, ...] = (OneRosterChecker(), XapiChecker(), SidecarCsvChecker())


class Validator:
    """Checks one submission folder; `run()` returns its report."""

    def __init__(
        self,
        root: Path,
        config: Config | None = None,
        checkers: tuple[FormatChecker, ...] = CHECKERS,
        digests: dict[str, str] | None = None,
    ) -> None:
        """`digests`: the SHA-256 of each checked file when the caller already took them
        (`private_copy` hashes while it copies); otherwise the run reads them."""
        self.ctx = Context(root, config)
        self.root = root
        self.checkers = checkers
        self.digests = digests

    @property
    def report(self) -> Report:
        return self.ctx.report

    def run(self) -> Report:
        """Check every file not ignored; the report lists issues in the order files are met."""
        ctx = self.ctx
        for refusal in ctx.config.refused:
            ctx.add(
                "CONFIG_LOWERING_REFUSED", CONFIG_FILE, request=refusal.request, kept=refusal.kept
            )
        files = checked_files(self.root, ctx.config.ignore_globs)
        ctx.files = files
        known: set[Path] = set()
        description = self.root / DESCRIPTION
        if description.is_file():
            known.add(description)
            check_description(description, ctx)
        else:
            ctx.add("MISSING_DATASET_DESCRIPTION", DESCRIPTION)
        for p in files:
            size = p.stat().st_size
            if size == 0:
                ctx.add("EMPTY_FILE", ctx.rel(p))
                known.add(p)
            elif size > ctx.limits["max_file_bytes"]:
                ctx.add("FILE_TOO_LARGE", ctx.rel(p), size=size, limit=ctx.limits["max_file_bytes"])
                known.add(p)
        manifest = self.root / MANIFEST
        for p in sorted(files, key=lambda p: p != manifest):  # the manifest first
            if p in known:
                continue
            for checker in self.checkers:
                if checker.claims(p, ctx):
                    ctx.add_format(checker.name)
                    known |= checker.check(p, ctx)
                    break
        for p in files:
            if p not in known and not (p.suffix == ".json" and p.with_suffix(".csv").is_file()):
                ctx.add("UNKNOWN_FILE", ctx.rel(p))
        ctx.report.files_checked = len(files)
        ctx.report.files = (
            self.digests
            if self.digests is not None
            else {ctx.rel(p): file_digest(p) for p in files}
        )
        ctx.report.digest = submission_digest(ctx.report.files)
        return ctx.report


def validate(path: Path, config_path: Path | None = None) -> Report:
    """Validate a submission folder or .zip archive; `config_path` is the steward's config
    (lib/submissions/validate/config.py says what a submission's own config may change)."""
    tmp: Path | None = None
    root = path
    if path.is_file() and path.suffix == ".zip":
        tmp = Path(tempfile.mkdtemp(prefix="spanda-submission-"))
        probe = Context(tmp)
        if not safe_extract(path, tmp, probe.limits, probe.add):
            shutil.rmtree(tmp, ignore_errors=True)
            probe.report.root = str(path)
            return probe.report
        entries = list(tmp.iterdir())
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else tmp
    try:
        config = Config.load(root, config_path)
        copy, digests, odd = private_copy(root, config.ignore_globs)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    try:
        validator = Validator(copy, config, digests=digests)
        for rel in odd:
            validator.ctx.add("NOT_A_REGULAR_FILE", rel)
        report = validator.run()
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    report.root = str(path)
    return report
