"""xAPI 1.0.3 statements as JSON Lines: one statement per line, each checked on its own.

A line is decoded, parsed and checked against the statement schema
(`xapi_schema`); a line that fails becomes one issue at that line, so a
submitter can fix a file top to bottom. JSON that Python would accept but a
statement may not hold (a property given twice, NaN) is refused while parsing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spanda_assets.lib.submissions.validate.context import Context
from spanda_assets.lib.submissions.validate.xapi_schema import statement_problem

DUPLICATE_HINT = "Give each property once: a later value would silently replace an earlier one."


class _Duplicate(ValueError):
    """A property given twice in one object (json.loads would keep the last)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [k for k, _ in pairs]
        raise _Duplicate(next(k for k in keys if keys.count(k) > 1))
    return obj


def _free_texts(stmt: dict[str, Any]) -> list[tuple[str, str]]:
    """The statement's human-written text, where a learner's or a teacher's words go:
    the result's response and the activity's name and description (language maps).
    Identifiers (activity ids, verb ids, account home pages) are IRIs by the spec, so
    scanning them would flag every statement as holding a URL."""
    out: list[tuple[str, str]] = []
    result = stmt.get("result")
    if isinstance(result, dict) and isinstance(result.get("response"), str):
        out.append(("result.response", result["response"]))
    target = stmt.get("object")
    definition = target.get("definition") if isinstance(target, dict) else None
    if isinstance(definition, dict):
        for key in ("name", "description"):
            texts = definition.get(key)
            if isinstance(texts, dict):
                joined = "\n".join(v for v in texts.values() if isinstance(v, str))
                if joined:
                    out.append((f"object.definition.{key}", joined))
    return out


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


class XapiChecker:
    """Every line of a `.jsonl` file: UTF-8, JSON, a valid statement, no identifying free text."""

    name = "xAPI"

    def claims(self, path: Path, ctx: Context) -> bool:
        return path.suffix == ".jsonl"

    def check(self, path: Path, ctx: Context) -> set[Path]:
        loc = ctx.rel(path)
        with path.open("rb") as f:
            for n, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                ctx.report.rows_checked += 1
                try:
                    text = raw.decode("utf-8-sig" if n == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    ctx.add(
                        "INVALID_ENCODING", loc, line=n, at_column=exc.start + 1, detail=exc.reason
                    )
                    continue
                try:
                    stmt = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
                except json.JSONDecodeError as exc:
                    ctx.add("JSON_INVALID", loc, line=n, at_column=exc.colno, detail=exc.msg)
                    continue
                except _Duplicate as exc:
                    ctx.add(
                        "XAPI_STATEMENT_INVALID",
                        loc,
                        line=n,
                        detail=f"property '{exc}' appears more than once in one object",
                        hint=DUPLICATE_HINT,
                    )
                    continue
                except ValueError as exc:
                    ctx.add("JSON_INVALID", loc, line=n, detail=str(exc))
                    continue
                problem = statement_problem(stmt)
                if problem:
                    column, detail, hint = problem
                    ctx.add(
                        "XAPI_STATEMENT_INVALID",
                        loc,
                        line=n,
                        at_column=column,
                        detail=detail,
                        hint=hint,
                    )
                else:
                    for column, value in _free_texts(stmt):
                        ctx.free_text(loc, n, column, value)
        return {path}
