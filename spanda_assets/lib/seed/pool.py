"""A labeled pool of generated forum posts, in memory, for label-quality tests and benchmarks.

The demo database keeps the generator's posts with ~5% of their urgency labels
disagreeing with the text, as human labels do. Measuring a label-quality method
needs labels whose errors are known, so this pool is built from the same
templates with that noise switched off: every label is the class of the template
the post was written from, and any error a test puts in is one it knows about.
"""

from __future__ import annotations

import pyarrow as pa

from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import BASE_TIME, course_rows, roster, student_rows
from spanda_assets.lib.seed.posts import post_body

POOL_SCHEMA = pa.schema([("post_key", pa.string()), ("body", pa.string()), ("label", pa.string())])


def urgency_pool(posts: int, seed: int = 0, label_noise: float = 0.0) -> pa.Table:
    """`posts` generated posts with keys `p00000…`, their text and `urgent`/`not_urgent`.

    The text still carries the generator's personal data (names, e-mails): the pool
    stands in for de-identified gold only where the detail of the text does not matter.
    """
    g = Draws(seed, salt=91)
    students = student_rows(g, 1, 50, BASE_TIME)
    who = roster(students, course_rows(g, 5, BASE_TIME))
    keys, bodies, labels = [], [], []
    for i in range(posts):
        body, urgent, _ = post_body(g, who, who.ids[i % len(who.ids)], label_noise=label_noise)
        keys.append(f"p{i:05d}")
        bodies.append(body)
        labels.append("urgent" if urgent else "not_urgent")
    return pa.table({"post_key": keys, "body": bodies, "label": labels}, schema=POOL_SCHEMA)
