"""Forum posts and their ground truth: what each post's PII spans and urgency are.

Posts are built from the templates in `schemas/seed/posts.yaml`. Because the
generator places every value itself, it knows exactly where the personal data
sits in the text; that knowledge is yielded as an Arrow table beside the rows,
for `writer.py` to keep outside the operational database.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from spanda_assets.lib.seed.draws import Draws
from spanda_assets.lib.seed.generator import CHUNK, Roster, Row
from spanda_assets.lib.seed.vocabulary import vocabulary

BLANK_POST_EVERY = 2_000  # the tiny preset (1,000 posts) has none
URGENT_SHARE = 0.22

# The shifted batch of `spanda seed --append --drift`: posts a drift monitor must flag.
# Each shift is one a forum really sees (an exam week: students write at night, at
# length, about one or two courses, and more of them need help now).
DRIFT_URGENT_SHARE = 0.6
DRIFT_EXTRA_SENTENCES = (2, 5)  # at least 2 and at most 4 more sentences per post
DRIFT_NIGHT_HOURS = 6  # posted between 00:00 and 05:59
DRIFT_POSTS_PER_NIGHT = 600  # a larger batch goes on over the following nights
DRIFT_FOCUS_COURSES = 2
DRIFT_FOCUS_SHARE = 0.85  # share of the batch's posts in its focus courses

# Slot -> ground-truth category; slots not listed (TOPIC, WEEK, ASSIGNMENT) are not PII.
SLOT_CATEGORY = {
    "NAME": "NAME",
    "FIRST": "NAME",
    "INSTRUCTOR": "NAME",
    "EMAIL": "EMAIL",
    "PHONE": "PHONE",
    "ID": "ID",
    "URL": "URL",
    "DATE": "DATE",
    "DATE2": "DATE",
    "ADDRESS": "ADDRESS",
    "IP": "IP",
    "SSN": "SSN",
}

GT_SPANS_TYPE = pa.list_(
    pa.struct([("category", pa.string()), ("start", pa.int32()), ("end", pa.int32())])
)
GROUND_TRUTH_SCHEMA = pa.schema(
    [("post_id", pa.int64()), ("urgent", pa.bool_()), ("pii_spans", GT_SPANS_TYPE)]
)

# A parsed template: (is_slot, text) segments, e.g. "Hi {FIRST}." -> literal, slot, literal.
Template = list[tuple[bool, str]]


@dataclass(frozen=True)
class Templates:
    urgent: list[Template]
    routine: list[Template]
    pii: list[Template]


def parse_template(text: str) -> Template:
    out: Template = []
    rest = text
    while "{" in rest:
        head, _, tail = rest.partition("{")
        slot, _, rest = tail.partition("}")
        if head:
            out.append((False, head))
        out.append((True, slot))
    if rest:
        out.append((False, rest))
    return out


@functools.cache
def templates() -> Templates:
    """The packaged post templates, parsed once per process."""
    w = vocabulary()
    return Templates(
        urgent=[parse_template(t) for t in w.urgent],
        routine=[parse_template(t) for t in w.routine],
        pii=[parse_template(t) for t in w.pii_sentences],
    )


def post_body(
    g: Draws, roster: Roster, student_id: int, label_noise: float = 0.05, drift: bool = False
) -> tuple[str, bool, list[tuple[str, int, int]]]:
    """One post body, its urgency label, and the (category, start, end) of every PII span.

    `label_noise` is the share of labels that disagree with the text; the noise draw is
    made whatever its value, so a noise-free pool has the same texts as the demo's.
    `drift` writes the shifted batch's post: more often urgent and several sentences
    longer. Without it no draw is added, so the same seed gives the same posts as before.
    """
    t = templates()
    parts: list[str] = []
    spans: list[tuple[str, int, int]] = []
    pos = 0
    urgent = g.rng.random() < (DRIFT_URGENT_SHARE if drift else URGENT_SHARE)
    sentences: list[Template] = [g.pick(t.urgent if urgent else t.routine)]
    n_pii = 0 if g.rng.random() < 0.55 else int(g.rng.integers(1, 3))
    for _ in range(n_pii):
        sentences.insert(int(g.rng.integers(0, len(sentences) + 1)), g.pick(t.pii))
    if g.rng.random() < 0.3:
        sentences.append(g.pick(t.routine))
    if drift:
        # Routine sentences only in a routine post, so the label still fits the text.
        for _ in range(int(g.rng.integers(*DRIFT_EXTRA_SENTENCES))):
            sentences.append(g.pick(t.urgent if urgent and g.rng.random() < 0.5 else t.routine))
    for si, segs in enumerate(sentences):
        if si:
            parts.append(" ")
            pos += 1
        for is_slot, text in segs:
            value = fill_slot(g, roster, text, student_id) if is_slot else text
            if is_slot and SLOT_CATEGORY.get(text):
                spans.append((SLOT_CATEGORY[text], pos, pos + len(value)))
            parts.append(value)
            pos += len(value)
    # ~5% of labels disagree with the text, as human labels do.
    label = urgent if g.rng.random() >= label_noise else not urgent
    return "".join(parts), label, spans


def fill_slot(g: Draws, roster: Roster, slot: str, student_id: int) -> str:
    """The text for one template slot; raises KeyError for a slot it does not know."""
    if slot == "NAME":
        i = int(g.rng.integers(len(roster.names)))
        first, last = roster.names[i]
        return f"{first} {last}" if g.rng.random() < 0.7 else first
    if slot == "FIRST":
        return roster.names[int(g.rng.integers(len(roster.names)))][0]
    if slot == "INSTRUCTOR":
        full = g.pick(roster.instructors)
        if g.rng.random() < 0.5:
            return f"{g.pick(g.words.instructor_titles)} {full.split()[-1]}"
        return str(full)
    if slot == "EMAIL":
        return str(g.pick(roster.emails))
    if slot == "PHONE":
        return g.phone()
    if slot == "ID":
        return g.student_number(int(g.pick(roster.ids)))
    if slot == "URL":
        return g.url()
    if slot in ("DATE", "DATE2"):
        return g.date_text()
    if slot == "ADDRESS":
        return g.address()
    if slot == "IP":
        return g.ip()
    if slot == "SSN":
        return g.ssn()
    if slot == "ASSIGNMENT":
        return str(g.pick(g.words.assessments))
    if slot == "TOPIC":
        return str(g.pick(g.words.topics))
    if slot == "WEEK":
        return str(int(g.rng.integers(1, 13)))
    raise KeyError(slot)


def template_slots(texts: Sequence[str]) -> set[str]:
    """Every slot name the templates use."""
    return {seg for t in texts for is_slot, seg in parse_template(t) if is_slot}


def post_chunks(
    g: Draws,
    roster: Roster,
    start_id: int,
    count: int,
    when: dt.datetime,
    drift: bool = False,
) -> Iterator[tuple[list[Row], pa.Table]]:
    """ForumPosts rows and their ground truth, `CHUNK` posts at a time.

    With `drift` the posts are the shifted batch (see DRIFT_*): written in the nights
    after `when`, mostly in two courses, longer and more often urgent.
    """
    pid = start_id
    end = start_id + count
    t = when
    courses = np.asarray(roster.course_ids)
    if drift:
        focus = g.rng.choice(courses, size=min(DRIFT_FOCUS_COURSES, len(courses)), replace=False)
        first_night = dt.datetime.combine(when.date() + dt.timedelta(days=1), dt.time())
        per_night = min(count, DRIFT_POSTS_PER_NIGHT)
        slot = DRIFT_NIGHT_HOURS * 3600 / per_night  # seconds of night per post
    while pid < end:
        n = min(CHUNK, end - pid)
        rows: list[Row] = []
        gt_ids, gt_urgent, gt_spans = [], [], []
        sids = g.rng.choice(np.asarray(roster.ids), size=n)
        if drift:
            in_focus = g.rng.random(n) < DRIFT_FOCUS_SHARE
            cids = np.where(in_focus, g.rng.choice(focus, size=n), g.rng.choice(courses, size=n))
            # Post j of the batch: night j // per_night, in the (j % per_night)-th slot of it.
            offsets = g.rng.random(n)
        else:
            cids = g.rng.choice(courses, size=n)
            gaps = g.rng.integers(1, 60, size=n)
        for i in range(n):
            sid = int(sids[i])
            body, urgent, spans = post_body(g, roster, sid, drift=drift)
            if pid % BLANK_POST_EVERY == 0:
                # A blank post now and then, as forms let through: the demo's gold
                # quarantine has something to show (rule body_present).
                body, urgent, spans = "  ", False, []
            if drift:
                j = pid - start_id
                t = first_night + dt.timedelta(
                    days=j // per_night, seconds=int((j % per_night + offsets[i]) * slot)
                )
            else:
                t = t + dt.timedelta(seconds=int(gaps[i]))
            rows.append(
                {
                    "PostID": pid,
                    "StudentID": sid,
                    "CourseID": int(cids[i]),
                    "Body": body,
                    "CreatedAt": t,
                }
            )
            gt_ids.append(pid)
            gt_urgent.append(urgent)
            gt_spans.append([{"category": c, "start": s, "end": e} for c, s, e in spans])
            pid += 1
        truth = pa.table(
            {
                "post_id": pa.array(gt_ids, pa.int64()),
                "urgent": pa.array(gt_urgent, pa.bool_()),
                "pii_spans": pa.array(gt_spans, type=GT_SPANS_TYPE),
            }
        )
        yield rows, truth
