"""The one interface every submission format implements."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from spanda_assets.lib.submissions.validate.context import Context


class FormatChecker(Protocol):
    """A data format a submission may use (OneRoster, xAPI, CSV + sidecar, ...).

    The runner offers each file not yet accounted for to the checkers in
    order; the first that claims it checks it and returns every file it
    accounted for (a OneRoster manifest accounts for the roster files it
    names, a CSV for its sidecar), so no other checker sees those again.
    """

    name: str  # as listed in the report's formats

    def claims(self, path: Path, ctx: Context) -> bool: ...

    def check(self, path: Path, ctx: Context) -> set[Path]: ...
