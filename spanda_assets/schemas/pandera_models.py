"""Pandera DataFrameModels of the gold.validated_* tables.

Types, ranges and uniqueness live here; references to other tables (course and
student ids) are data-dependent and are added at check time (see
`lib/validation/contracts.py`). `strict` makes an unexpected column an error.

The columns are declared as pyarrow-backed pandas dtypes: the frame comes from
Iceberg as Arrow, stays Arrow, and every check (regex, ranges, uniqueness)
runs as an Arrow compute kernel. Declaring plain `str`/`int` would make
`coerce` copy each string into a Python object first, which is four times
slower on a million rows (measured by benchmarks/validate.py).
"""

from typing import Annotated

import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.typing import Series

PSEUDONYM = r"^ps_[0-9a-f]{32}$"

Text = Annotated[pd.ArrowDtype, pyarrow.large_string()]
Int = Annotated[pd.ArrowDtype, pyarrow.int64()]
Float = Annotated[pd.ArrowDtype, pyarrow.float64()]


class ValidatedPosts(pa.DataFrameModel):
    post_id: Series[Text] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[Text] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[Int] = pa.Field(ge=1)
    # The text is checked through its length (computed in Arrow): converting a million
    # post bodies to Python strings would cost more than every other check together.
    body_length: Series[Int] = pa.Field(ge=1, le=10_000)
    created_at_year: Series[Int] = pa.Field(ge=1990, le=2100)

    class Config:
        strict = True
        coerce = True


class ValidatedEnrollments(pa.DataFrameModel):
    enrollment_id: Series[Text] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[Text] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[Int] = pa.Field(ge=1)
    role: Series[Text] = pa.Field(isin=["student", "aide", "teacher"])
    begin_date_year: Series[Int] = pa.Field(ge=1990, le=2100, nullable=True)
    end_date_year: Series[Int] = pa.Field(ge=1990, le=2100, nullable=True)
    final_grade: Series[Float] = pa.Field(ge=0, le=100, nullable=True)
    modified_at_year: Series[Int] = pa.Field(ge=1990, le=2100, nullable=True)

    class Config:
        strict = True
        coerce = True


class ValidatedAssessments(pa.DataFrameModel):
    result_id: Series[Text] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[Text] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[Int] = pa.Field(ge=1)
    assessment_name: Series[Text] = pa.Field(str_length={"min_value": 1})
    score: Series[Float] = pa.Field(ge=0)
    max_score: Series[Float] = pa.Field(gt=0)
    submitted_at_year: Series[Int] = pa.Field(ge=1990, le=2100, nullable=True)
    attempt_no: Series[Int] = pa.Field(ge=1)

    class Config:
        strict = True
        coerce = True


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "validated_posts": ValidatedPosts,
    "validated_enrollments": ValidatedEnrollments,
    "validated_assessments": ValidatedAssessments,
}
