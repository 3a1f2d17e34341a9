"""BI: Spanda's Superset dashboard over the lakehouse, on a real Superset server.

The whole chain runs once (tiny seed with a few broken source rows, so the quarantine
has entries; demo annotations; the model trained and scoring), then `spanda bi superset`
builds the dashboard through Superset's REST API. Each chart's data, as Superset's
chart data endpoint answers it, must equal the same aggregate computed by a pyiceberg
scan of the snapshot the BI file pins; a second build must update, never duplicate;
and a headless Chromium screenshot of the dashboard shows every chart rendered.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner
from playwright.sync_api import sync_playwright

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.bi.refresh import default_path, off_main, read_pins, refresh
from spanda_assets.lib.bi.superset import (
    CHARTS,
    DASHBOARD_SLUG,
    ENV_PASSWORD,
    ENV_USERNAME,
    SupersetClient,
    object_uuid,
    rison,
)
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.labeling.demo import annotate_as_demo
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets_tests.conftest import isolate
from spanda_assets_tests.superset_server import SupersetServer, superset_server

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SETTINGS = {"SPANDA_DEMO": "1", "SPANDA_LABEL_BATCH": "600"}


def _break_some_source_rows(db: Path) -> None:
    """Blank bodies and out-of-range grades: rows gold must quarantine with a reason."""
    con = sqlite3.connect(db)
    con.execute("UPDATE \"ForumPosts\" SET Body = '   ' WHERE PostID % 37 = 0")
    con.execute('UPDATE "Enrollments" SET FinalGrade = 150 WHERE EnrollmentID % 23 = 0')
    con.commit()
    con.close()


def _run(instance: dg.DagsterInstance, job: str, selection: list[str] | None = None) -> None:
    keys = [dg.AssetKey.from_user_string(s) for s in selection] if selection else None
    result = (
        defs()
        .resolve_job_def(job)
        .execute_in_process(instance=instance, asset_selection=keys, raise_on_error=False)
    )
    assert result.success, job


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chain with labels and a champion model: every table the dashboard reads."""
    home = tmp_path_factory.mktemp("bi") / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, **SETTINGS)
        db = home / "operational.db"
        seed(f"sqlite:///{db}", SeedSizes.preset("tiny"), seed=7, ground_truth=home / "gt")
        _break_some_source_rows(db)
        with dg.instance_for_test() as instance:
            _run(instance, "materialize_platform")
            annotate_as_demo(home / "gt")
            _run(instance, "materialize_platform", ["gold/labeled_posts"])
            _run(instance, "train_model")
    return home


@pytest.fixture(scope="module")
def superset() -> Iterator[SupersetServer]:
    with superset_server() as server:
        yield server


@pytest.fixture
def home(world: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    isolate(monkeypatch, world, **SETTINGS)
    return world


def _build(superset: SupersetServer, *args: str) -> Any:
    env = {ENV_USERNAME: superset.username, ENV_PASSWORD: superset.password}
    result = CliRunner().invoke(main, ["bi", "superset", "--url", superset.url, *args], env=env)
    assert result.exit_code == 0, result.output + result.stderr
    assert superset.password not in result.output + result.stderr
    return result


def _scan(table: str, snapshot_id: int | None) -> pa.Table:
    """The rows of `table` at the pinned snapshot, as pyiceberg reads them."""
    catalog = open_catalog(CatalogConfig.from_env())
    loaded = catalog.load_table(tuple(table.split(".")))
    if snapshot_id is None:
        return loaded.schema().as_arrow().empty_table()
    return loaded.scan(snapshot_id=snapshot_id).to_arrow()


def _rate(values: list[bool]) -> float:
    return sum(1.0 for v in values if v) / len(values)


def expected(key: str, rows: pa.Table) -> list[dict[str, Any]]:
    """Each chart's aggregate, computed in Python from the scanned rows."""
    data = rows.to_pylist()
    if key == "posts_per_course":
        counts = Counter((r["course_id"], r["created_at_year"]) for r in data)
        return [{"course_id": c, "created_at_year": y, "posts": n} for (c, y), n in counts.items()]
    if key == "quarantine_reasons":
        counts = Counter((r["reason"], r["table_name"]) for r in data)
        return [{"reason": r, "table_name": t, "rows": n} for (r, t), n in counts.items()]
    if key == "check_pass_rates":
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in data:
            groups.setdefault((r["table_name"], r["check_name"]), []).append(r)
        return [
            {
                "table_name": t,
                "check_name": c,
                "runs": len(g),
                "runs_passed_share": _rate([r["passed"] for r in g]),
                "mean_row_pass_rate": sum(r["pass_rate"] for r in g) / len(g),
            }
            for (t, c), g in groups.items()
        ]
    if key == "urgency_rate":
        return [{"urgency_rate": _rate([r["label"] == "urgent" for r in data])}]
    raise AssertionError(key)


def _same(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    def key(row: dict[str, Any]) -> tuple[str, ...]:
        return tuple(str(v) for k, v in sorted(row.items()) if not isinstance(v, float))

    assert len(got) == len(want)
    mine = {key(r): r for r in want}
    assert len(mine) == len(want)
    for row in got:
        other = mine[key(row)]
        assert row.keys() == other.keys()
        for name, value in row.items():
            if isinstance(value, float) or isinstance(other[name], float):
                assert math.isclose(value, other[name], rel_tol=1e-9), (name, row, other)
            else:
                assert value == other[name], (name, row, other)


def _chart_id(client: SupersetClient, key: str) -> int:
    chart = client.find("chart", object_uuid("chart", key))
    assert chart is not None, key
    return int(chart["id"])


def _ours(client: SupersetClient, resource: str) -> list[dict[str, Any]]:
    listed = client.call("GET", f"/api/v1/{resource}/", params={"q": rison({"page_size": 100})})
    return list(listed["result"])


def test_dashboard_charts_equal_a_scan_of_the_pinned_snapshots(
    home: Path, superset: SupersetServer, tmp_path: Path
) -> None:
    started = time.perf_counter()
    first = _build(superset)
    build_seconds = time.perf_counter() - started
    assert "0 updated" in first.output
    bi_file = default_path()
    pins = read_pins(bi_file)
    # gold only: bronze (personal data), silver and submissions are not in the file
    assert pins and all(name.startswith("gold.") for name in pins)
    assert {spec.table for spec in CHARTS} <= set(pins)

    with SupersetClient(superset.url, superset.username, superset.password) as client:
        dashboard = client.find("dashboard", object_uuid("dashboard", DASHBOARD_SLUG))
        assert dashboard is not None and dashboard["slug"] == DASHBOARD_SLUG
        on_dashboard = client.call("GET", f"/api/v1/dashboard/{dashboard['id']}/charts")
        assert {c["slice_name"] for c in on_dashboard["result"]} == {s.name for s in CHARTS}
        for spec in CHARTS:
            chart = client.find("chart", object_uuid("chart", spec.key))
            assert chart is not None, spec.key
            got = client.chart_data(int(chart["id"]))
            want = expected(spec.key, _scan(spec.table, pins[spec.table]))
            _same(got, want)
            if spec.key != "check_pass_rates":
                assert got, f"{spec.name} has no rows: the world should fill every chart"
        # the broken source rows are on the dashboard with their reasons
        quarantine = client.chart_data(_chart_id(client, "quarantine_reasons"))
        assert {r["table_name"] for r in quarantine} == {"validated_posts", "validated_enrollments"}

        before = {r: len(_ours(client, r)) for r in ("database", "dataset", "chart", "dashboard")}
        assert before == {"database": 1, "dataset": 4, "chart": 4, "dashboard": 1}

    # A second build updates everything it made and creates nothing.
    second = _build(superset, "--no-refresh")
    assert "0 object(s) created, 10 updated" in second.output
    with SupersetClient(superset.url, superset.username, superset.password) as client:
        after = {r: len(_ours(client, r)) for r in ("database", "dataset", "chart", "dashboard")}
        assert after == before

    shot = _screenshot(superset, tmp_path / "superset-dashboard.png")
    print(  # the figures the docs quote
        f"superset setup {superset.setup_seconds:.0f} s, first build {build_seconds:.1f} s, "
        f"screenshot {shot}"
    )


def test_a_refresh_moves_the_pins_and_the_charts_follow(
    home: Path, superset: SupersetServer
) -> None:
    """Readers see the pinned snapshot until the next refresh, then the new one."""
    _build(superset)
    pins = read_pins(default_path())
    catalog = open_catalog(CatalogConfig.from_env())
    history = catalog.load_table(("gold", "dq_history"))
    extra = pa.Table.from_pylist(
        [
            {
                "checked_at": history.scan().to_arrow()["checked_at"][0].as_py(),
                "table_name": "validated_posts",
                "check_name": "bi_test_check",
                "passed": False,
                "evaluated": 4,
                "failed": 1,
                "pass_rate": 0.75,
                "row_count": 1,
                "rows_checked": 1,
                "table_uuid": "bi-test",
                "through_sequence": 1,
            }
        ],
        schema=history.schema().as_arrow(),
    )
    history.append(extra)
    spec = next(s for s in CHARTS if s.key == "check_pass_rates")
    with SupersetClient(superset.url, superset.username, superset.password) as client:
        chart_id = _chart_id(client, spec.key)
        pinned = client.chart_data(chart_id)
        assert "bi_test_check" not in {r["check_name"] for r in pinned}  # still the old pin
        refreshed = refresh()
        assert refreshed.snapshot_of("gold.dq_history") != pins["gold.dq_history"]
        moved = client.chart_data(chart_id)
        _same(moved, expected(spec.key, _scan(spec.table, refreshed.snapshot_of(spec.table))))
        assert {"check_name": "bi_test_check", "runs_passed_share": 0.0}.items() <= next(
            r for r in moved if r["check_name"] == "bi_test_check"
        ).items()


def test_superset_reads_the_exposed_tables_and_no_other_file(
    home: Path, superset: SupersetServer
) -> None:
    """SQL Lab runs on the same locked connection: the file's tables read, no file does
    (bronze's, and gold's own data and metadata files)."""
    _build(superset)
    bronze = next((home / "warehouse" / "bronze" / "forum_posts" / "data").glob("*.parquet"))
    with SupersetClient(superset.url, superset.username, superset.password) as client:
        database = client.find("database", object_uuid("database", "Spanda lakehouse"))
        assert database is not None

        def run(sql: str) -> Any:
            return client.http.post(
                "/api/v1/sqllab/execute/",
                json={"database_id": database["id"], "sql": sql, "runAsync": False},
            )

        ok = run("SELECT count(*) AS n FROM gold.validated_posts")
        assert ok.status_code == 200, ok.text
        pinned = read_pins(default_path())["gold.validated_posts"]
        assert ok.json()["data"][0]["n"] == _scan("gold.validated_posts", pinned).num_rows
        # DuckDB itself refuses the files: the lock, not Superset's SQL checks
        gold_dir = home / "warehouse" / "gold" / "validated_posts"
        gold_file = next((gold_dir / "data").glob("*.parquet"))
        gold_metadata = max((gold_dir / "metadata").glob("*.metadata.json"))
        for sql in (
            f"SELECT count(*) AS n FROM read_parquet('{bronze}')",
            f"SELECT count(*) AS n FROM iceberg_scan('{home / 'warehouse' / 'bronze'}/students')",
            # gold's own files too: they hold snapshots main no longer shows (erased rows)
            # and what the audit branch holds back; only the file's copies are readable
            f"SELECT count(*) AS n FROM read_parquet('{gold_file}')",
            f"SELECT count(*) AS n FROM iceberg_scan('{gold_metadata}')",
        ):
            refused = run(sql)
            assert refused.status_code != 200, sql
            # a file read is refused by the lock; iceberg_scan does not even exist (the
            # copied file loads no extension, and none can be loaded: see below)
            assert "file system operations are disabled" in refused.text or (
                "iceberg_scan" in refused.text and "is not in the catalog" in refused.text
            ), refused.text
        loading = run("LOAD iceberg")
        assert loading.status_code != 200 and "disabled" in loading.text, loading.text
        for sql in ("SET enable_external_access = true", "CREATE TABLE gold.x AS SELECT 1"):
            assert run(sql).status_code != 200, sql
    # the file on disk was written by Spanda only: Superset opened it read-only
    con = duckdb.connect(str(default_path()), read_only=True)
    try:
        names = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    finally:
        con.close()
    assert "x" not in names


def _screenshot(superset: SupersetServer, path: Path) -> Path:
    """Log in through the form, open the dashboard, wait for every chart, save a PNG."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{superset.url}/login/", wait_until="networkidle")
            page.get_by_label("Username").fill(superset.username)
            page.get_by_label("Password").fill(superset.password)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_load_state("networkidle")
            page.goto(f"{superset.url}/superset/dashboard/{DASHBOARD_SLUG}/")
            page.wait_for_load_state("networkidle")
            for spec in CHARTS:
                page.get_by_text(spec.name).first.wait_for(timeout=60_000)
            page.get_by_text("of scored posts predicted urgent").wait_for(timeout=60_000)
            page.get_by_text("validated_enrollments").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2000)  # the bar charts' entry animation
            body = page.inner_text("body")
            assert "Data error" not in body and "Unexpected error" not in body, body[:2000]
            page.screenshot(path=str(path), full_page=True)
        finally:
            browser.close()
    assert path.stat().st_size > 20_000
    return path


def _counts(con: duckdb.DuckDBPyConnection, tables: list[Any]) -> None:
    for table in tables:
        (count,) = con.execute(f"SELECT count(*) FROM {table.qualified}").fetchone() or (0,)
        assert count == _scan(table.qualified, table.snapshot_id).num_rows, table.qualified


def test_copies_need_no_file_access_and_views_read_the_same_rows(
    home: Path, tmp_path: Path
) -> None:
    """The default file holds main's rows at the pins: a reader with no extension and no
    file access at all reads every table, and no directory is allowed. --views reads
    the same rows through iceberg_scan, with the extensions installed beside the file."""
    copied = refresh(path=tmp_path / "copy.duckdb")
    assert {t.mode for t in copied.tables} <= {"copy", "empty"}
    assert "copy" in {t.mode for t in copied.tables}
    con = duckdb.connect(str(copied.path), read_only=True, config={"enable_external_access": False})
    try:
        _counts(con, copied.tables)
        allowed = con.execute("SELECT count(*) FROM spanda_bi.allowed_directories").fetchone()
        assert allowed == (0,)
    finally:
        con.close()

    viewed = refresh(path=tmp_path / "views.duckdb", copy=False)
    assert "view" in {t.mode for t in viewed.tables}
    con = duckdb.connect(
        str(viewed.path),
        read_only=True,
        config={"extension_directory": str(viewed.extension_directory)},
    )
    try:
        con.execute("LOAD avro")
        con.execute("LOAD iceberg")
        _counts(con, viewed.tables)
    finally:
        con.close()


def test_bronze_is_never_exposed(home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bronze holds personal data"):
        refresh(path=tmp_path / "bronze.duckdb", namespaces=("gold", "bronze"))
    refused = CliRunner().invoke(main, ["bi", "refresh", "--namespace", "bronze"])
    assert refused.exit_code == 2
    assert "bronze holds personal data" in refused.stderr
    assert not (tmp_path / "bronze.duckdb").exists()


def test_the_bi_asset_writes_the_file_pinned_to_main(home: Path) -> None:
    """bi/lakehouse_file (what the daemon runs after gold publishes) writes the file:
    every pin is a snapshot of its table's main, its check passes, and a pin main never
    held is what the check catches."""
    default_path().unlink(missing_ok=True)
    with dg.instance_for_test() as instance:
        result = (
            defs()
            .resolve_job_def("materialize_platform")
            .execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey(["bi", "lakehouse_file"])]
            )
        )
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "pinned_to_main" and check.passed
    pins = read_pins(default_path())
    catalog = open_catalog(CatalogConfig.from_env())
    for name in ("validated_posts", "post_predictions"):
        main_now = catalog.load_table(("gold", name)).current_snapshot()
        assert main_now is not None and pins[f"gold.{name}"] == main_now.snapshot_id, name
    assert off_main(catalog, pins) == []
    other = catalog.load_table(("gold", "validated_enrollments")).current_snapshot()
    assert other is not None
    wrong = {**pins, "gold.validated_posts": other.snapshot_id}
    assert off_main(catalog, wrong) == ["gold.validated_posts"]
