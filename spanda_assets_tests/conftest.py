"""Shared fixtures: an isolated SPANDA_HOME per test, seeded sources, catalogs, real servers."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from spanda_assets.definitions import defs
from spanda_assets.lib.extract import extract_table
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.readers import make_reader
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets.lib.source_db import make_engine
from spanda_assets.lib.sources import load_sources, snake_case
from spanda_assets_tests.servers import (
    LabelStudioServer,
    MlflowServer,
    Postgres,
    S3Server,
    WeedServer,
    label_studio_server,
    mlflow_server,
    postgres_server,
    s3_server,
    weed_server,
)

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def isolate(mp: pytest.MonkeyPatch, home: Path, **settings: str) -> None:
    """SPANDA_HOME=`home`, no inherited SPANDA_* settings (nor an MLflow tracking URI:
    MLflow writes the one it is given into the environment), then `settings`."""
    for key in list(os.environ):
        if key.startswith("SPANDA_") or key in (
            "DAGSTER_HOME",
            "MLFLOW_TRACKING_URI",
            "MLFLOW_REGISTRY_URI",
        ):
            mp.delenv(key)
    mp.setenv("SPANDA_HOME", str(home))
    for key, value in settings.items():
        mp.setenv(key, value)


@pytest.fixture(autouse=True)
def spanda_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own SPANDA_HOME and no inherited settings."""
    home = tmp_path / "home"
    home.mkdir()
    isolate(monkeypatch, home)
    return home


def seed_tiny(home: Path) -> str:
    """The tiny demo source (seed 7) as `home`'s operational.db, its ground truth where
    the demo keeps it (SPANDA_HOME/ground_truth); returns the source URL."""
    url = f"sqlite:///{home / 'operational.db'}"
    seed(url, SeedSizes.preset("tiny"), seed=7, ground_truth=home / "ground_truth")
    return url


def chain_world(
    factory: pytest.TempPathFactory, name: str, jobs: tuple[str, ...] = (), **settings: str
) -> Path:
    """A home where the tiny seed went through the whole graph (and `jobs` after it), for
    a module whose tests only read it: seeding and the chain take a while."""
    home = factory.mktemp(name) / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp, home, **settings)
        seed_tiny(home)
        with dg.instance_for_test() as instance:
            platform = defs().resolve_job_def("materialize_platform")
            assert platform.execute_in_process(instance=instance).success
            for job in jobs:
                assert defs().resolve_job_def(job).execute_in_process(instance=instance).success
    return home


@pytest.fixture
def sqlite_url(spanda_home: Path) -> str:
    return f"sqlite:///{spanda_home / 'operational.db'}"


@pytest.fixture
def tiny_source(sqlite_url: str, spanda_home: Path) -> str:
    url = seed_tiny(spanda_home)
    assert url == sqlite_url
    return url


@pytest.fixture
def catalog(spanda_home: Path) -> Any:
    return open_catalog(
        CatalogConfig(
            uri=f"sqlite:///{spanda_home / 'catalog.db'}",
            warehouse=(spanda_home / "warehouse").as_uri(),
        )
    )


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture(scope="session")
def weed() -> Iterator[WeedServer]:
    with weed_server() as server:
        yield server


@pytest.fixture(scope="session")
def label_studio() -> Iterator[LabelStudioServer]:
    with label_studio_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_tracking() -> Iterator[MlflowServer]:
    with mlflow_server() as server:
        yield server


# ----------------------------------------------------------------------------- helpers

# (source table, bronze name, source key) for the domain schema
TABLES = [
    ("Students", "students", "StudentID"),
    ("Courses", "courses", "CourseID"),
    ("Enrollments", "enrollments", "EnrollmentID"),
    ("ForumPosts", "forum_posts", "PostID"),
    ("AssessmentResults", "assessment_results", "ResultID"),
    ("ConsentEvents", "consent_events", "ConsentEventID"),
]


def child(home: Path, args: list[str], fault: str | None = None, timeout: float = 300) -> Any:
    """Run `python ARGS` in a fresh process on SPANDA_HOME `home` (demo mode), optionally
    with SPANDA_FAULT set so that it kills itself with SIGKILL at a fault point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env.update(SPANDA_HOME=str(home), SPANDA_DEMO="1")
    if fault:
        env["SPANDA_FAULT"] = fault
    return subprocess.run(
        [sys.executable, *args],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def killed(proc: Any) -> bool:
    return bool(proc.returncode == -signal.SIGKILL)


def append_batch(url: str, home: Path, seed_value: int = 7) -> None:
    """One more `spanda seed --append` batch of the tiny demo size: new and changed rows."""
    seed(url, SeedSizes.preset("tiny"), seed=seed_value, append=True, ground_truth=home / "gt")


def run_extract(
    url: str,
    catalog: Any,
    name: str,
    *,
    batch_rows: int = 1000,
    commit_rows: int = 1000,
    reader: str = "auto",
    sources: Any = None,
    full_refresh: bool = False,
) -> Any:
    source = {s.name: s for s in (sources or load_sources())}[name]
    engine = make_engine(url)
    try:
        return extract_table(
            engine=engine,
            reader=make_reader(reader, url, engine),
            catalog=catalog,
            source=source,
            batch_rows=batch_rows,
            commit_rows=commit_rows,
            full_refresh=full_refresh,
        )
    finally:
        engine.dispose()


def _norm(v: Any) -> Any:
    """Compare source and bronze values on meaning, not on driver representation."""
    if isinstance(v, Decimal):
        return round(float(v), 4)
    if isinstance(v, float):
        return round(v, 4)
    if isinstance(v, dt.datetime):
        return v.replace(tzinfo=None)
    return v


def source_rows(url: str, table: str, key: str) -> dict[Any, dict[str, Any]]:
    """The source table via SQLAlchemy reflection, keyed by primary key, snake_case names."""
    engine = sa.create_engine(url)
    schema = None if engine.dialect.name == "sqlite" else "dbo"
    try:
        t = sa.Table(table, sa.MetaData(), schema=schema, autoload_with=engine)
        with engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(sa.select(t))]
    finally:
        engine.dispose()
    return {r[key]: {snake_case(k): _norm(v) for k, v in r.items()} for r in rows}


def bronze_rows(catalog: Any, name: str, key: str) -> dict[Any, dict[str, Any]]:
    table = catalog.load_table(("bronze", name))
    rows = table.scan().to_arrow().to_pylist()
    out: dict[Any, dict[str, Any]] = {}
    for r in rows:
        assert r[key] not in out, f"duplicate key {key}={r[key]} in bronze.{name}"
        out[r[key]] = {k: _norm(v) for k, v in r.items()}
    return out


def assert_bronze_equals_source(url: str, catalog: Any, table: str, name: str, key: str) -> None:
    src = source_rows(url, table, key)
    bronze = bronze_rows(catalog, name, snake_case(key))
    assert set(bronze) == set(src), (
        f"keys differ: missing {sorted(set(src) - set(bronze))[:5]}, "
        f"extra {sorted(set(bronze) - set(src))[:5]}"
    )
    for k, row in src.items():
        got = {c: bronze[k].get(c) for c in row}
        assert got == row, f"bronze.{name} row {key}={k} differs: {got} != {row}"


def chain_checks(result: Any) -> list[Any]:
    """A run's check evaluations, less the labeled set's warnings (before anyone has
    annotated, `minimum_labels_per_class` rightly warns: there is nothing to train on)."""
    labeled = dg.AssetKey(["gold", "labeled_posts"])
    return [
        c
        for c in result.get_asset_check_evaluations()
        if not (c.asset_key == labeled and c.severity == dg.AssetCheckSeverity.WARN)
    ]
