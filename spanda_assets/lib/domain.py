"""The operational schema (SQL Server style, schema `dbo`) as SQLAlchemy Core tables.

One definition serves SQLite, PostgreSQL and SQL Server: types carry dialect
variants where the natural choice differs (DATETIME2 on SQL Server, a rowid
INTEGER key on SQLite so range scans on the key are fast).
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.dialects import mssql

TABLE_NAMES = (
    "Students",
    "Courses",
    "Enrollments",
    "ForumPosts",
    "AssessmentResults",
    "ConsentEvents",
)


def _ts() -> sa.types.TypeEngine[dt.datetime]:
    return sa.DateTime().with_variant(mssql.DATETIME2(precision=6), "mssql")


def _text() -> sa.types.TypeEngine[str]:
    # NTEXT is deprecated on SQL Server: NVARCHAR(max) is the modern large text type.
    return sa.UnicodeText().with_variant(mssql.NVARCHAR(), "mssql")


def _bigkey() -> sa.types.TypeEngine[int]:
    # SQLite: INTEGER PRIMARY KEY is the rowid, the fastest key to scan by range.
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def domain_metadata(schema: str | None) -> sa.MetaData:
    md = sa.MetaData(schema=schema)
    sa.Table(
        "Students",
        md,
        sa.Column("StudentID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("SourcedId", sa.Unicode(36), nullable=False),
        sa.Column("GivenName", sa.Unicode(100), nullable=False),
        sa.Column("FamilyName", sa.Unicode(100), nullable=False),
        sa.Column("Email", sa.Unicode(255)),
        sa.Column("Phone", sa.Unicode(32)),
        sa.Column("BirthDate", sa.Date),
        sa.Column("StreetAddress", sa.Unicode(255)),
        sa.Column("City", sa.Unicode(100)),
        sa.Column("State", sa.Unicode(2)),
        sa.Column("ZipCode", sa.Unicode(10)),
        sa.Column("SSN", sa.Unicode(11)),
        sa.Column("LastLoginIP", sa.Unicode(45)),
        sa.Column("GradeLevel", sa.Unicode(8)),
        sa.Column("EnrollmentStatus", sa.Unicode(20)),
        sa.Column("ModifiedAt", _ts(), index=True),
    )
    sa.Table(
        "Courses",
        md,
        sa.Column("CourseID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("CourseCode", sa.Unicode(20), nullable=False),
        sa.Column("Title", sa.Unicode(200), nullable=False),
        sa.Column("Subject", sa.Unicode(50)),
        sa.Column("Term", sa.Unicode(20)),
        sa.Column("InstructorName", sa.Unicode(100)),
        sa.Column("InstructorEmail", sa.Unicode(255)),
        sa.Column("ModifiedAt", _ts(), index=True),
    )
    sa.Table(
        "Enrollments",
        md,
        sa.Column("EnrollmentID", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("StudentID", sa.Integer, nullable=False, index=True),
        sa.Column("CourseID", sa.Integer, nullable=False),
        sa.Column("Role", sa.Unicode(20), nullable=False),
        sa.Column("BeginDate", sa.Date),
        sa.Column("EndDate", sa.Date),
        sa.Column("FinalGrade", sa.Numeric(5, 2)),
        sa.Column("ModifiedAt", _ts(), index=True),
    )
    sa.Table(
        "ForumPosts",
        md,
        sa.Column("PostID", _bigkey(), primary_key=True, autoincrement=False),
        sa.Column("StudentID", sa.Integer, nullable=False),
        sa.Column("CourseID", sa.Integer, nullable=False),
        sa.Column("Body", _text(), nullable=False),
        sa.Column("CreatedAt", _ts(), nullable=False),
    )
    sa.Table(
        "AssessmentResults",
        md,
        sa.Column("ResultID", _bigkey(), primary_key=True, autoincrement=False),
        sa.Column("StudentID", sa.Integer, nullable=False),
        sa.Column("CourseID", sa.Integer, nullable=False),
        sa.Column("AssessmentName", sa.Unicode(100), nullable=False),
        sa.Column("Score", sa.Numeric(6, 2)),
        sa.Column("MaxScore", sa.Numeric(6, 2)),
        sa.Column("SubmittedAt", _ts()),
        sa.Column("AttemptNo", sa.Integer),
    )
    sa.Table(
        "ConsentEvents",
        md,
        sa.Column("ConsentEventID", _bigkey(), primary_key=True, autoincrement=False),
        sa.Column("StudentID", sa.Integer, nullable=False),
        sa.Column("Purpose", sa.Unicode(50), nullable=False),
        sa.Column("State", sa.Unicode(20), nullable=False),
        sa.Column("RecordedAt", _ts(), nullable=False),
        sa.Column("CollectionMethod", sa.Unicode(50)),
        sa.Column("NoticeVersion", sa.Unicode(20)),
    )
    return md
