"""`spanda sql`: read-only DuckDB SQL over the lakehouse (main only), time travel, access."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pytest
from click.testing import CliRunner
from pyiceberg.table import Table

from spanda_assets.cli import main
from spanda_assets.lib import writes
from spanda_assets.lib.access import AuditLog, access_dir
from spanda_assets.lib.lakehouse import CatalogConfig, ensure_namespace, open_catalog
from spanda_assets.lib.sql import AsOf, SqlError, json_value, run_query, write_table
from spanda_assets_tests.conftest import chain_world, isolate
from spanda_assets_tests.servers import S3Server

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SCORES = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("name", pa.string()),
        pa.field("day", pa.date32()),
        pa.field("amount", pa.decimal128(10, 2)),
        pa.field("big", pa.int64()),
        pa.field("at", pa.timestamp("us")),
    ]
)


def scores(ids: list[int]) -> pa.Table:
    return pa.table(
        {
            "id": ids,
            "name": [f"name {i}" if i % 3 else None for i in ids],
            "day": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in ids],
            "amount": [Decimal(i) / 4 for i in ids],
            "big": [2**62 + i for i in ids],
            "at": [dt.datetime(2026, 1, 1, 12, 0, i % 60) for i in ids],
        },
        schema=SCORES,
    )


def spanda(*args: str, token: str | None = None, stdin: str | None = None) -> Any:
    env = {"SPANDA_TOKEN": token} if token else {}
    return CliRunner().invoke(main, list(args), env=env, input=stdin)


def sql(query: str, *args: str, token: str | None = None) -> Any:
    return spanda("sql", query, *args, token=token)


def token(principal: str, role: str) -> str:
    result = spanda(
        "access", "token", "create", "--principal", principal, "--role", role,
        "--institution", "Example University",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return str(result.stdout.strip())


def rows(result: Any) -> list[dict[str, Any]]:
    assert result.exit_code == 0, result.stderr
    return list(json.loads(result.stdout))


def audit() -> list[dict[str, Any]]:
    return AuditLog(access_dir()).entries()


def at_ms(ms: int) -> str:
    return (EPOCH + dt.timedelta(milliseconds=ms)).isoformat()


@pytest.fixture
def lake(catalog: Any) -> dict[str, Table]:
    """gold.scores (two appends on main), silver.things, bronze.people in the test's own
    catalog (the one `spanda sql` opens from SPANDA_HOME)."""
    for namespace in ("bronze", "silver", "gold"):
        ensure_namespace(catalog, namespace)
    gold = catalog.create_table(("gold", "scores"), schema=SCORES)
    gold.append(scores([1, 2, 3]))
    gold.append(scores([4, 5]))
    silver = catalog.create_table(("silver", "things"), schema=pa.schema([("k", pa.string())]))
    silver.append(pa.table({"k": ["a", "b"]}))
    people = pa.schema([("person_id", pa.int64()), ("email", pa.string())])
    bronze = catalog.create_table(("bronze", "people"), schema=people)
    bronze.append(pa.table({"person_id": [7], "email": ["x@example.org"]}, schema=people))
    return {"gold": gold, "silver": silver, "bronze": bronze}


@pytest.fixture
def steward(spanda_home: Path) -> str:
    return token("sam", "steward")


# ------------------------------------------------------------------------- the real chain


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny seed through the whole graph, once for the module's chain tests."""
    return chain_world(tmp_path_factory, "sql", SPANDA_DEMO="1")


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    isolate(mp, home, SPANDA_DEMO="1")


def test_counts_on_the_real_chain_equal_a_scan_of_main(
    chain: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _isolate(monkeypatch, chain)
    catalog = open_catalog(CatalogConfig.from_env())
    names = [f"{ns}.{ident[-1]}" for ns in ("silver", "gold") for ident in catalog.list_tables(ns)]
    assert "gold.validated_posts" in names
    query = " UNION ALL ".join(f"SELECT '{n}' AS t, count(*) AS n FROM {n}" for n in names)
    sam = token("sam", "steward")
    started = time.perf_counter()
    counted = {r["t"]: r["n"] for r in rows(sql(query, "--format", "json", token=sam))}
    elapsed = time.perf_counter() - started
    for name in names:
        table = catalog.load_table(tuple(name.split(".")))
        assert counted[name] == writes.scan(table, writes.MAIN).to_arrow().num_rows, name
    # one audited decision per table named
    lines = audit()[-len(names) :]
    assert {e["resource"] for e in lines} == {f"table/{n}" for n in names}
    assert {(e["decision"], e["action"], e["channel"], e["principal"]) for e in lines} == {
        ("allow", "query", "cli", "sam")
    }

    # a join over gold, streamed as a table: rows of main, as pyiceberg reads them
    started_join = time.perf_counter()
    joined = sql(
        "SELECT p.course_id, count(*) AS posts, count(DISTINCT e.subject_id) AS enrolled "
        "FROM gold.validated_posts p LEFT JOIN gold.validated_enrollments e "
        "ON p.subject_id = e.subject_id AND p.course_id = e.course_id "
        "GROUP BY ALL ORDER BY p.course_id",
        token=sam,
    )
    join_elapsed = time.perf_counter() - started_join
    assert joined.exit_code == 0, joined.stderr
    posts = writes.scan(catalog.load_table(("gold", "validated_posts"))).to_arrow()
    courses = set(posts.column("course_id").to_pylist())
    body = joined.stdout.splitlines()
    assert body[0].split("|")[0].strip() == "course_id"
    assert body[-1] == f"({len(courses)} rows)"
    print(
        f"\nspanda sql over {len(names)} tables: {elapsed:.2f} s; gold join: {join_elapsed:.2f} s"
    )


# ------------------------------------------------------------------------- main, time travel


def test_counts_equal_a_scan_of_main(lake: dict[str, Table], steward: str) -> None:
    gold = lake["gold"]
    got = rows(
        sql(
            "SELECT count(*) AS n, sum(big) AS s FROM gold.scores",
            "--format",
            "json",
            token=steward,
        )
    )
    main_rows = writes.scan(gold, writes.MAIN).to_arrow()
    assert got == [{"n": main_rows.num_rows, "s": sum(main_rows.column("big").to_pylist())}]


def test_as_of_a_snapshot_id_reads_that_snapshot(lake: dict[str, Table], steward: str) -> None:
    gold = lake["gold"]
    first, second = (e.snapshot_id for e in gold.metadata.snapshot_log)
    old = sql(
        "SELECT id FROM gold.scores ORDER BY id",
        "--as-of",
        str(first),
        "--format",
        "json",
        token=steward,
    )
    assert [r["id"] for r in rows(old)] == [1, 2, 3]
    assert f"gold.scores at snapshot {first}" in old.stderr
    now = sql(
        "SELECT count(*) AS n FROM gold.scores",
        "--as-of",
        str(second),
        "--format",
        "json",
        token=steward,
    )
    assert rows(now) == [{"n": 5}]

    # a snapshot id belongs to one table: the others are named
    both = sql("SELECT * FROM gold.scores, silver.things", "--as-of", str(first), token=steward)
    assert both.exit_code == 1
    assert "is not a snapshot of silver.things" in both.stderr
    assert "gold.scores" not in both.stderr.split("is not a snapshot of")[1].split(":")[0]
    unknown = sql("SELECT * FROM gold.scores", "--as-of", "12345", token=steward)
    assert unknown.exit_code == 1 and "not a snapshot of gold.scores" in unknown.stderr


def test_as_of_a_time_reads_what_main_held_then(lake: dict[str, Table], steward: str) -> None:
    gold = lake["gold"]
    (t1, _), (t2, _) = ((e.timestamp_ms, e.snapshot_id) for e in gold.metadata.snapshot_log)
    then = sql(
        "SELECT count(*) AS n FROM gold.scores",
        "--as-of",
        at_ms(t1),
        "--format",
        "json",
        token=steward,
    )
    assert rows(then) == [{"n": 3}]
    if t2 > t1:  # the two appends may share a millisecond
        just_before = at_ms(t2 - 1)
        assert rows(
            sql(
                "SELECT count(*) AS n FROM gold.scores",
                "--as-of",
                just_before,
                "--format",
                "json",
                token=steward,
            )
        ) == [{"n": 3}]
    later = sql(
        "SELECT count(*) AS n FROM gold.scores",
        "--as-of",
        "2999-01-01",
        "--format",
        "json",
        token=steward,
    )
    assert rows(later) == [{"n": 5}]
    # before the table had anything on main: it is absent, and the message says why
    before = sql("SELECT * FROM gold.scores", "--as-of", at_ms(t1 - 1), token=steward)
    assert before.exit_code == 1
    assert "gold.scores had published nothing as of" in before.stderr
    # a time without zone is UTC; a bad value is a usage error
    assert AsOf.parse("2026-11-30T09:00:00").moment == dt.datetime(2026, 11, 30, 9, tzinfo=dt.UTC)
    assert AsOf.parse(at_ms(t1)).timestamp_ms == t1
    bad = sql("SELECT 1", "--as-of", "yesterday")
    assert bad.exit_code == 2 and "neither a snapshot id" in bad.stderr


def test_audit_branch_rows_are_invisible_until_published(
    lake: dict[str, Table], steward: str
) -> None:
    gold = lake["gold"]
    main_id = gold.metadata.refs[writes.MAIN].snapshot_id
    gold.manage_snapshots().create_branch(main_id, writes.AUDIT).commit()
    gold.append(scores([100, 101, 102]), branch=writes.AUDIT)
    audit_id = gold.metadata.refs[writes.AUDIT].snapshot_id
    assert writes.row_count(gold, writes.AUDIT) == 8

    count = "SELECT count(*) AS n FROM gold.scores"
    assert rows(sql(count, "--format", "json", token=steward)) == [{"n": 5}]
    staged = sql(count, "--as-of", str(audit_id), token=steward)
    assert staged.exit_code == 1 and "never published on main" in staged.stderr
    future = sql(count, "--as-of", "2999-01-01", "--format", "json", token=steward)
    assert rows(future) == [{"n": 5}]  # by time, too: main never pointed at it

    assert writes.publish(gold).published
    assert rows(sql(count, "--format", "json", token=steward)) == [{"n": 8}]
    assert rows(sql(count, "--as-of", str(audit_id), "--format", "json", token=steward)) == [
        {"n": 8}
    ]


def test_a_table_with_nothing_published_reads_empty(catalog: Any, steward: str) -> None:
    ensure_namespace(catalog, "gold")
    catalog.create_table(("gold", "empty"), schema=pa.schema([("x", pa.int64())]))
    assert rows(sql("SELECT * FROM gold.empty", "--format", "json", token=steward)) == []


# ------------------------------------------------------------------------- access


def test_bronze_is_refused_without_a_stewards_token(lake: dict[str, Table]) -> None:
    query = "SELECT count(*) AS n FROM bronze.people"
    anonymous = sql(query)
    assert anonymous.exit_code == 1
    assert "bronze holds personal data: only a steward may query it" in anonymous.stderr
    assert "--token or SPANDA_TOKEN" in anonymous.stderr
    assert "x@example.org" not in anonymous.stdout + anonymous.stderr
    line = audit()[-1]
    assert (line["principal"], line["resource"], line["decision"]) == (
        "anonymous", "table/bronze.people", "deny",
    )  # fmt: skip

    ada = token("ada", "researcher")
    researcher = sql(query, token=ada)
    assert researcher.exit_code == 1 and "only a steward may query it" in researcher.stderr
    line = audit()[-1]
    assert (line["principal"], line["action"], line["decision"]) == ("ada", "query", "deny")

    sam = token("sam", "steward")
    allowed = sql(query, "--format", "json", token=sam)
    assert rows(allowed) == [{"n": 1}]
    line = audit()[-1]
    fields = ("principal", "role", "resource", "decision", "channel")
    assert [line[f] for f in fields] == ["sam", "steward", "table/bronze.people", "allow", "cli"]
    assert line["token_id"] and line["policy_ids"]

    revoked = sql(query, token="not-a-token")
    assert revoked.exit_code == 1 and "error:" in revoked.stderr


def test_every_table_named_is_decided_and_audited_as_the_policy_says(
    lake: dict[str, Table],
) -> None:
    """Silver and gold are decided by the policy too: the query runs exactly when the
    audit line says allow (a CLI caller without a token is 'anonymous')."""
    before = len(audit())
    result = sql("SELECT * FROM gold.scores JOIN silver.things ON true", "--format", "csv")
    lines = audit()[before:]
    assert {e["resource"] for e in lines} == {"table/gold.scores", "table/silver.things"}
    allowed = all(e["decision"] == "allow" for e in lines)
    assert (result.exit_code == 0) == allowed, result.stderr
    # a query naming no lakehouse table asks for nothing
    assert rows(sql("SELECT 42 AS answer", "--format", "json")) == [{"answer": 42}]
    assert len(audit()) == before + 2


def test_silver_and_gold_are_open_to_the_host_cli_and_bronze_is_not(
    lake: dict[str, Table],
) -> None:
    """The packaged policy: anyone who runs the command on the host reads the
    de-identified layers; bronze stays a steward's."""
    got = sql(
        "SELECT count(*) AS n FROM gold.scores JOIN silver.things ON true", "--format", "json"
    )
    assert rows(got) == [{"n": 10}]
    assert [e["decision"] for e in audit()[-2:]] == ["allow", "allow"]
    assert "host-cli-queries-silver-and-gold" in audit()[-1]["policy_ids"]
    bronze = sql("SELECT * FROM bronze.people")
    assert bronze.exit_code == 1 and "only a steward may query it" in bronze.stderr
    assert audit()[-1]["decision"] == "deny"


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("INSERT INTO gold.scores SELECT * FROM gold.scores", "the query is INSERT"),
        ("COPY (SELECT * FROM gold.scores) TO '/tmp/out.csv'", "the query is COPY"),
        ("ATTACH '/tmp/other.db'", "the query is ATTACH"),
        ("CREATE TABLE x AS SELECT 1", "the query is CREATE"),
        ("DELETE FROM gold.scores", "the query is DELETE"),
        ("SET enable_external_access = true", "the query is SET"),
        ("INSTALL httpfs", "the query is LOAD"),
        ("PRAGMA version", "not a plain SELECT (PRAGMA ...)"),
        ("CALL pragma_version()", "the query is CALL"),
        ("SELECT 1; DROP TABLE gold.scores", "one statement at a time"),
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv() at line 1"),
        ("SELECT * FROM '/etc/passwd'", "reads a file"),
        ("SELECT * FROM 'gold/scores/data/x.parquet'", "reads a file"),
        ("SELECT * FROM iceberg_scan('x')", "table function iceberg_scan()"),
        ("SELECT * FROM duckdb_settings()", "table function duckdb_settings()"),
        ("SELECT * FROM gold.scores AT (VERSION => 1)", "--as-of"),
    ],
)
def test_writes_files_and_settings_are_refused(
    lake: dict[str, Table], steward: str, query: str, says: str
) -> None:
    before = len(audit())
    result = sql(query, token=steward)
    assert result.exit_code == 1, result.stdout
    assert says in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(audit()) == before  # refused before anything was asked for


def test_the_database_is_locked_behind_the_views(
    lake: dict[str, Table], steward: str, tmp_path: Path
) -> None:
    """Even a statement that got past the parser check could reach only the granted
    tables' own directories, and could not unlock the configuration."""
    gold_dir = urlparse(lake["gold"].location()).path
    bronze_file = lake["bronze"].inspect.files().column("file_path").to_pylist()[0]
    with run_query("SELECT count(*) FROM gold.scores", token=steward) as result:
        con = result.con
        for attempt in (
            "SELECT * FROM read_csv('/etc/passwd')",
            f"SELECT * FROM read_parquet('{bronze_file}')",
            f"SELECT * FROM read_parquet('{gold_dir}/../../bronze/people/data/*.parquet')",
            f"SELECT * FROM iceberg_scan('{lake['bronze'].metadata_location}')",
            f"ATTACH '{tmp_path}/other.db'",
            f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
        ):
            with pytest.raises(Exception, match=r"Permission Error|disabled"):
                con.execute(attempt).fetchall()
        with pytest.raises(Exception, match="locked"):
            con.execute("SET enable_external_access = true")
        with pytest.raises(Exception, match=r"locked|disabled"):
            con.execute("LOAD httpfs")


def test_a_syntax_error_is_clear(lake: dict[str, Table], steward: str) -> None:
    result = sql("SELEC id FROM gold.scores", token=steward)
    assert result.exit_code == 1
    assert "syntax error at or near" in result.stderr and "LINE 1" in result.stderr
    assert "gold.scores" in result.stderr and "silver.things" in result.stderr  # the tables
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)

    binder = sql("SELECT nope FROM gold.scores", token=steward)
    assert binder.exit_code == 1 and "nope" in binder.stderr and "LINE 1" in binder.stderr
    missing = sql("SELECT * FROM gold.nope", token=steward)
    assert missing.exit_code == 1
    assert (
        "there is no table gold.nope at line 1, column 15; tables: silver.things, gold.scores"
        in missing.stderr
    )
    unqualified = sql("SELECT * FROM scores", token=steward)
    assert unqualified.exit_code == 1 and "tables: silver.things, gold.scores" in unqualified.stderr


def test_an_error_while_streaming_exits_1(steward: str) -> None:
    result = sql(
        "SELECT CAST(CAST(i AS VARCHAR) || CASE WHEN i > 30000 THEN 'x' ELSE '' END AS INT) "
        "FROM range(40000) t(i)",
        "--format",
        "csv",
    )
    assert result.exit_code == 1, (result.exception, result.stderr)
    assert "Conversion Error" in result.stderr and "Traceback" not in result.stderr, result.stderr


# ------------------------------------------------------------------------- output


def test_formats(lake: dict[str, Table], steward: str) -> None:
    query = "SELECT * FROM gold.scores ORDER BY id"
    data = rows(sql(query, "--format", "json", token=steward))
    assert data[0] == {
        "id": 1,
        "name": "name 1",
        "day": "2026-01-02",
        "amount": 0.25,
        "big": 2**62 + 1,  # exact: a number, not a string, not a rounded float
        "at": "2026-01-01T12:00:01",
    }
    assert data[2]["name"] is None and len(data) == 5

    as_csv = sql(query, "--format", "csv", token=steward)
    assert as_csv.exit_code == 0
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert parsed[0] == {
        "id": "1", "name": "name 1", "day": "2026-01-02", "amount": "0.25",
        "big": str(2**62 + 1), "at": "2026-01-01T12:00:01",
    }  # fmt: skip
    assert parsed[2]["name"] == ""

    table = sql(query, token=steward)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["id", "name", "day", "amount", "big", "at"]
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].split("|")[4].strip() == str(2**62 + 1)
    assert "NULL" in lines[4]
    assert lines[-1] == "(5 rows)"
    assert len({len(line.rstrip()) for line in lines[2:-1]}) <= 2  # aligned

    empty = sql("SELECT * FROM gold.scores WHERE id < 0", "--format", "json", token=steward)
    assert rows(empty) == []


def test_the_query_can_come_from_stdin(lake: dict[str, Table], steward: str) -> None:
    result = spanda(
        "sql",
        "-",
        "--format",
        "json",
        token=steward,
        stdin="SELECT count(*) AS n\nFROM gold.scores\n",
    )
    assert rows(result) == [{"n": 5}]


def test_results_stream_in_batches(steward: str) -> None:
    with run_query("SELECT i FROM range(50000) t(i)", batch_rows=2048) as result:
        sizes = [b.num_rows for b in result.batches()]
    assert len(sizes) > 10 and sum(sizes) == 50000


def test_table_cells_are_cut_and_numbers_never() -> None:
    schema = pa.schema([("text", pa.string()), ("n", pa.int64())])
    first = pa.record_batch([["short", "x" * 100], [1, 2]], schema=schema)
    later = pa.record_batch([["also short"], [10**15]], schema=schema)
    out = io.StringIO()
    assert write_table(schema, [first, later], out, max_width=12) == 3
    lines = out.getvalue().splitlines()
    assert lines[3].startswith("xxxxxxxxxxx…")
    assert str(10**15) in lines[4]
    assert lines[-1] == "(3 rows)"


def test_json_values() -> None:
    assert json_value(2**63 - 1) == str(2**63 - 1)
    assert json_value(Decimal("12.50")) == "12.50"
    assert json_value(float("nan")) == "null"
    assert json_value(dt.date(2026, 1, 2)) == '"2026-01-02"'
    assert json_value({"a": [1, None]}) == '{"a":[1,null]}'
    assert json_value(b"\x01") == '"01"'
    with pytest.raises(SqlError):
        run_query("")


# ------------------------------------------------------------------------- S3


@pytest.mark.integration
def test_an_s3_warehouse_is_read_through_pyiceberg_s_filesystem(
    s3: S3Server, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    for key, value in {
        "SPANDA_WAREHOUSE": f"s3://{bucket}/",
        "SPANDA_S3_ENDPOINT": s3.endpoint,
        "SPANDA_S3_REGION": s3.region,
        "SPANDA_S3_ACCESS_KEY_ID": s3.access_key,
        "SPANDA_S3_SECRET_ACCESS_KEY": s3.secret_key,
    }.items():
        monkeypatch.setenv(key, value)
    catalog = open_catalog(CatalogConfig.from_env())
    ensure_namespace(catalog, "gold")
    ensure_namespace(catalog, "bronze")
    gold = catalog.create_table(("gold", "scores"), schema=SCORES)
    gold.append(scores([1, 2, 3]))
    first = gold.metadata.refs[writes.MAIN].snapshot_id
    gold.append(scores([4]))
    people = catalog.create_table(("bronze", "people"), schema=pa.schema([("email", pa.string())]))
    people.append(pa.table({"email": ["x@example.org"]}))
    sam = token("sam", "steward")

    assert rows(sql("SELECT count(*) AS n FROM gold.scores", "--format", "json", token=sam)) == [
        {"n": 4}
    ]
    old = sql(
        "SELECT count(*) AS n FROM gold.scores",
        "--as-of",
        str(first),
        "--format",
        "json",
        token=sam,
    )
    assert rows(old) == [{"n": 3}]
    bronze_file = people.inspect.files().column("file_path").to_pylist()[0]
    with run_query("SELECT count(*) FROM gold.scores", token=sam) as result:
        assert result.con.execute("SELECT count(*) FROM gold.scores").fetchone() == (4,)
        with pytest.raises(Exception, match=r"Permission Error|disabled"):
            result.con.execute(f"SELECT * FROM read_parquet('{bronze_file}')").fetchall()


@pytest.mark.integration
def test_a_rest_catalog_on_s3_is_read_the_same_way(
    weed: Any, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS: the Iceberg REST catalog and S3 of one real server (docs/rest-catalog.md)."""
    for key, value in weed.env(weed.create_table_bucket()).items():
        monkeypatch.setenv(key, value)
    catalog = open_catalog(CatalogConfig.from_env())
    ensure_namespace(catalog, "gold")
    gold = catalog.create_table(("gold", "scores"), schema=SCORES)
    gold.append(scores([1, 2]))
    first = gold.metadata.refs[writes.MAIN].snapshot_id
    gold.append(scores([3]))
    sam = token("sam", "steward")
    count = "SELECT count(*) AS n FROM gold.scores"
    assert rows(sql(count, "--format", "json", token=sam)) == [{"n": 3}]
    assert rows(sql(count, "--as-of", str(first), "--format", "json", token=sam)) == [{"n": 2}]
