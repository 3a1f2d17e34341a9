"""Label Studio's JSON export format: typed models, and a reader whose errors point at the task.

A file in this format is a JSON list of tasks, each
`{id, data: {post_key, body, ...}, annotations: [...], predictions: [...]}`, where an
annotation is `{id, completed_by, result: [{from_name, to_name, type: "choices",
value: {choices: [...]}}], was_cancelled, ground_truth, created_at, updated_at,
lead_time}`. Only the fields the platform reads are typed; any other field Label
Studio writes (project, result_count, draft ids, ...) is kept as it is, so a file
goes through the local store and back out without losing anything.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from spanda_assets.lib.errors import SpandaError

# The names in the project's label config: <Choices name="urgency" toName="text">.
URGENCY_CONTROL = "urgency"
TEXT_OBJECT = "text"
MAX_ERRORS_SHOWN = 20
# One row per annotation: what resolution, agreement and label quality read, whichever
# store (the local file or a Label Studio server) the annotations came from.
ANNOTATION_SCHEMA = pa.schema(
    [
        ("post_key", pa.string()),
        ("task_id", pa.int64()),
        ("annotation_id", pa.int64()),
        ("completed_by", pa.string()),
        ("label", pa.string()),  # the urgency choice; null when the annotation made none
        ("was_cancelled", pa.bool_()),
        ("ground_truth", pa.bool_()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("lead_time", pa.float64()),
        ("prelabel", pa.string()),  # what the task's prediction proposed, if it had one
        ("prelabel_model_version", pa.string()),
    ]
)
# Tasks changed this long before the watermark are read again: an annotation saved in
# the same instant as the last one read is not missed. Resolution is per post, so a
# post read twice is decided twice the same way.
WATERMARK_OVERLAP = dt.timedelta(seconds=5)


class ImportFormatError(SpandaError):
    """A file is not in Label Studio's JSON export format; the message names task and field."""


def _user(value: Any) -> Any:
    # Label Studio writes the annotator's user id; some exports expand it into an object
    if isinstance(value, bool) or not isinstance(value, int | str | dict):
        raise PydanticCustomError("user", "expected a user id, an e-mail or a user object")
    if isinstance(value, dict) and not any(k in value for k in ("id", "email")):
        raise PydanticCustomError("user", "a user object needs an 'id' or an 'email'")
    return value


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ResultValue(_Open):
    choices: list[StrictStr] | None = None
    text: list[StrictStr] | None = None

    @model_serializer(mode="wrap")
    def _without_empty_kinds(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a choices result has no `text` and a note has no `choices`: do not write nulls
        out: dict[str, Any] = handler(self)
        return {k: v for k, v in out.items() if not (k in ("choices", "text") and v is None)}


class ResultItem(_Open):
    from_name: StrictStr
    to_name: StrictStr
    type: StrictStr
    value: ResultValue

    @model_validator(mode="after")
    def _choices_present(self) -> ResultItem:
        if self.type == "choices" and self.value.choices is None:
            raise PydanticCustomError("choices_missing", "a 'choices' result needs value.choices")
        return self


class Annotation(_Open):
    id: StrictInt
    completed_by: Annotated[Any, BeforeValidator(_user)]
    result: list[ResultItem]
    was_cancelled: StrictBool = False
    ground_truth: StrictBool = False
    created_at: AwareDatetime
    updated_at: AwareDatetime
    lead_time: float | None = None

    def annotator(self) -> str:
        """The annotator as text: the user id, or the e-mail of an expanded user."""
        who = self.completed_by
        if isinstance(who, dict):
            return str(who.get("email") or who.get("id"))
        return str(who)

    def choice(self) -> str | None:
        """The urgency choice of this annotation (None when it made none)."""
        return first_choice(self.result)


class Prediction(_Open):
    id: StrictInt | None = None
    model_version: StrictStr = ""
    score: float | None = None
    result: list[ResultItem]


class TaskData(_Open):
    post_key: Annotated[StrictStr, Field(min_length=1)]
    body: StrictStr


class Task(_Open):
    id: StrictInt
    data: TaskData
    annotations: list[Annotation] = Field(default_factory=list)
    predictions: list[Prediction] = Field(default_factory=list)
    # Label Studio writes {} or null; both read as no marks
    meta: Annotated[dict[str, Any], BeforeValidator(lambda v: {} if v is None else v)] = Field(
        default_factory=dict
    )


# The key in a task's `meta` that marks it for a second look (label quality review).
REVIEW_META = "spanda_review"


def review_meta(flag: dict[str, Any]) -> dict[str, Any]:
    """What a flagged task carries: the label given, the one a model fitted without
    this post suggests, and how plausible the given one is (cleanlab's self-confidence)."""
    return {
        "reason": "likely_mislabeled",
        "label": flag["label"],
        "suggested": flag["suggested"],
        "label_quality": round(float(flag["label_quality"]), 4),
    }


def first_choice(result: list[ResultItem]) -> str | None:
    for item in result:
        if item.type == "choices" and item.from_name == URGENCY_CONTROL and item.value.choices:
            return item.value.choices[0]
    return None


def choice_result(label: str) -> list[ResultItem]:
    """The `result` of an annotation or prediction that picks `label`."""
    return [
        ResultItem(
            from_name=URGENCY_CONTROL,
            to_name=TEXT_OBJECT,
            type="choices",
            value=ResultValue(choices=[label]),
        )
    ]


_STRING_LISTS = {"choices", "text"}
_EXPECTED = {
    "list_type": "expected a list",
    "string_type": "expected a string",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "model_type": "expected an object",
    "dict_type": "expected an object",
    "missing": "is required",
    "string_too_short": "must not be empty",
    "timezone_aware": "expected a date-time with a time zone, e.g. 2026-09-01T08:00:00Z",
    "datetime_type": "expected a date-time such as 2026-09-01T08:00:00Z",
    "datetime_parsing": "expected a date-time such as 2026-09-01T08:00:00Z",
    "datetime_from_date_parsing": "expected a date-time such as 2026-09-01T08:00:00Z",
}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _describe(error: ErrorDetails) -> tuple[str, str]:
    """(field path, what was expected) for one validation error of one task."""
    loc = tuple(error["loc"])
    # a list of strings is one field to the user: report it whole, not item by item
    for i, part in enumerate(loc):
        if part in _STRING_LISTS and error["type"] in ("list_type", "string_type"):
            return _path(loc[: i + 1]), "expected a list of strings"
    if error["type"] == "extra_forbidden":
        return _path(loc), "unknown field"
    return _path(loc), _EXPECTED.get(error["type"], error["msg"])


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _elements(text: str, origin: str) -> list[tuple[Any, int]]:
    """The items of the top-level JSON list, each with the line it starts on."""
    decoder = json.JSONDecoder()
    pos = len(text) - len(text.lstrip())
    if text[pos : pos + 1] != "[":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                f"{origin}, line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
            ) from None
        raise ImportFormatError(
            f"{origin}: expected a JSON list of tasks (Label Studio's JSON export)"
        )
    items: list[tuple[Any, int]] = []
    pos += 1
    try:
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if text[pos : pos + 1] == "]" and not items:
                pos += 1
                break
            value, end = decoder.raw_decode(text, pos)
            items.append((value, _line_of(text, pos)))
            pos = end
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if text[pos : pos + 1] == ",":
                pos += 1
                continue
            if text[pos : pos + 1] == "]":
                pos += 1
                break
            raise json.JSONDecodeError("expected ',' or ']' after a task", text, pos)
        if text[pos:].strip():
            raise json.JSONDecodeError("extra data after the list of tasks", text, pos)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(
            f"{origin}, line {exc.lineno}, column {exc.colno}: not valid JSON: {exc.msg}"
        ) from None
    return items


def parse_tasks(text: str, origin: str = "tasks.json") -> list[Task]:
    """Tasks from a Label Studio JSON export; every problem is reported, then raised at once.

    Errors read `FILE, task 3 (line 57): annotations[0].result[0].value.choices: expected
    a list of strings`; task and list indices count from 0, as in the JSON list.
    """
    tasks: list[Task] = []
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for index, (raw, line) in enumerate(_elements(text, origin)):
        where = f"{origin}, task {index} (line {line})"
        try:
            task = Task.model_validate(raw)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                path, expected = _describe(error)
                problems.append(f"{where}: {path}: {expected}" if path else f"{where}: {expected}")
            continue
        key = task.data.post_key
        if key in first_seen:
            problems.append(
                f"{where}: data.post_key: {key!r} is also the key of task {first_seen[key]}"
            )
        first_seen.setdefault(key, index)
        tasks.append(task)
    if problems:
        more = len(problems) - MAX_ERRORS_SHOWN
        shown = problems[:MAX_ERRORS_SHOWN] + ([f"... and {more} more"] if more > 0 else [])
        raise ImportFormatError("\n".join(shown))
    return tasks


def read_tasks(path: Path) -> list[Task]:
    """Tasks from a file in Label Studio's JSON export format."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return parse_tasks(text, origin=str(path))


def dump_tasks(tasks: list[Task]) -> str:
    """The export text: a JSON list, one task per line block, UTF-8 characters kept."""
    return json.dumps(
        [t.model_dump(mode="json", exclude_none=False) for t in tasks],
        ensure_ascii=False,
        indent=1,
    )


def annotation_table(tasks: Iterable[Task], after: dt.datetime | None = None) -> pa.Table:
    """The annotations of `tasks` updated strictly after `after` (all with None)."""
    rows: list[dict[str, Any]] = []
    for task in tasks:
        # the newest prediction: what annotators were shown (the champion's, once one exists)
        pred = task.predictions[-1] if task.predictions else None
        for a in task.annotations:
            if after is not None and a.updated_at <= after:
                continue
            rows.append(
                {
                    "post_key": task.data.post_key,
                    "task_id": task.id,
                    "annotation_id": a.id,
                    "completed_by": a.annotator(),
                    "label": a.choice(),
                    "was_cancelled": a.was_cancelled,
                    "ground_truth": a.ground_truth,
                    "created_at": a.created_at,
                    "updated_at": a.updated_at,
                    "lead_time": a.lead_time,
                    "prelabel": first_choice(pred.result) if pred else None,
                    "prelabel_model_version": pred.model_version if pred else None,
                }
            )
    return pa.Table.from_pylist(rows, schema=ANNOTATION_SCHEMA)


@dataclass(frozen=True)
class Changes:
    """Posts whose annotations changed after a watermark, with all their annotations."""

    post_keys: list[str]
    annotations: pa.Table  # ANNOTATION_SCHEMA, every annotation of those posts
    high_water: dt.datetime | None  # the latest updated_at seen: the next watermark
    invalid: list[str] = field(default_factory=list)  # tasks skipped, and why


def changes(tasks: Iterable[Task], watermark: dt.datetime | None) -> Changes:
    """The tasks with an annotation updated after `watermark` less the overlap."""
    since = None if watermark is None else watermark - WATERMARK_OVERLAP
    changed: list[Task] = []
    high: dt.datetime | None = watermark
    for task in tasks:
        latest = max((a.updated_at for a in task.annotations), default=None)
        if latest is None or (since is not None and latest <= since):
            continue
        changed.append(task)
        high = latest if high is None else max(high, latest)
    return Changes([t.data.post_key for t in changed], annotation_table(changed), high)
