"""The xAPI 1.0.3 statement schema and how its errors read in a validation report.

The schema (`schemas/xapi-statement-1.0.3.json`) holds the spec's rules. A
statement usually breaks several at once (a wrong objectType fails every
property of the shape it selects), so one error is chosen, the one closest to
the statement's root, and told in the validator's words: the JSON path as the
column, what is wrong, and the schema's `description` as the hint. What a
schema cannot say is checked here too: score.raw outside min..max, and
Spanda's own rule that a de-identified submission carries no mbox anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

SCHEMA = "schemas/xapi-statement-1.0.3.json"
DEFAULT_HINT = (
    "Each line must be one JSON statement with actor, verb (with id) and object (xAPI 1.0.3)."
)
TYPE_NAMES = {
    "object": "a JSON object",
    "array": "a JSON array",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
}
# Prefer the error that says most about what is wrong: the least deep, then the plainest.
# A wrong objectType counts as its object's error and comes first: it decides the shape.
RANK = {"type": 0, "required": 1, "additionalProperties": 2}
TYPE_HINT = "xAPI rejects null and values of the wrong type (such as a number in quotes)."
EXTRA_HINT = (
    "Remove what xAPI does not define: custom data goes in an 'extensions' map with IRI keys "
    "(in result, context or the activity definition)."
)
# Values at these keys identify a person: messages name the problem, never the value.
PERSONAL = {"mbox", "mbox_sha1sum", "openid", "account", "name"}
MBOX_DETAIL = "is an email address: use account or mbox_sha1sum in a de-identified submission"
MBOX_HINT = "Replace mbox by an opaque account (homePage and name) or by mbox_sha1sum."


@cache
def statement_schema() -> Draft202012Validator:
    """The compiled statement schema (loaded once per process)."""
    text = resources.files("spanda_assets").joinpath(SCHEMA).read_text(encoding="utf-8")
    schema = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _where(path: str) -> str:
    """`$.verb.id` as messages say it: `verb.id` (the statement itself for `$`)."""
    return "the statement" if path == "$" else path.removeprefix("$.")


def _shown(error: ValidationError, path: str) -> str:
    if PERSONAL & {str(p) for p in error.absolute_path}:
        return ""
    text = json.dumps(error.instance, ensure_ascii=False)
    return f" (got {text if len(text) <= 60 else text[:57] + '...'})"


def describe(error: ValidationError, errors: list[ValidationError]) -> tuple[str, str, str]:
    """(JSON path, detail, hint) for one schema error, in the validator's words."""
    path = error.json_path
    where = _where(path)
    prefix = "" if path == "$" else f"{where}."
    schema = error.schema if isinstance(error.schema, dict) else {}
    hint = str(schema.get("description") or DEFAULT_HINT)
    title = schema.get("title", "valid")
    kind = error.validator
    instance = error.instance
    if kind == "required":
        missing = [
            k
            for e in errors
            if e.validator == "required" and e.json_path == path
            for k in e.validator_value
            if k not in instance
        ]
        missing = list(dict.fromkeys(missing))
        column = f"{path}.{missing[0]}" if len(missing) == 1 else path
        return column, "missing " + ", ".join(prefix + k for k in missing), hint
    if kind == "type":
        expected = TYPE_NAMES.get(str(error.validator_value), str(error.validator_value))
        return path, f"{where} must be {expected}", f"Write {expected} here: {TYPE_HINT}"
    if kind == "additionalProperties":
        defined = schema.get("properties", {})
        extra = [k for k in instance if k not in defined]
        described = f"{schema['description']} " if "description" in schema else ""
        return (
            path,
            f"{', '.join(prefix + k for k in extra)} not defined by xAPI 1.0.3",
            f"{described}{EXTRA_HINT}",
        )
    if kind == "pattern" and "propertyNames" in error.schema_path:
        return path, f"{where} has key {json.dumps(instance)}, which is not {title}", hint
    if kind == "pattern":
        return path, f"{where} is not {title}{_shown(error, path)}", hint
    if kind == "const":
        return (
            path,
            f"{where} must be {json.dumps(error.validator_value)}{_shown(error, path)}",
            hint,
        )
    if kind == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return path, f"{where} must be one of {allowed}{_shown(error, path)}", hint
    if kind == "oneOf":
        options = [s["required"][0] for s in error.validator_value if "required" in s]
        found = [k for k in options if isinstance(instance, dict) and k in instance]
        return path, f"{where} needs {title}; found {', '.join(found) or 'none'}", hint
    if kind == "not":
        return path, f"{where} is {title}", hint
    if kind in ("minimum", "maximum"):
        bound = "at least" if kind == "minimum" else "at most"
        return path, f"{where} must be {bound} {error.validator_value}{_shown(error, path)}", hint
    if kind in ("minItems", "maxItems"):
        bound = "at least" if kind == "minItems" else "at most"
        return path, f"{where} must have {bound} {error.validator_value} item(s)", hint
    # jsonschema's own messages quote the value, which may identify a person: not here.
    return path, f"{where} does not meet the schema's '{kind}' rule", hint


def _relevance(error: ValidationError) -> tuple[int, int]:
    path = error.absolute_path
    if path and path[-1] == "objectType":
        return len(path) - 1, -1
    return len(path), RANK.get(str(error.validator), 3)


def _mboxes(value: Any, path: str) -> Iterator[str]:
    """JSON paths of every `mbox` outside extensions (agents may sit in many places)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "mbox":
                yield f"{path}.mbox"
            elif key != "extensions":
                yield from _mboxes(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _mboxes(item, f"{path}[{i}]")


def statement_problem(stmt: Any) -> tuple[str, str, str] | None:
    """(JSON path, detail, hint) of the first thing wrong with a parsed statement, or None."""
    errors = list(statement_schema().iter_errors(stmt))
    if errors:
        best = min(errors, key=_relevance)
        return describe(best, errors)
    score = (stmt.get("result") or {}).get("score") or {}
    low, high, raw = score.get("min"), score.get("max"), score.get("raw")
    if low is not None and high is not None and low >= high:
        return (
            "$.result.score.min",
            "result.score.min must be less than result.score.max",
            "Give the lowest possible score in min and the highest in max.",
        )
    if raw is not None and ((low is not None and raw < low) or (high is not None and raw > high)):
        return (
            "$.result.score.raw",
            "result.score.raw must lie between min and max",
            "Give the raw score on the scale from min to max (inclusive).",
        )
    for path in _mboxes(stmt, "$"):
        return path, f"{_where(path)} {MBOX_DETAIL}", MBOX_HINT
    return None
