"""Row filters of the download endpoint, parsed into a typed pyiceberg expression.

A reader narrows a download with `?filter=course_id = 'c3' and created_at_year >= 2024`.
The text is never spliced into SQL or handed to an evaluator: a small recursive-descent
parser turns it into pyiceberg's expression tree, with each literal converted to the
column's Iceberg type first, so `created_at_year = 'abc'` is refused as "not an
integer" before any data is read, and a quote or a semicolon in a value is just a
character of that value.

Grammar (case-insensitive keywords):

    expr       := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | primary
    primary    := "(" expr ")" | comparison
    comparison := column op literal
                | column "in" "(" literal ("," literal)* ")"
                | column "not" "in" "(" literal ("," literal)* ")"
                | column "is" ["not"] "null"
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    literal    := 'text with '' for a quote' | number | true | false

Limits keep one request cheap: 2,000 characters, 200 values in an `in` list, 1,000
characters per value, nesting 32 deep.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pyiceberg.expressions import (
    And,
    BooleanExpression,
    EqualTo,
    GreaterThan,
    GreaterThanOrEqual,
    In,
    IsNull,
    LessThan,
    LessThanOrEqual,
    Not,
    NotEqualTo,
    NotIn,
    NotNull,
    Or,
)
from pyiceberg.types import (
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
)

from spanda_assets.lib.errors import SpandaError

MAX_FILTER_CHARS = 2_000
MAX_IN_VALUES = 200
MAX_VALUE_CHARS = 1_000
MAX_DEPTH = 32
_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


class FilterError(SpandaError):
    """The filter cannot be used: says where in the text and what to write instead."""


@dataclass(frozen=True)
class _Token:
    kind: str  # name | string | number | op | lparen | rparen | comma | end
    text: str
    at: int  # 0-based offset in the filter text


_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise FilterError(
                f"filter: unexpected character {text[at]!r} at position {at + 1}; quote text "
                "values with single quotes, e.g. course_id = 'c3'"
            )
        kind = match.lastgroup or ""
        if kind == "string" and len(match.group()) - 2 > MAX_VALUE_CHARS:
            raise FilterError(
                f"filter: the value at position {at + 1} is longer than {MAX_VALUE_CHARS} "
                "characters"
            )
        if kind != "space":
            out.append(_Token(kind, match.group(), at))
        at = match.end()
    out.append(_Token("end", "", len(text)))
    return out


# pyiceberg's expression classes take (column name, value) at run time; their
# constructors' declared types (pydantic models) do not say so, hence Any and _make.
_COMPARE: dict[str, Any] = {
    "=": EqualTo,
    "!=": NotEqualTo,
    "<>": NotEqualTo,
    "<": LessThan,
    "<=": LessThanOrEqual,
    ">": GreaterThan,
    ">=": GreaterThanOrEqual,
}


def _make(kind: Any, *args: Any) -> BooleanExpression:
    expression: BooleanExpression = kind(*args)
    return expression


def _type_name(kind: IcebergType) -> str:
    return str(kind).split("(")[0]


def _convert(column: str, kind: IcebergType, token: _Token) -> Any:
    """The literal as a value of the column's type, or a FilterError saying why not."""
    raw = token.text
    where = f"filter: column {column!r} is {_type_name(kind)}"

    def refuse(expected: str) -> FilterError:
        return FilterError(f"{where}; {raw!r} at position {token.at + 1} is not {expected}")

    text = raw[1:-1].replace("''", "'") if token.kind == "string" else raw
    if isinstance(kind, StringType):
        if token.kind != "string":
            raise refuse("a quoted text value (write it as '...')")
        return text
    if isinstance(kind, BooleanType):
        if token.kind == "name" and raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise refuse("true or false")
    if isinstance(kind, IntegerType | LongType):
        if token.kind != "number" or not re.fullmatch(r"[-+]?\d+", raw):
            raise refuse("an integer")
        value = int(raw)
        low, high = _INT32 if isinstance(kind, IntegerType) else _INT64
        if not low <= value <= high:
            raise refuse(f"an integer between {low} and {high}")
        return value
    if isinstance(kind, FloatType | DoubleType):
        if token.kind != "number":
            raise refuse("a number")
        number = float(raw)
        if not math.isfinite(number):
            raise refuse("a finite number")
        return number
    if isinstance(kind, DecimalType):
        if token.kind != "number":
            raise refuse("a number")
        try:
            decimal = Decimal(raw)
            # the column's own scale: 1.5 is 1.50 in a decimal(5, 2); a value with more
            # decimals or digits than the column holds cannot equal any of its values
            scaled = decimal.quantize(Decimal(1).scaleb(-kind.scale))
        except InvalidOperation as exc:
            raise refuse(f"a number with at most {kind.scale} decimals") from exc
        if scaled != decimal:
            raise refuse(f"a number with at most {kind.scale} decimals")
        if len(scaled.as_tuple().digits) > kind.precision:
            raise refuse(f"a number of at most {kind.precision} digits")
        return scaled
    if isinstance(kind, DateType):
        if token.kind != "string":
            raise refuse("a quoted date, e.g. '2024-09-01'")
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError as exc:
            raise refuse("a date in the form 'YYYY-MM-DD'") from exc
    if isinstance(kind, TimestampType | TimestamptzType):
        if token.kind != "string":
            raise refuse("a quoted timestamp, e.g. '2024-09-01T08:00:00'")
        try:
            moment = dt.datetime.fromisoformat(text)
            if isinstance(kind, TimestamptzType) and moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            if isinstance(kind, TimestampType) and moment.tzinfo is not None:
                moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
        except (ValueError, OverflowError) as exc:
            raise refuse("a timestamp in ISO 8601 form, between years 1 and 9999") from exc
        return moment.isoformat()
    raise FilterError(f"{where}: filtering on a column of this type is not supported")


class _Parser:
    def __init__(self, text: str, columns: Mapping[str, IcebergType]) -> None:
        self.tokens = _tokens(text)
        self.pos = 0
        self.columns = columns
        self.used: list[str] = []

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "name" and token.text.lower() == word:
            self.pos += 1
            return True
        return False

    def expect(self, kind: str, what: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            found = token.text or "the end of the filter"
            raise FilterError(
                f"filter: expected {what} at position {token.at + 1}, found {found!r}"
            )
        return token

    def parse(self) -> BooleanExpression:
        expression = self.or_expr(0)
        token = self.peek()
        if token.kind != "end":
            raise FilterError(
                f"filter: unexpected {token.text!r} at position {token.at + 1}; join "
                "conditions with 'and' or 'or'"
            )
        return expression

    def or_expr(self, depth: int) -> BooleanExpression:
        expression = self.and_expr(depth)
        while self.keyword("or"):
            expression = Or(expression, self.and_expr(depth))
        return expression

    def and_expr(self, depth: int) -> BooleanExpression:
        expression = self.not_expr(depth)
        while self.keyword("and"):
            expression = And(expression, self.not_expr(depth))
        return expression

    def not_expr(self, depth: int) -> BooleanExpression:
        if depth > MAX_DEPTH:
            raise FilterError(f"filter: nested more than {MAX_DEPTH} deep")
        if self.keyword("not"):
            return Not(self.not_expr(depth + 1))
        if self.peek().kind == "lparen":
            self.take()
            expression = self.or_expr(depth + 1)
            self.expect("rparen", "')'")
            return expression
        return self.comparison()

    def column(self) -> tuple[str, IcebergType]:
        token = self.expect("name", "a column name")
        name = token.text
        if name.lower() in _KEYWORDS or name not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise FilterError(
                f"filter: {name!r} at position {token.at + 1} is not a column of this "
                f"download; columns: {known}"
            )
        self.used.append(name)
        return name, self.columns[name]

    def literals(self, column: str, kind: IcebergType) -> list[Any]:
        self.expect("lparen", "'(' after 'in'")
        values = [self.literal(column, kind)]
        while self.peek().kind == "comma":
            self.take()
            values.append(self.literal(column, kind))
            if len(values) > MAX_IN_VALUES:
                raise FilterError(f"filter: more than {MAX_IN_VALUES} values in one 'in' list")
        self.expect("rparen", "')' closing the 'in' list")
        return values

    def literal(self, column: str, kind: IcebergType) -> Any:
        token = self.take()
        if token.kind not in ("string", "number", "name"):
            found = token.text or "the end of the filter"
            raise FilterError(
                f"filter: expected a value for {column!r} at position {token.at + 1}, found "
                f"{found!r}"
            )
        return _convert(column, kind, token)

    def comparison(self) -> BooleanExpression:
        name, kind = self.column()
        if self.keyword("is"):
            negated = self.keyword("not")
            if not self.keyword("null"):
                token = self.peek()
                raise FilterError(
                    f"filter: expected 'null' at position {token.at + 1} ('is null' or "
                    "'is not null')"
                )
            return _make(NotNull if negated else IsNull, name)
        if self.keyword("not"):
            if not self.keyword("in"):
                raise FilterError(
                    f"filter: expected 'in' after 'not' at position {self.peek().at + 1}"
                )
            return _make(NotIn, name, self.literals(name, kind))
        if self.keyword("in"):
            return _make(In, name, self.literals(name, kind))
        op = self.expect("op", "a comparison (=, !=, <, <=, >, >=, in, is null)")
        return _make(_COMPARE[op.text], name, self.literal(name, kind))


@dataclass(frozen=True)
class ParsedFilter:
    expression: BooleanExpression
    columns: tuple[str, ...]  # the columns the filter reads, in order of first use


def parse_filter(text: str, columns: Mapping[str, IcebergType]) -> ParsedFilter:
    """`text` as a pyiceberg expression over `columns` (name -> Iceberg type).

    Raises FilterError naming the position and the fix for anything else: an unknown
    column, a value of the wrong type, a stray character, a text over the limits."""
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"filter: longer than {MAX_FILTER_CHARS} characters")
    if not text.strip():
        raise FilterError("filter: empty; leave the parameter out to download every row")
    parser = _Parser(text, columns)
    expression = parser.parse()
    return ParsedFilter(expression, tuple(dict.fromkeys(parser.used)))


def column_types(fields: Iterable[Any]) -> dict[str, IcebergType]:
    """name -> type of an Iceberg schema's top-level fields."""
    return {f.name: f.field_type for f in fields}
