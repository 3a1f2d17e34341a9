"""gold.validated_*: silver rows that pass row-level rules; the rest quarantined with reasons.

Each rule is a vectorized predicate over an Arrow table plus a reason a person
can act on. A row failing any rule goes to `gold.quarantine` (table, key,
subject, rule, reason) instead of the validated table; nothing is silently
dropped. Gold is maintained incrementally from silver (lib/validation/publish.py):
a row whose source is fixed, or whose missing course appears, is released from
quarantine by the next run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

MAX_BODY_CHARS = 10_000
ROLES = ("student", "aide", "teacher")


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

    @property
    def references(self) -> set[str]:
        """Reference columns the rules look up (keys of REFERENCE_TABLES)."""
        return {c for r in self.rules for c in r.references}

    def output_schema(self, silver: pa.Schema) -> pa.Schema:
        """The gold table's columns: the selected silver columns, then the derived ones."""
        names = list(self.columns) or silver.names
        fields = [pa.field(c, silver.field(c).type, nullable=c != self.key) for c in names]
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
    """Apply every rule; a row passes only if it passes all of them."""
    if spec.columns:
        rows = rows.select(list(spec.columns))
    for name, fn, _ in spec.derived:
        rows = rows.append_column(name, fn(rows))
    keep = pa.chunked_array([pa.array([True] * rows.num_rows, pa.bool_())])
    quarantined: list[pa.Table] = []
    failures: dict[str, int] = {}
    for rule in spec.rules:
        ok = pc.fill_null(rule.ok(rows, refs), False)
        bad = pc.invert(ok)
        n = pc.sum(bad).as_py() or 0
        failures[rule.name] = n
        if n:
            failed = rows.filter(bad)
            quarantined.append(
                pa.table(
                    {
                        "table_name": pa.repeat(spec.name, n),
                        "row_key": pc.cast(failed[spec.key], pa.string()),
                        "subject_id": failed["subject_id"],
                        "rule": pa.repeat(rule.name, n),
                        "reason": pa.repeat(rule.reason, n),
                    }
                ).cast(QUARANTINE_SCHEMA)
            )
        keep = pc.and_(keep, ok)
    quarantine = pa.concat_tables(quarantined) if quarantined else QUARANTINE_SCHEMA.empty_table()
    return Split(valid=rows.filter(keep), quarantine=quarantine, failures=failures)
