"""The demo operational database: realistic, deterministic, and as large as asked.

`seed()` writes the domain schema (Students, Courses, Enrollments, ForumPosts,
AssessmentResults, ConsentEvents) to any SQLAlchemy URL. The same seed gives
the same rows. `append=True` adds a later batch: new posts, results and
consent events, new students, and updates to existing students and
enrollments with a later ModifiedAt, which is what an incremental extract must
pick up.

The data has the hard cases a de-identifier and an extract meet in practice:
students over 89, ZIP codes in restricted ZIP3 areas and in ZIP+4 form, IPv4
and IPv6 addresses, non-unique ModifiedAt values, courses whose ModifiedAt is
NULL, and forum posts that mention classmates, instructors, emails, phone
numbers, student numbers, URLs and dates, with a real urgency signal.

What the generator knows (the PII spans in each post and its urgency label) is
written as Parquet under `SPANDA_HOME/ground_truth/`, never into the
operational database: the pipeline must find it on its own.

The package splits along its seams: `vocabulary` (the word lists and post
templates, packaged as YAML under `spanda_assets/schemas/seed/`), the pure
generator (`draws`, `generator`, `posts`, `later`) and `writer` (database,
ground-truth files, append).
"""

from __future__ import annotations

from spanda_assets.lib.seed.generator import PRESETS, SeedSizes
from spanda_assets.lib.seed.posts import GT_SPANS_TYPE
from spanda_assets.lib.seed.vocabulary import Place, Vocabulary, vocabulary
from spanda_assets.lib.seed.writer import SeedReport, read_ground_truth, seed

__all__ = [
    "GT_SPANS_TYPE",
    "PLACES",
    "PRESETS",
    "Place",
    "SeedReport",
    "SeedSizes",
    "Vocabulary",
    "read_ground_truth",
    "seed",
    "vocabulary",
]


def __getattr__(name: str) -> tuple[Place, ...]:
    # PLACES is read from the packaged YAML on first use, not at import.
    if name == "PLACES":
        return vocabulary().places
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
