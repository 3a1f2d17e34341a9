"""Against real servers started by the test run: PostgreSQL (source and catalog) and S3."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from spanda_assets.lib.errors import SourceUnreachableError
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets_tests.conftest import (
    TABLES,
    append_batch,
    assert_bronze_equals_source,
    run_extract,
)
from spanda_assets_tests.servers import PG_PASSWORD, Postgres, S3Server, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_source(pg: Postgres, spanda_home: Path) -> Any:
    name = f"src_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    url = pg.url(name)
    seed(url, SeedSizes.preset("tiny"), seed=11, ground_truth=spanda_home / "gt")
    yield url
    pg.drop_database(name)


@pytest.mark.parametrize("reader", ["auto", "sqlalchemy"])
def test_postgres_source_incremental(
    pg_source: str, catalog: Any, spanda_home: Path, reader: str
) -> None:
    for table, name, key in TABLES:
        first = run_extract(pg_source, catalog, name, reader=reader)
        assert first.full_load and first.rows_inserted > 0
        assert_bronze_equals_source(pg_source, catalog, table, name, key)
    append_batch(pg_source, spanda_home, 11)
    for table, name, key in TABLES:
        run_extract(pg_source, catalog, name, reader=reader, batch_rows=50, commit_rows=50)
        assert_bronze_equals_source(pg_source, catalog, table, name, key)
    # PostgreSQL INTEGER is 32-bit: bronze keeps Iceberg `int`, NUMERIC(6,2) a decimal.
    fields = {
        f.name: str(f.field_type)
        for f in catalog.load_table(("bronze", "assessment_results")).schema().fields
    }
    assert fields["student_id"] == "int" and fields["result_id"] == "long"
    assert fields["score"] == "decimal(6, 2)"


def test_postgres_catalog_with_s3_warehouse(pg: Postgres, s3: S3Server, tiny_source: str) -> None:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(bucket)
    db = f"cat_{uuid.uuid4().hex[:8]}"
    pg.create_database(db)
    config = CatalogConfig(
        uri=pg.url(db),
        warehouse=f"s3://{bucket}/warehouse",
        s3_endpoint=s3.endpoint,
        s3_region=s3.region,
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=s3.secret_key,
    )
    try:
        catalog = open_catalog(config)
        for _, name, _ in TABLES:
            run_extract(tiny_source, catalog, name)
        # A second, independent catalog client sees the same committed tables.
        other = open_catalog(config)
        for table, name, key in TABLES:
            assert_bronze_equals_source(tiny_source, other, table, name, key)
            again = run_extract(tiny_source, other, name)
            assert again.commits == 0
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket)["Contents"]]
        assert any(k.endswith(".parquet") and "forum_posts" in k for k in keys)
        assert any(k.endswith(".metadata.json") for k in keys)
        # Secrets stay out of what the UI shows.
        assert s3.secret_key not in str(config.describe()) and PG_PASSWORD not in str(
            config.describe()
        )
    finally:
        pg.drop_database(db)


def test_wrong_password_is_a_clear_login_error(pg: Postgres, catalog: Any) -> None:
    url = pg.url("postgres", password="not-the-password")
    with pytest.raises(SourceUnreachableError) as err:
        run_extract(url, catalog, "students")
    msg = str(err.value)
    assert "refused the login" in msg and "SPANDA_SOURCE_URL" in msg
    assert "not-the-password" not in msg and "***" in msg
    assert not catalog.list_namespaces()


def test_refused_connection_is_a_clear_error(catalog: Any) -> None:
    url = f"postgresql+psycopg://spanda:secret-pw@127.0.0.1:{free_port()}/ops"
    with pytest.raises(SourceUnreachableError) as err:
        run_extract(url, catalog, "students")
    msg = str(err.value)
    assert "cannot reach the operational database" in msg and "secret-pw" not in msg
    assert not catalog.list_namespaces()
