"""What the urgency model sees of a post, and the scikit-learn pipeline that learns from it.

One function, `model_inputs`, turns a frame with a `body` column into the model's
inputs, at training and at inference alike (the pyfunc wrapper calls it too), so
the two can never disagree about a feature.

The text is normalized before it is vectorized, and the normalization is what the
invariance tests hold the model to: a name, a typed placeholder (`[NAME]`), a
course code, casing and runs of whitespace carry no urgency, so they are removed
or folded here rather than left for the model to learn to ignore. Character
n-grams beside word n-grams keep a small typo from erasing a word's signal.

The pipeline holds scikit-learn types only, so skops can save and load it without
trusting any code of ours (docs/decisions/0029).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

TEXT = "text"
# No length feature: longer posts were more often urgent in the demo's labels, so a
# model with one read any added sentence as urgency, "never mind, solved it" included
# (the directional test caught it).
NUMERIC = ("exclamations", "questions")
LABELS = ("not_urgent", "urgent")  # class 1 is urgent: p_urgent is predict_proba[:, 1]
POSITIVE = "urgent"

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*\]")
# Course codes as students write them: CS101, MATH-210, bio 1100a.
_COURSE_CODE = re.compile(r"\b[A-Za-z]{2,5}[- ]?\d{3,4}[A-Za-z]?\b")
_SPACE = re.compile(r"\s+")


def normalize(text: str | None) -> str:
    """Lower-cased text without placeholders or course codes, whitespace folded."""
    if not text:
        return ""
    text = _PLACEHOLDER.sub(" ", text)
    text = _COURSE_CODE.sub(" ", text)
    return _SPACE.sub(" ", text).strip().lower()


def model_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The pipeline's input columns from a frame with a `body` column.

    Other columns are ignored: the model reads the de-identified text only, so a
    caller that has nothing but text gets the same prediction as one that passes a
    whole gold row.
    """
    import pandas as pd

    if "body" not in frame.columns:
        raise ValueError(
            f"the model needs a `body` column of de-identified post text; got columns "
            f"{list(frame.columns)}"
        )
    texts = [normalize(b if isinstance(b, str) else None) for b in frame["body"].tolist()]
    return pd.DataFrame(
        {
            TEXT: texts,
            "exclamations": [min(t.count("!"), 5) for t in texts],
            "questions": [min(t.count("?"), 5) for t in texts],
        },
        index=frame.index,
    )


def build_pipeline(seed: int = 0, c: float = 4.0, calibrated: bool = True) -> Any:
    """TF-IDF word and character n-grams plus two post features, logistic regression.

    `calibrated` wraps the classifier in Platt scaling (3-fold), so that p_urgent is a
    probability the drift checks can estimate performance from (decision 0029).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.preprocessing import StandardScaler

    text = FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    ngram_range=(1, 2), min_df=2, sublinear_tf=True, max_features=50_000
                ),
            ),
            (
                "chars",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    min_df=2,
                    sublinear_tf=True,
                    max_features=100_000,
                ),
            ),
        ]
    )
    features = ColumnTransformer(
        [("text", text, TEXT), ("post", StandardScaler(), list(NUMERIC))],
        sparse_threshold=1.0,
    )
    classifier: Any = LogisticRegression(
        C=c, class_weight="balanced", max_iter=2_000, random_state=seed
    )
    if calibrated:
        classifier = CalibratedClassifierCV(classifier, method="sigmoid", cv=3)
    return Pipeline([("features", features), ("classifier", classifier)])


def p_urgent(pipeline: Any, frame: pd.DataFrame) -> np.ndarray:
    """P(urgent) per row of a frame with a `body` column."""
    classes = list(pipeline.classes_)
    proba = pipeline.predict_proba(model_inputs(frame))
    return np.asarray(proba[:, classes.index(POSITIVE)], dtype=float)
