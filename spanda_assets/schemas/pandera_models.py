"""Pandera DataFrameModels of the gold.validated_* tables.

Types, ranges and uniqueness live here; references to other tables (course and
student ids) are data-dependent and are added at check time (see
`lib/validation/contracts.py`). `strict` makes an unexpected column an error.
"""

import pandera.pandas as pa
from pandera.typing import Series

PSEUDONYM = r"^ps_[0-9a-f]{32}$"


class ValidatedPosts(pa.DataFrameModel):
    post_id: Series[str] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[str] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[int] = pa.Field(ge=1)
    # The text is checked through its length (computed in Arrow): converting a million
    # post bodies to Python strings would cost more than every other check together.
    body_length: Series[int] = pa.Field(ge=1, le=10_000)
    created_at_year: Series[int] = pa.Field(ge=1990, le=2100)

    class Config:
        strict = True
        coerce = True


class ValidatedEnrollments(pa.DataFrameModel):
    enrollment_id: Series[str] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[str] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[int] = pa.Field(ge=1)
    role: Series[str] = pa.Field(isin=["student", "aide", "teacher"])
    begin_date_year: Series[float] = pa.Field(ge=1990, le=2100, nullable=True)
    end_date_year: Series[float] = pa.Field(ge=1990, le=2100, nullable=True)
    final_grade: Series[float] = pa.Field(ge=0, le=100, nullable=True)
    modified_at_year: Series[float] = pa.Field(ge=1990, le=2100, nullable=True)

    class Config:
        strict = True
        coerce = True


class ValidatedAssessments(pa.DataFrameModel):
    result_id: Series[str] = pa.Field(unique=True, str_matches=PSEUDONYM)
    subject_id: Series[str] = pa.Field(str_matches=PSEUDONYM)
    course_id: Series[int] = pa.Field(ge=1)
    assessment_name: Series[str] = pa.Field(str_length={"min_value": 1})
    score: Series[float] = pa.Field(ge=0)
    max_score: Series[float] = pa.Field(gt=0)
    submitted_at_year: Series[float] = pa.Field(ge=1990, le=2100, nullable=True)
    attempt_no: Series[int] = pa.Field(ge=1)

    class Config:
        strict = True
        coerce = True


MODELS: dict[str, type[pa.DataFrameModel]] = {
    "validated_posts": ValidatedPosts,
    "validated_enrollments": ValidatedEnrollments,
    "validated_assessments": ValidatedAssessments,
}
