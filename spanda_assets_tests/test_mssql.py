"""SQL Server: no server can run here, so test what Spanda sends it and how it fails.

The production path (a real SQL Server in docker/) uses the same compiled SQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mssql

from spanda_assets.lib.domain import domain_metadata
from spanda_assets.lib.errors import SourceUnreachableError
from spanda_assets.lib.readers import (
    ConnectorXReader,
    SqlAlchemyReader,
    connectorx_url,
    make_reader,
)
from spanda_assets.lib.source_db import explain_connect_error, make_engine
from spanda_assets.lib.sources import load_sources, parse_sources
from spanda_assets.lib.watermark import Watermark, build_select, compile_sql
from spanda_assets_tests.conftest import run_extract
from spanda_assets_tests.servers import free_port

SOURCES = {s.name: s for s in load_sources()}
MD = domain_metadata("dbo")


def _sql(table: str, name: str, wm: Watermark | None, null_cursor: bool = False) -> str:
    stmt = build_select(MD.tables[f"dbo.{table}"], SOURCES[name], wm, null_cursor, "mssql")
    return " ".join(compile_sql(stmt, mssql.dialect()).split())


def test_incremental_query_for_an_upsert_table() -> None:
    wm = Watermark("ModifiedAt", "timestamp", dt.datetime(2026, 9, 1, 8, 0, 0, 123456))
    sql = _sql("Students", "students", wm)
    assert "FROM dbo.[Students]" in sql
    assert (
        "WHERE dbo.[Students].[ModifiedAt] >= CAST('2026-09-01 08:00:00.123456' AS DATETIME2(6))"
        in sql
    )
    assert sql.endswith("ORDER BY dbo.[Students].[ModifiedAt], dbo.[Students].[StudentID]")
    assert "LIMIT" not in sql  # T-SQL has none; batches come from the driver's stream


def test_incremental_query_for_an_append_table() -> None:
    sql = _sql("ForumPosts", "forum_posts", Watermark("PostID", "int", 1000))
    assert "WHERE dbo.[ForumPosts].[PostID] >= 1000 ORDER BY dbo.[ForumPosts].[PostID]" in sql
    first = _sql("ForumPosts", "forum_posts", None)
    assert "WHERE dbo.[ForumPosts].[PostID] IS NOT NULL" in first


def test_null_cursor_query() -> None:
    sql = _sql("Courses", "courses", None, null_cursor=True)
    assert sql.endswith(
        "WHERE dbo.[Courses].[ModifiedAt] IS NULL ORDER BY dbo.[Courses].[CourseID]"
    )


def test_domain_schema_ddl_for_sql_server() -> None:
    ddl = " ".join(
        str(
            sa.schema.CreateTable(MD.tables["dbo.ForumPosts"]).compile(dialect=mssql.dialect())
        ).split()
    )
    assert "CREATE TABLE dbo.[ForumPosts]" in ddl
    assert "[PostID] BIGINT NOT NULL" in ddl
    assert "[Body] NVARCHAR(max) NOT NULL" in ddl
    assert "[CreatedAt] DATETIME2(6) NOT NULL" in ddl


def test_string_watermark_is_escaped() -> None:
    """Literal SQL (connectorx takes no bind parameters) must quote cursor values safely."""
    t = sa.Table("Codes", sa.MetaData(), sa.Column("Code", mssql.NVARCHAR(20), primary_key=True))
    (source,) = parse_sources("sources: [{table: Codes, primary_key: Code, cursor: Code}]")
    stmt = build_select(
        t, source, Watermark("Code", "string", "O'Brien; DROP TABLE x--"), False, "mssql"
    )
    sql = compile_sql(stmt, mssql.dialect())
    assert "[Code] >= N'O''Brien; DROP TABLE x--'" in sql


def test_reader_choice_for_sql_server() -> None:
    url = "mssql+pymssql://etl:pw@db.internal:1433/ops"
    engine = sa.create_engine(url)
    assert isinstance(make_reader("auto", url, engine), SqlAlchemyReader)
    assert connectorx_url(url) == "mssql://etl:pw@db.internal:1433/ops"
    assert isinstance(ConnectorXReader(url), ConnectorXReader)


def test_refused_connection_names_the_server_without_the_password(catalog: Any) -> None:
    url = f"mssql+pymssql://sa:Sup3r-Secret@127.0.0.1:{free_port()}/ops"
    with pytest.raises(SourceUnreachableError) as err:
        run_extract(url, catalog, "forum_posts")
    msg = str(err.value)
    assert "cannot reach the operational database at mssql+pymssql://sa:***@127.0.0.1" in msg
    assert "Sup3r-Secret" not in msg
    assert not catalog.list_namespaces()


def test_login_failure_message_is_recognised() -> None:
    exc = Exception("(18456, b\"Login failed for user 'sa'.DB-Lib error message 20018\")")
    err = explain_connect_error("mssql+pymssql://sa:pw@h/db", exc)
    assert "refused the login" in str(err) and ":pw@" not in str(err)


def test_engine_fails_fast_on_sql_server() -> None:
    engine = make_engine("mssql+pymssql://sa:pw@127.0.0.1:1/ops")
    assert engine.dialect.name == "mssql"
