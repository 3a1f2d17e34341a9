"""gold.validated_*: silver rows that pass row-level rules; the rest quarantined with reasons.

Each rule is a vectorized predicate over an Arrow table plus a reason a person
can act on. Before the rules, the columns they compute on are brought to the
kind they need (`types`): a source that keeps grades or scores as text, or a
column that is all NULL, is cast; a value that is not a number (a letter grade
such as "B+") is quarantined with a reason that names the value and the
expected type, never a raw Arrow kernel error. A row failing any rule goes to
`gold.quarantine` (table, key, subject, rule, reason) instead of the validated
table; nothing is silently dropped. Gold is maintained incrementally from
silver (lib/validation/publish.py): a row whose source is fixed, or whose
missing course appears, is released from quarantine by the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from spanda_assets.lib.arrow_types import type_name

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

MAX_BODY_CHARS = 10_000
ROLES = ("student", "aide", "teacher")

# Kinds a rule can require of a column (GoldSpec.types).
NUMBER = "number"  # any integer, float or decimal; text is parsed as float64
INTEGER = "integer"  # any integer; text and integral floats become int64
_PATTERNS = {NUMBER: r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"}
_KIND_WORDS = {NUMBER: "a number", INTEGER: "a whole number"}
TYPE_HINT = (
    "fix the value at the source, or declare the column's type under `column_types` of "
    "its table in sources.yaml"
)


@dataclass(frozen=True)
class Rule:
    name: str
    reason: str
    ok: Callable[[pa.Table, dict[str, pa.Array]], pa.ChunkedArray | pa.Array]
    # Reference columns the rule looks up in other tables (silver.courses, silver.students):
    # when their key sets change, the rows this rule holds are checked again.
    references: tuple[str, ...] = ()


@dataclass(frozen=True)
class GoldSpec:
    """One validated table: its silver source, key, consent purpose and row rules."""

    name: str
    source: str
    key: str
    purpose: str
    rules: tuple[Rule, ...]
    columns: tuple[str, ...] = ()
    # Columns computed from the silver row and stored with it: (name, function, reason).
    derived: tuple[tuple[str, Callable[[pa.Table], pa.Array | pa.ChunkedArray], str], ...] = ()
    # The kind each column the rules compute on must have: (column, NUMBER | INTEGER).
    types: tuple[tuple[str, str], ...] = ()

    @property
    def references(self) -> set[str]:
        """Reference columns the rules look up (keys of REFERENCE_TABLES)."""
        return {c for r in self.rules for c in r.references}

    @property
    def rule_names(self) -> list[str]:
        """Every reason a row can be quarantined for: a type per typed column, then the rules."""
        return [f"type_{c}" for c, _ in self.types] + [r.name for r in self.rules]

    def output_schema(self, silver: pa.Schema) -> pa.Schema:
        """The gold table's columns: the selected silver columns, then the derived ones."""
        names = list(self.columns) or silver.names
        kinds = dict(self.types)
        fields = [
            pa.field(
                c,
                target_type(kinds[c], silver.field(c).type) if c in kinds else silver.field(c).type,
                nullable=c != self.key,
            )
            for c in names
        ]
        empty = pa.schema(fields).empty_table()
        for name, fn, _ in self.derived:
            fields.append(pa.field(name, fn(empty).type))
        return pa.schema(fields)


@dataclass
class Split:
    valid: pa.Table
    quarantine: pa.Table
    failures: dict[str, int] = field(default_factory=dict)


QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("row_key", pa.string(), nullable=False),
        pa.field("subject_id", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("reason", pa.string()),
    ]
)


def target_type(kind: str, found: pa.DataType) -> pa.DataType:
    """The type a column of `kind` gets in gold: its own if it already is of that kind."""
    if kind == INTEGER:
        return found if pa.types.is_integer(found) else pa.int64()
    numeric = pa.types.is_integer(found) or pa.types.is_floating(found)
    return found if numeric or pa.types.is_decimal(found) else pa.float64()


_INT64_LIMIT = 2.0**63 - 1024  # the largest float below which a cast to int64 is safe


def _integers(numbers: pa.ChunkedArray | pa.Array) -> tuple[Any, Any]:
    """Float64 values to int64 where they are whole, finite and in range; the mask of those
    that are not (a NULL is neither)."""
    ok = pc.fill_null(
        pc.and_(
            pc.and_(pc.is_finite(numbers), pc.equal(pc.floor(numbers), numbers)),
            pc.less_equal(pc.abs(numbers), _INT64_LIMIT),
        ),
        False,
    )
    kept = pc.if_else(ok, numbers, pa.scalar(None, pa.float64()))
    return pc.cast(kept, pa.int64()), pc.and_(pc.is_valid(numbers), pc.invert(ok))


def _convert(
    values: pa.ChunkedArray, kind: str, target: pa.DataType
) -> tuple[pa.ChunkedArray | pa.Array, pa.ChunkedArray | pa.Array]:
    """`values` cast to `target`, and a mask of the values that are not of `kind`.

    Never raises on a value: whatever cannot be read becomes NULL and is in the mask.
    """
    found = values.type
    n = len(values)
    if pa.types.is_null(found):
        return pa.nulls(n, target), pa.array([False] * n, pa.bool_())
    if pa.types.is_string(found) or pa.types.is_large_string(found):
        text = pc.utf8_trim_whitespace(values)
        text = pc.replace_substring_regex(text, r"^\+", "")  # "+85" is 85
        ok = pc.fill_null(pc.match_substring_regex(text, _PATTERNS[NUMBER]), False)
        numbers = pc.cast(pc.if_else(ok, text, pa.scalar(None, found)), pa.float64())
        unreadable = pc.and_(pc.is_valid(values), pc.invert(ok))
        if kind == NUMBER:
            return pc.cast(numbers, target), unreadable
        exact = pc.fill_null(pc.match_substring_regex(text, r"^-?\d{1,18}(\.0*)?$"), False)
        digits = pc.replace_substring_regex(text, r"\.0*$", "")
        whole = pc.cast(pc.if_else(exact, digits, pa.scalar(None, found)), pa.int64())
        approx, not_whole = _integers(numbers)
        # Up to 18 digits exactly; beyond, through float64 (checked for range).
        return pc.if_else(exact, whole, approx), pc.or_(
            unreadable, pc.and_(pc.invert(exact), not_whole)
        )
    if kind == INTEGER and (pa.types.is_floating(found) or pa.types.is_decimal(found)):
        return _integers(pc.cast(values, pa.float64()))
    try:
        return pc.cast(values, target), pa.array([False] * n, pa.bool_())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # One value at a time: only the ones that do not cast are out.
        out: list[Any] = []
        bad: list[bool] = []
        for v in values.to_pylist():
            try:
                out.append(pa.array([v]).cast(target)[0].as_py() if v is not None else None)
                bad.append(False)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                out.append(None)
                bad.append(True)
        return pa.array(out, target), pa.array(bad, pa.bool_())


def coerce(
    spec: GoldSpec, rows: pa.Table
) -> tuple[pa.Table, list[tuple[str, pa.ChunkedArray | pa.Array, pa.Array]]]:
    """Bring typed columns to their kind. Returns the table and, per typed column, the rule
    name, the mask of rows whose value is not of the kind, and each such row's reason."""
    problems: list[tuple[str, pa.ChunkedArray | pa.Array, pa.Array]] = []
    for column, kind in spec.types:
        if column not in rows.column_names:
            continue
        values = rows.column(column)
        target = target_type(kind, values.type)
        if values.type == target:
            continue
        converted, bad = _convert(values, kind, target)
        rows = rows.set_column(rows.column_names.index(column), column, converted)

        reasons = [
            f"{column} {v!r} is not {_KIND_WORDS[kind]} (found {type_name(values.type)}, "
            f"expected {type_name(target)}): {TYPE_HINT}"
            for v in values.filter(bad).to_pylist()
        ]
        problems.append((f"type_{column}", bad, pa.array(reasons, pa.string())))
    return rows, problems


def _true(a: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    return pc.fill_null(a, False)


def _in(values: pa.ChunkedArray, allowed: pa.Array) -> pa.ChunkedArray | pa.Array:
    return _true(pc.is_in(values, value_set=allowed))


# Reference column -> the silver table (and its column) that holds the valid keys.
REFERENCE_TABLES = {"course_id": ("courses", "course_id"), "subject_id": ("students", "subject_id")}


def exists_rule(name: str, column: str) -> Rule:
    """`column` must name a row of its reference table (REFERENCE_TABLES)."""
    table = REFERENCE_TABLES[column][0]
    return Rule(
        name,
        f"{column} is not in silver.{table}",
        lambda t, r: _in(t[column], r[column]),
        references=(column,),
    )


def reference_tables(catalog: Catalog, columns: Iterable[str]) -> dict[str, Table]:
    """The silver table that holds the valid keys of each reference column."""
    return {c: catalog.load_table(("silver", REFERENCE_TABLES[c][0])) for c in columns}


def reference_keys(tables: dict[str, Table]) -> dict[str, pa.Array]:
    """The valid keys of each reference column (from `reference_tables`)."""
    return {
        column: table.scan(selected_fields=(REFERENCE_TABLES[column][1],))
        .to_arrow()
        .column(0)
        .combine_chunks()
        for column, table in tables.items()
    }


SPECS: dict[str, GoldSpec] = {
    "validated_posts": GoldSpec(
        name="validated_posts",
        source="forum_posts",
        key="post_id",
        purpose="model_training",
        columns=("post_id", "subject_id", "course_id", "body", "created_at_year"),
        types=(("course_id", INTEGER),),
        derived=(
            (
                "body_length",
                lambda t: pc.cast(pc.utf8_length(t["body"]), pa.int32()),
                # A model feature, and what the contracts check: they read this narrow
                # column instead of every post's text again.
                "characters in body",
            ),
        ),
        rules=(
            Rule(
                "body_present",
                "post body is empty",
                lambda t, r: _true(
                    pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(t["body"])), 0)
                ),
            ),
            Rule(
                "body_length",
                f"post body is longer than {MAX_BODY_CHARS:,} characters",
                lambda t, r: _true(pc.less_equal(pc.utf8_length(t["body"]), MAX_BODY_CHARS)),
            ),
            exists_rule("course_exists", "course_id"),
            Rule(
                "subject_present",
                "subject_id is missing",
                lambda t, r: pc.is_valid(t["subject_id"]),
            ),
        ),
    ),
    "validated_enrollments": GoldSpec(
        name="validated_enrollments",
        source="enrollments",
        key="enrollment_id",
        purpose="model_training",
        types=(
            ("course_id", INTEGER),
            ("final_grade", NUMBER),
            ("begin_date_year", INTEGER),
            ("end_date_year", INTEGER),
        ),
        rules=(
            Rule(
                "grade_range",
                "final_grade is outside 0-100",
                lambda t, r: pc.or_kleene(
                    pc.is_null(t["final_grade"]),
                    pc.and_(
                        pc.greater_equal(t["final_grade"], 0), pc.less_equal(t["final_grade"], 100)
                    ),
                ),
            ),
            Rule(
                "role_known",
                f"role is not one of {', '.join(ROLES)}",
                lambda t, r: _in(t["role"], pa.array(ROLES)),
            ),
            Rule(
                "dates_ordered",
                "end year is before begin year",
                lambda t, r: _true(
                    pc.or_kleene(
                        pc.is_null(t["end_date_year"]),
                        pc.greater_equal(t["end_date_year"], t["begin_date_year"]),
                    )
                ),
            ),
            exists_rule("course_exists", "course_id"),
            exists_rule("student_exists", "subject_id"),
        ),
    ),
    "validated_assessments": GoldSpec(
        name="validated_assessments",
        source="assessment_results",
        key="result_id",
        purpose="model_training",
        types=(
            ("course_id", INTEGER),
            ("score", NUMBER),
            ("max_score", NUMBER),
            ("attempt_no", INTEGER),
        ),
        rules=(
            Rule(
                "max_score_positive",
                "max_score is not positive",
                lambda t, r: _true(pc.greater(t["max_score"], 0)),
            ),
            Rule(
                "score_range",
                "score is outside 0..max_score",
                lambda t, r: _true(
                    pc.and_(
                        pc.greater_equal(t["score"], 0), pc.less_equal(t["score"], t["max_score"])
                    )
                ),
            ),
            Rule(
                "attempt_positive",
                "attempt_no is below 1",
                lambda t, r: _true(pc.greater_equal(t["attempt_no"], 1)),
            ),
            exists_rule("course_exists", "course_id"),
        ),
    ),
}


def split(spec: GoldSpec, rows: pa.Table, refs: dict[str, pa.Array]) -> Split:
    """Apply every rule; a row passes only if it passes all of them.

    A row whose typed value is not of its kind is quarantined for that alone:
    the rules do not run on a value that could not be read.
    """
    if spec.columns:
        rows = rows.select(list(spec.columns))
    rows, problems = coerce(spec, rows)
    for name, fn, _ in spec.derived:
        rows = rows.append_column(name, fn(rows))
    readable = pa.chunked_array([pa.array([True] * rows.num_rows, pa.bool_())])
    quarantined: list[pa.Table] = []
    failures: dict[str, int] = {}

    def hold(name: str, bad: pa.ChunkedArray | pa.Array, reasons: pa.Array | str) -> None:
        n = pc.sum(bad).as_py() or 0
        failures[name] = n
        if not n:
            return
        failed = rows.filter(bad)
        quarantined.append(
            pa.table(
                {
                    "table_name": pa.repeat(spec.name, n),
                    "row_key": pc.cast(failed[spec.key], pa.string()),
                    "subject_id": failed["subject_id"],
                    "rule": pa.repeat(name, n),
                    "reason": reasons if isinstance(reasons, pa.Array) else pa.repeat(reasons, n),
                }
            ).cast(QUARANTINE_SCHEMA)
        )

    for name, bad, reasons in problems:
        hold(name, bad, reasons)
        readable = pc.and_(readable, pc.invert(bad))
    keep = readable
    for rule in spec.rules:
        ok = pc.fill_null(rule.ok(rows, refs), False)
        hold(rule.name, pc.and_(readable, pc.invert(ok)), rule.reason)
        keep = pc.and_(keep, ok)
    quarantine = pa.concat_tables(quarantined) if quarantined else QUARANTINE_SCHEMA.empty_table()
    return Split(valid=rows.filter(keep), quarantine=quarantine, failures=failures)
