"""The whole chain on a real Iceberg REST catalog and the S3 server its tables live in
(SeaweedFS's `weed mini`, started by the test run), reached with OAuth2 client
credentials: bronze -> silver (write-audit-publish on the `audit` branch) -> gold ->
the labeled set -> train_model -> `spanda model lineage`. Nothing of the lakehouse
may land under SPANDA_HOME: no catalog.db, no warehouse, no Iceberg metadata.

Also the catalog configuration itself (credential form, what `describe()` shows,
which pyiceberg properties are set) and a wrong credential, which must be refused
with an error naming the catalog and what to check, never the secret."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest
from botocore.exceptions import ClientError
from click.testing import CliRunner
from pyiceberg.exceptions import UnauthorizedError

from spanda_assets.cli import main
from spanda_assets.definitions import defs
from spanda_assets.lib.errors import ConfigError
from spanda_assets.lib.labeling.demo import annotate_as_demo
from spanda_assets.lib.lakehouse import CatalogConfig, open_catalog
from spanda_assets.lib.model import registry
from spanda_assets.lib.writes import AUDIT, AUDIT_BASE, MAIN, expire, scan
from spanda_assets_tests.conftest import chain_checks
from spanda_assets_tests.servers import WeedServer, free_port

LABELED = dg.AssetKey(["gold", "labeled_posts"])


@pytest.fixture
def on_weed(
    weed: WeedServer, tiny_source: str, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The tiny demo source, its lakehouse in a fresh table bucket of the weed server (so
    tests sharing the server never see each other's tables); returns the bucket."""
    bucket = weed.create_table_bucket()
    for key, value in weed.env(bucket).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SPANDA_DEMO", "1")
    # as `spanda demo`: three batches' worth of tasks, enough labels for the model's gates
    monkeypatch.setenv("SPANDA_LABEL_BATCH", "600")
    return bucket


def _run(
    instance: dg.DagsterInstance, job: str, selection: list[dg.AssetKey] | None = None
) -> dg.ExecuteInProcessResult:
    return (
        defs()
        .resolve_job_def(job)
        .execute_in_process(instance=instance, asset_selection=selection, raise_on_error=False)
    )


def _failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """Each failed step's error with its causes: what the Dagster UI shows of it."""
    out = []
    for event in result.get_step_failure_events():
        error, messages = event.step_failure_data.error, []
        while error is not None:
            messages.append(error.message)
            error = error.cause
        out.append("\n".join(messages) or str(event.message))
    return out


@pytest.mark.integration
def test_the_whole_chain_on_a_rest_catalog_and_s3(
    weed: WeedServer, on_weed: str, spanda_home: Path
) -> None:
    bucket = on_weed
    config = CatalogConfig.from_env()
    assert config.catalog_type == "rest" and config.credential
    catalog = open_catalog(config)
    with dg.instance_for_test() as instance:
        # bronze -> silver -> gold (and the label tasks: the local annotation store)
        chain = _run(instance, "materialize_platform")
        assert chain.success, _failures(chain)
        checks = chain_checks(chain)
        assert checks and all(c.passed for c in checks), [
            (c.asset_key.to_user_string(), c.check_name) for c in checks if not c.passed
        ]

        # write-audit-publish: every table past bronze was written on its audit branch
        # and main was moved to the audited head (the audit base records it)
        for namespace in ("silver", "gold"):
            names = [n for _, n in catalog.list_tables(namespace)]
            assert names, namespace
            for name in names:
                table = catalog.load_table((namespace, name))
                refs = table.metadata.refs
                if AUDIT not in refs:  # written outside write-audit-publish
                    continue
                assert MAIN in refs, (namespace, name)
                assert refs[AUDIT].snapshot_id == refs[MAIN].snapshot_id, (namespace, name)
                assert table.properties[AUDIT_BASE] == str(refs[MAIN].snapshot_id)
        for identifier in catalog.list_tables("silver"):
            assert AUDIT in catalog.load_table(identifier).metadata.refs, identifier
        for name in ("validated_posts", "validated_enrollments", "validated_assessments"):
            assert AUDIT in catalog.load_table(("gold", name)).metadata.refs, name

        # the labeled set: the demo's instructors annotate the pushed tasks
        added = annotate_as_demo()
        assert added > 0
        labeled = _run(instance, "materialize_platform", [LABELED])
        assert labeled.success, _failures(labeled)
        table = catalog.load_table(("gold", "labeled_posts"))
        assert AUDIT in table.metadata.refs
        assert scan(table, MAIN).count() > 0

        # the model, trained on the labeled set's main snapshot
        trained = _run(instance, "train_model")
        assert trained.success, _failures(trained)
        assert AUDIT in catalog.load_table(("gold", "post_predictions")).metadata.refs
    champion = registry.champion(registry.client())
    assert champion is not None
    out = CliRunner().invoke(main, ["model", "lineage"])
    assert out.exit_code == 0, out.output
    assert "match: the training frame is reproduced exactly" in out.output

    # the data lives only in weed's S3: every file of every gold table, as the catalog
    # lists them, and the objects are really there
    prefix = f"s3://{bucket}/"
    gold = [n for _, n in catalog.list_tables("gold")]
    assert {"validated_posts", "labeled_posts"} <= set(gold)
    for name in gold:
        table = catalog.load_table(("gold", name))
        assert table.location().startswith(prefix), table.location()
        assert table.metadata_location.startswith(prefix), table.metadata_location
        for task in table.scan().plan_files():
            assert task.file.file_path.startswith(prefix), task.file.file_path
    posts = catalog.load_table(("gold", "validated_posts"))
    data_file = next(iter(posts.scan().plan_files())).file.file_path
    key = data_file.removeprefix(prefix)
    assert weed.client().head_object(Bucket=bucket, Key=key)["ContentLength"] > 0

    # history expiry: the snapshots no ref needs leave the catalog, their files leave S3
    rows = scan(posts, MAIN).count()
    done = expire(posts, older_than=None, orphan_grace=dt.timedelta(0))
    assert done.snapshots_expired > 0 and done.removed, done
    for path in done.removed:
        with pytest.raises(ClientError) as gone:
            weed.client().head_object(Bucket=bucket, Key=path.removeprefix(f"{bucket}/"))
        assert gone.value.response["Error"]["Code"] == "404", path
    posts = catalog.load_table(("gold", "validated_posts"))
    assert len(posts.snapshots()) == 1 and scan(posts, MAIN).count() == rows

    # ... and the catalog only behind REST: nothing of the lakehouse under SPANDA_HOME
    assert not (spanda_home / "catalog.db").exists()
    assert not (spanda_home / "warehouse").exists()
    assert not list(spanda_home.rglob("*.metadata.json"))
    # (Parquet files remain: the seed generator's ground truth and MLflow's artifacts)
    local = [
        p for p in spanda_home.rglob("*.parquet") if not {"ground_truth", "mlflow"} & set(p.parts)
    ]
    assert not local, local


@pytest.mark.integration
def test_a_wrong_credential_is_a_clear_error_without_the_secret(
    weed: WeedServer, tiny_source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = weed.create_table_bucket()
    for key, value in weed.env(bucket).items():
        monkeypatch.setenv(key, value)
    right = CatalogConfig.from_env()
    wrong = "not-the-weed-secret-3f9a"
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", f"{weed.access_key}:{wrong}")
    with pytest.raises(ConfigError) as err:
        open_catalog(CatalogConfig.from_env())
    msg = str(err.value)
    assert weed.catalog_uri in msg and "'spanda'" in msg  # which catalog
    assert "SPANDA_CATALOG_CREDENTIAL" in msg and "client id and secret" in msg  # what to check
    assert wrong not in msg and weed.secret_key not in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__

    # a run shows the same error on the step that opened the catalog, and writes nothing
    monkeypatch.setenv("SPANDA_DEMO", "1")
    with dg.instance_for_test() as instance:
        result = _run(instance, "materialize_platform", [dg.AssetKey(["bronze", "courses"])])
    assert not result.success
    (failure,) = _failures(result)
    assert "refused the OAuth2 client credentials" in failure and wrong not in failure
    assert not open_catalog(right).list_namespaces()

    # without any credential the catalog lets nobody in: its first call is refused (the
    # client opens without a token: a catalog may allow anonymous reads)
    monkeypatch.delenv("SPANDA_CATALOG_CREDENTIAL")
    with pytest.raises(UnauthorizedError):
        open_catalog(CatalogConfig.from_env()).list_namespaces()


# ----------------------------------------------------------- configuration, no server


@pytest.fixture
def rest_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_URI", "https://catalog.example.org/api/catalog")
    monkeypatch.setenv("SPANDA_WAREHOUSE", "lake")


@pytest.mark.usefixtures("rest_env")
def test_client_credentials_become_pyiceberg_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", "spanda-etl:s3cr3t:with-colon")
    config = CatalogConfig.from_env()
    props = config.properties()
    assert props["credential"] == "spanda-etl:s3cr3t:with-colon"
    # the REST spec's token endpoint of the catalog itself, named so pyiceberg does not
    # fall back (with a deprecation warning) on its own
    assert props["oauth2-server-uri"] == "https://catalog.example.org/api/catalog/v1/oauth/tokens"
    assert "scope" not in props and "token" not in props
    monkeypatch.setenv("SPANDA_CATALOG_OAUTH2_SERVER_URI", "https://idp.example.org/token")
    monkeypatch.setenv("SPANDA_CATALOG_SCOPE", "PRINCIPAL_ROLE:ALL")
    props = CatalogConfig.from_env().properties()
    assert props["oauth2-server-uri"] == "https://idp.example.org/token"
    assert props["scope"] == "PRINCIPAL_ROLE:ALL"
    # the secret is in neither what the UI shows nor the config's repr
    for shown in (str(config.describe()), repr(config)):
        assert "s3cr3t" not in shown and "spanda-etl" not in shown
    assert config.describe()["catalog_auth"] == "OAuth2 client credentials"


@pytest.mark.usefixtures("rest_env")
def test_bearer_token_stays_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_TOKEN", "tok-123")
    config = CatalogConfig.from_env()
    props = config.properties()
    assert props["token"] == "tok-123"
    assert "credential" not in props and "oauth2-server-uri" not in props
    assert "tok-123" not in str(config.describe()) + repr(config)
    assert config.describe()["catalog_auth"] == "bearer token"


@pytest.mark.usefixtures("rest_env")
@pytest.mark.parametrize("value", ["bare-value-x1", ":value-x2", "client-id-x3:", "  :value-x4"])
def test_a_credential_not_in_id_secret_form_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", value)
    with pytest.raises(ConfigError, match="CLIENT_ID:SECRET") as err:
        CatalogConfig.from_env()
    assert "SPANDA_CATALOG_CREDENTIAL" in str(err.value)
    assert "-x" not in str(err.value)  # nothing of the value


@pytest.mark.usefixtures("rest_env")
def test_token_and_credential_together_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_TOKEN", "tok-123")
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", "id:secret-456")
    with pytest.raises(ConfigError, match="not both") as err:
        CatalogConfig.from_env()
    assert "tok-123" not in str(err.value) and "secret-456" not in str(err.value)


def test_an_unreachable_rest_catalog_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_CATALOG_URI", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("SPANDA_WAREHOUSE", "s3://warehouse/")
    monkeypatch.setenv("SPANDA_CATALOG_CREDENTIAL", "id:unreachable-secret")
    with pytest.raises(ConfigError, match="cannot reach the Iceberg REST catalog") as err:
        open_catalog(CatalogConfig.from_env())
    assert "SPANDA_CATALOG_URI" in str(err.value) and "unreachable-secret" not in str(err.value)
