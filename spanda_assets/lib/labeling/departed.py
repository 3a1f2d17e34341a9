"""Which posts left the labeled set's world for good: a student withdrew or was erased.

A post missing from gold.validated_posts main is not evidence enough to delete its
annotations: gold is rebuilt from scratch when its columns change, and its main is
empty until that rebuild's first audit passes. Only a post whose student no longer
consents to `model_training` (or to silver's purpose), whose student was erased, or
that silver itself erased counts as departed. When silver's main is empty (it is
being rebuilt) nothing is decided, and nothing is deleted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING

import pyarrow as pa

from spanda_assets.lib.lakehouse import load_table_or_none
from spanda_assets.lib.writes import MAIN, in_filter, row_count, scan

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

Departed = Callable[[set[str]], set[str]]  # candidate post keys -> the departed ones


def departed_posts(
    catalog: Catalog, allowed_subjects: Collection[str], erased_subjects: Collection[str]
) -> Departed:
    """A function deciding, for post keys gold no longer publishes, which are departed."""
    allowed = set(allowed_subjects)
    erased = set(erased_subjects)

    def decide(candidates: set[str]) -> set[str]:
        silver = load_table_or_none(catalog, "silver", "forum_posts")
        if not candidates or silver is None or row_count(silver, MAIN) == 0:
            return set()
        rows = scan(
            silver,
            MAIN,
            row_filter=in_filter("post_id", sorted(candidates)),
            selected_fields=("post_id", "subject_id"),
        ).to_arrow()
        subject_of = dict(
            zip(
                rows.column("post_id").cast(pa.string()).to_pylist(),
                rows.column("subject_id").cast(pa.string()).to_pylist(),
                strict=True,
            )
        )
        out = set()
        for key in candidates:
            subject = subject_of.get(key)
            if subject is None or subject not in allowed or subject in erased:
                out.add(key)  # erased from silver, or its student's consent is gone
        return out

    return decide
