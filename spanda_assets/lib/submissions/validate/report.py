"""What a validation run produces: issues and the report that renders them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field


@dataclass
class Issue:
    """One finding, located as precisely as the format allows (BIDS-validator style)."""

    code: str
    severity: str
    location: str
    message: str
    suggestion: str
    line: int | None = None
    column: int | str | None = None


@dataclass
class Report:
    """All issues of one submission plus what was checked; `valid` means no errors."""

    root: str
    issues: list[Issue] = field(default_factory=list)
    suppressed: dict[str, int] = field(default_factory=dict)
    files_checked: int = 0
    rows_checked: int = 0
    formats: list[str] = field(default_factory=list)
    rules_version: str = ""
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of what was checked
    digest: str = ""  # of the whole submission: names and contents (validate/digest.py)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def valid(self) -> bool:
        return not self.errors

    def to_json(self) -> str:
        return json.dumps(
            {
                "valid": self.valid,
                "root": self.root,
                "rules_version": self.rules_version,
                "formats": self.formats,
                "files_checked": self.files_checked,
                "digest": self.digest,
                "files": self.files,
                "rows_checked": self.rows_checked,
                "summary": {"errors": len(self.errors), "warnings": len(self.warnings)},
                "suppressed": self.suppressed,
                "issues": [asdict(i) for i in self.issues],
            },
            indent=2,
        )

    def to_text(self) -> str:
        out = [
            f"spanda validate {self.root} (rules {self.rules_version})",
            f"  formats: {', '.join(self.formats) or 'none recognised'}; "
            f"{self.files_checked} file(s), {self.rows_checked:,} row(s) checked",
        ]
        for severity in ("error", "warning"):
            group = [i for i in self.issues if i.severity == severity]
            if not group:
                continue
            out.append(f"\n{severity.upper()}S ({len(group)})")
            for i in group:
                where = (
                    i.location
                    + (f":{i.line}" if i.line else "")
                    + (f" col {i.column}" if i.column not in (None, "") else "")
                )
                out.append(f"  [{i.code}] {where}: {i.message}")
                out.append(f"      -> {i.suggestion}")
        for code, n in sorted(self.suppressed.items()):
            out.append(f"  ({n} more {code} not listed)")
        verdict = "VALID" if self.valid else "INVALID"
        out.append(f"\n{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
        return "\n".join(out)
