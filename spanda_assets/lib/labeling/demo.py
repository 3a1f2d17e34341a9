"""Demo only: instructors' annotations simulated from the seed generator's ground truth.

`make demo` has no Label Studio server and no instructors, yet the chain after the
labeled set (training, model checks) needs labels. This plays two instructors on the
tasks the platform pushed: the first labels every task with the generator's urgency,
the second labels an overlap share and disagrees on a few, so agreement figures are
not trivially perfect. It writes through the annotation tool's own calls, exactly as
annotations made in Label Studio's UI would arrive.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa

from spanda_assets import settings
from spanda_assets.lib.labeling.store import AnnotationStore
from spanda_assets.lib.privacy.pseudonym import Pseudonymizer, load_key
from spanda_assets.lib.seed import read_ground_truth

INSTRUCTORS = ("instructor.one@demo.spanda", "instructor.two@demo.spanda")


def simulate_annotations(
    store: AnnotationStore,
    ground_truth: pa.Table,
    post_key_of: Callable[[int], str],
    *,
    overlap: float = 0.3,
    disagreement: float = 0.05,
    seed: int = 0,
) -> int:
    """Annotate the store's unannotated tasks from `ground_truth` (post_id, urgent);
    returns how many annotations were added."""
    truth = {
        post_key_of(pid): ("urgent" if urgent else "not_urgent")
        for pid, urgent in zip(
            ground_truth.column("post_id").to_pylist(),
            ground_truth.column("urgent").to_pylist(),
            strict=True,
        )
    }
    rng = random.Random(seed)
    choices: list[tuple[str, str, int | str]] = []
    for task in store.tasks():
        label = truth.get(task.data.post_key)
        if label is None or task.annotations:
            continue
        choices.append((task.data.post_key, label, INSTRUCTORS[0]))
        if rng.random() < overlap:
            other = label
            if rng.random() < disagreement:
                other = "not_urgent" if label == "urgent" else "urgent"
            choices.append((task.data.post_key, other, INSTRUCTORS[1]))
    # one rewrite of the store for the whole batch, as a bulk import would
    return store.add_annotations(choices)


def annotate_as_demo(ground_truth_dir: Path | None = None) -> int:
    """What `spanda demo` does before the labeled set: the demo's instructors on the tasks
    of SPANDA_HOME's annotation store, from the seed generator's ground truth (default
    SPANDA_HOME/ground_truth), each post found by its pseudonymous key. Returns how many
    annotations were added."""
    pseudonymizer = Pseudonymizer(load_key())
    return simulate_annotations(
        AnnotationStore(),
        read_ground_truth(ground_truth_dir or settings.ground_truth_dir()),
        lambda post_id: pseudonymizer.one("forum_posts.post_id", post_id),
    )
