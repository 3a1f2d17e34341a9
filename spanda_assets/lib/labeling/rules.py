"""Labeling functions as data: a YAML file in, validated `RuleSet` out.

Instructors and data engineers change the weak-supervision rules without touching
code, so the rules file is the unit of versioning: every pre-label carries
`model_version = "lf-<first 12 hex digits of the sha256 of the file's bytes>"`, and a
changed file is a new version in Label Studio, never a silent change of meaning.

Three kinds of rule, each with a `name` and a `vote` (`urgent` or `not_urgent`):

- `keywords`: words or phrases matched case-insensitively on word boundaries; a space
  matches any run of white space and an apostrophe is optional (`can't`, `can’t`, `cant`);
- `regex`: an RE2 pattern (the engine Arrow runs, linear in the text), case-insensitive;
- `heuristic`: a count over the text (`exclamation_marks`, `question_marks`,
  `shouted_words` of four or more capitals, `words`) within `at_least`/`at_most`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from spanda_assets.lib.errors import ConfigError

# The YAML position helpers of the sources file: one way to point at a line and column.
from spanda_assets.lib.sources import _compose, _mark_at, _position
from spanda_assets.settings import ENV_LABELING_FUNCTIONS_FILE

URGENT = "urgent"
NOT_URGENT = "not_urgent"
LABELS = (URGENT, NOT_URGENT)
Vote = Literal["urgent", "not_urgent"]
Measure = Literal["exclamation_marks", "question_marks", "shouted_words", "words"]
Kind = Literal["keywords", "regex", "heuristic"]

# What each measure counts, as an RE2 pattern (None: a literal character).
MEASURE_PATTERNS: dict[str, str] = {
    "exclamation_marks": r"!",
    "question_marks": r"\?",
    "shouted_words": r"\b[A-Z]{4,}\b",
    "words": r"\S+",
}
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_KINDS = ("keywords", "regex", "heuristic")


def _check_regex(pattern: str) -> str:
    """Compile the pattern with the engine that will run it, so an error shows at load.

    Arrow compiles a pattern only when it has a value to match: hence the one empty text.
    """
    try:
        pc.match_substring_regex(pa.array([""]), pattern=pattern, ignore_case=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).removeprefix("Invalid regular expression: ")
        raise PydanticCustomError(
            "re2_pattern",
            "is not an RE2 pattern ({reason}); RE2 has no look-around or back-references",
            {"reason": reason},
        ) from None
    return pattern


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise PydanticCustomError(
            "snake_case",
            "must be snake_case (lower-case letters, digits, _), got {v}",
            {"v": value},
        )
    return value


_Phrase = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]


class _Heuristic(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    measure: Measure
    at_least: int | None = Field(default=None, ge=0)
    at_most: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounded(self) -> _Heuristic:
        if self.at_least is None and self.at_most is None:
            raise PydanticCustomError("bounds", "needs at_least, at_most or both")
        low, high = self.at_least, self.at_most
        if low is not None and high is not None and low > high:
            raise PydanticCustomError("bounds", "at_least is larger than at_most")
        return self


class _Function(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[StrictStr, AfterValidator(_check_name)]
    vote: Vote
    description: StrictStr = ""
    keywords: Annotated[list[_Phrase], Field(min_length=1)] | None = None
    regex: Annotated[StrictStr, AfterValidator(_check_regex)] | None = None
    heuristic: _Heuristic | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> _Function:
        kinds = [k for k in _KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise PydanticCustomError(
                "one_kind",
                "needs exactly one of keywords, regex or heuristic, got {got}",
                {"got": ", ".join(kinds) or "none"},
            )
        return self


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    functions: Annotated[list[_Function], Field(min_length=1)]


@dataclass(frozen=True)
class LabelingFunction:
    """One rule, ready to run: keywords are compiled into the same RE2 form as a regex."""

    name: str
    vote: str
    kind: Kind
    pattern: str | None = None
    measure: str | None = None
    at_least: int | None = None
    at_most: int | None = None
    description: str = ""


@dataclass(frozen=True)
class RuleSet:
    """The labeling functions of one rules file and the version they label under."""

    functions: tuple[LabelingFunction, ...]
    model_version: str
    origin: str

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.functions]


def _phrase_pattern(phrase: str) -> str:
    """A phrase as RE2: word boundaries where the phrase starts or ends with a letter."""
    out: list[str] = []
    for ch in phrase:
        if ch.isspace():
            if out[-1:] != [r"\s+"]:
                out.append(r"\s+")
        elif ch in "'’":
            out.append("['’]?")
        elif ch.isalnum() or ch == "_":
            out.append(ch)
        else:
            out.append("\\" + ch)
    head = r"\b" if phrase[0].isalnum() else ""
    tail = r"\b" if phrase[-1].isalnum() else ""
    return head + "".join(out) + tail


def keywords_pattern(phrases: list[str]) -> str:
    """One RE2 alternation for a keyword list (one pass over the text, not one per word)."""
    return "(?:" + "|".join(_phrase_pattern(p) for p in phrases) + ")"


def _compiled(entry: _Function) -> LabelingFunction:
    common: dict[str, Any] = {
        "name": entry.name,
        "vote": entry.vote,
        "description": entry.description,
    }
    if entry.keywords is not None:
        return LabelingFunction(kind="keywords", pattern=keywords_pattern(entry.keywords), **common)
    if entry.regex is not None:
        return LabelingFunction(kind="regex", pattern=entry.regex, **common)
    assert entry.heuristic is not None  # _one_kind
    h = entry.heuristic
    return LabelingFunction(
        kind="heuristic", measure=h.measure, at_least=h.at_least, at_most=h.at_most, **common
    )


def model_version_of(data: bytes) -> str:
    """`lf-` and 12 hex digits of the sha256 of the rules file: any edit is a new version."""
    return "lf-" + hashlib.sha256(data).hexdigest()[:12]


def _subject(doc: Any, index: int) -> str:
    functions = doc.get("functions") if isinstance(doc, dict) else None
    entry = functions[index] if isinstance(functions, list) and index < len(functions) else None
    name = entry.get("name") if isinstance(entry, dict) else None
    return f"functions[{index}] ({name!r})" if isinstance(name, str) else f"functions[{index}]"


def _message(error: ErrorDetails, doc: Any) -> str:
    loc = tuple(error["loc"])
    if len(loc) < 2 or loc[0] != "functions":
        if loc[:1] == ("functions",) or not loc:
            return "must have a top-level 'functions:' list with at least one rule"
        return f"unknown top-level key {loc[0]!r}; the file holds 'functions:' only"
    subject = _subject(doc, int(loc[1]))
    path = ".".join(str(p) for p in loc[2:])
    if error["type"] == "extra_forbidden":
        return f"{subject}: unknown key {path!r}"
    if error["type"] == "missing":
        return f"{subject}: {path!r} is required"
    if path == "vote":
        return f"{subject}: vote: must be 'urgent' or 'not_urgent', got {error.get('input')!r}"
    where = f"{path}: " if path else ""
    return f"{subject}: {where}{error['msg']}"


def parse_labeling_functions(data: bytes, origin: str = "labeling_functions.yaml") -> RuleSet:
    """Parse and validate a rules file; errors name the file, line, column, rule and field."""
    doc, root = _compose(data.decode("utf-8"), origin)
    try:
        parsed = _Document.model_validate(doc if doc is not None else {})
    except ValidationError as exc:
        lines: dict[str, tuple[int, int]] = {}
        for error in exc.errors(include_url=False):
            mark = _mark_at(root, tuple(error["loc"]))
            text = f"{_position(origin, mark)}: {_message(error, doc)}"
            lines.setdefault(text, (mark.line, mark.column) if mark else (-1, -1))
        raise ConfigError("\n".join(sorted(lines, key=lines.__getitem__))) from None
    seen: set[str] = set()
    for index, entry in enumerate(parsed.functions):
        if entry.name in seen:
            mark = _mark_at(root, ("functions", index, "name"))
            raise ConfigError(
                f"{_position(origin, mark)}: functions[{index}]: the name {entry.name!r} is "
                "used twice; statistics are kept per name"
            )
        seen.add(entry.name)
    return RuleSet(
        functions=tuple(_compiled(e) for e in parsed.functions),
        model_version=model_version_of(data),
        origin=origin,
    )


def load_labeling_functions(path: Path | None = None) -> RuleSet:
    """The rules from `path`, SPANDA_LABELING_FUNCTIONS_FILE, or the packaged default."""
    raw = os.environ.get(ENV_LABELING_FUNCTIONS_FILE)
    path = path or (Path(raw) if raw else None)
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"labeling functions file {path} does not exist")
        return parse_labeling_functions(path.read_bytes(), origin=str(path))
    data = resources.files("spanda_assets").joinpath("config/labeling_functions.yaml").read_bytes()
    return parse_labeling_functions(data, origin="spanda_assets/config/labeling_functions.yaml")
