"""The HTTP API over a real published world: the demo chain ran, the publish job made
version 1 of each gold dataset, and the API answers from those records, the Iceberg
snapshots and the access policy. Metadata is public; data needs a token, a purpose and
a permit; a withheld column never leaves in any format."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import schemathesis
from click.testing import CliRunner
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from pyarrow import ipc
from schemathesis import GenerationMode

import spanda_assets
from spanda_assets.api import app as app_module
from spanda_assets.api.app import create_app
from spanda_assets.cli import main
from spanda_assets.cli.data import _demo_api
from spanda_assets.lib.publish.datacite import metadata_problems
from spanda_assets.lib.publish.datasets import load_datasets
from spanda_assets.lib.publish.versions import VersionStore, publish_root, withdraw_version
from spanda_assets_tests.conftest import chain_world, isolate
from spanda_assets_tests.servers import free_port

BASE = "http://127.0.0.1:8000"
DATASET = "validated_posts"
DATASETS = {d.id: d for d in load_datasets()}
FORMATS = ("parquet", "csv", "arrow")
PURPOSES = ("research", "model_training", "longitudinal_research", "marketing", "")


WORLD_SETTINGS = {"SPANDA_DEMO": "1", "SPANDA_PUBLIC_URL": BASE}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One published world for the module: every test here only reads it (the
    withdrawal test restores what it changes)."""
    return chain_world(tmp_path_factory, "api", ("publish_datasets",), **WORLD_SETTINGS)


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    isolate(mp, home, **WORLD_SETTINGS)


@pytest.fixture
def spanda_home(world: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Overrides conftest's: every test of this module reads the shared world."""
    _isolate(monkeypatch, world)
    return world


@pytest.fixture
def client(spanda_home: Path) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url=BASE) as c:
        yield c


def token(*args: str) -> str:
    result = CliRunner().invoke(main, ["access", "token", "create", *args])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


@pytest.fixture(scope="module")
def tokens(world: Path) -> dict[str, str]:
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, world)
        dua = DATASETS[DATASET].dua.id
        return {
            "researcher": token(
                "--principal", "ada", "--role", "researcher",
                "--purpose", "research", "--purpose", "longitudinal_research",
                "--dua", dua,
            ),
            "no_dua": token("--principal", "bob", "--role", "researcher", "--purpose", "research"),
            "public": token("--principal", "pat", "--role", "public"),
            "steward": token(
                "--principal", "sam", "--role", "steward", "--purpose", "research",
                "--purpose", "model_training", "--purpose", "longitudinal_research",
                "--dua", dua,
            ),
        }  # fmt: skip


def auth(value: str, purpose: str | None = "research") -> dict[str, str]:
    headers = {"Authorization": f"Bearer {value}"}
    if purpose is not None:
        headers["X-Purpose"] = purpose
    return headers


def _version(dataset_id: str = DATASET, number: int = 1) -> Any:
    state = VersionStore(publish_root()).load(dataset_id)
    return next(v for v in state.versions if v.version == number)


def _values(dataset_id: str = DATASET, limit: int = 50) -> list[str]:
    """Some text values of the version's rows: none of them may appear in metadata."""
    v = _version(dataset_id)
    path = VersionStore(publish_root()).directory(dataset_id, 1) / f"{dataset_id}-v1.parquet"
    table = pq.read_table(path).slice(0, limit)
    out = []
    for name in table.column_names:
        for value in table.column(name).to_pylist():
            if isinstance(value, str) and len(value) > 12 and value not in v.metadata.values():
                out.append(value)
    return out


def _json_ld(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/ld\+json">\s*(.*?)\s*</script>', html, re.S)
    assert match, "the landing page embeds no JSON-LD"
    document: dict[str, Any] = json.loads(match.group(1))
    return document


# --- landing pages, content negotiation, Signposting ------------------------------------


def test_landing_page_is_public_with_json_ld_and_signposting(client: TestClient) -> None:
    v = _version()
    response = client.get(f"/datasets/{DATASET}/versions/1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    doc = _json_ld(response.text)
    assert doc["@type"] == "Dataset" and doc["identifier"] == f"https://doi.org/{v.doi}"
    for key in ("name", "description", "creator", "license", "keywords", "version"):
        assert doc[key], key
    by_name = {d["name"]: d for d in doc["distribution"]}
    for d in v.distributions:
        assert by_name[d["file_name"]]["sha256"] == d["sha256"]
        assert by_name[d["file_name"]]["contentUrl"] == d["url"]
    link = response.headers["link"]
    assert f'<https://doi.org/{v.doi}>; rel="cite-as"' in link
    for rel in ("describedby", "item", "license", "type", "linkset"):
        assert f'rel="{rel}"' in link, rel
    assert v.doi in response.text and "Cite as" in response.text
    for value in _values():  # metadata only: no row's value is on the page
        assert value not in response.text


def test_concept_page_names_the_concept_doi_and_every_version(client: TestClient) -> None:
    v = _version()
    response = client.get(f"/datasets/{DATASET}", headers={"Accept": "application/ld+json"})
    assert response.status_code == 200
    doc = response.json()
    assert doc["identifier"] == f"https://doi.org/{v.concept_doi}"
    datacite = client.get(f"/datasets/{DATASET}?format=datacite-json").json()
    related = {(r["relationType"], r["relatedIdentifier"]) for r in datacite["relatedIdentifiers"]}
    assert ("HasVersion", v.doi) in related
    html = client.get(f"/datasets/{DATASET}").text
    assert f"/datasets/{DATASET}/versions/1" in html


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("text/html", "text/html"),
        ("application/vnd.datacite.datacite+json", "application/vnd.datacite.datacite+json"),
        ("application/vnd.datacite.datacite+xml", "application/vnd.datacite.datacite+xml"),
        ("application/ld+json", "application/ld+json"),
        ("application/vnd.citationstyles.csl+json", "application/vnd.citationstyles.csl+json"),
        ("application/x-bibtex", "application/x-bibtex"),
        ("text/x-bibliography", "text/x-bibliography"),
        ("application/x-research-info-systems", "application/x-research-info-systems"),
    ],
)
def test_content_negotiation_serves_all_eight_types(
    client: TestClient, accept: str, expected: str
) -> None:
    v = _version()
    for url in (f"/datasets/{DATASET}/versions/1", f"/datasets/{DATASET}"):
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, (url, response.text)
        assert response.headers["content-type"].split(";")[0] == expected
        assert response.headers["vary"] == "Accept"
        body = response.text
        if expected == "application/vnd.datacite.datacite+json":
            assert metadata_problems(json.loads(body)) == []
        elif expected.endswith("+xml"):
            root = etree.fromstring(response.content)
            assert root.tag.endswith("resource")
        elif expected.endswith("json"):
            assert json.loads(body)
        elif expected == "application/x-bibtex":
            assert body.startswith("@misc{")
        elif expected == "application/x-research-info-systems":
            assert body.startswith("TY  - DATA")
        elif expected == "text/x-bibliography":
            assert "[Data set]" in body
    assert v.doi in client.get(f"/datasets/{DATASET}/versions/1?format=bibtex").text


def test_unknown_media_type_is_406_and_unknown_format_400(client: TestClient) -> None:
    response = client.get(f"/datasets/{DATASET}/versions/1", headers={"Accept": "image/png"})
    assert response.status_code == 406
    assert "application/ld+json" in response.json()["available"]
    assert client.get(f"/datasets/{DATASET}/versions/1?format=pdf").status_code == 400
    assert client.get("/datasets/no_such_set").status_code == 404
    assert client.get(f"/datasets/{DATASET}/versions/9").status_code == 404


def test_linkset_is_level_two_signposting(client: TestClient) -> None:
    v = _version()
    response = client.get(f"/datasets/{DATASET}/linkset")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/linkset+json")
    contexts = {c["anchor"]: c for c in response.json()["linkset"]}
    version_page = f"{BASE}/datasets/{DATASET}/versions/1"
    assert contexts[version_page]["cite-as"] == [{"href": f"https://doi.org/{v.doi}"}]
    assert {i["href"] for i in contexts[version_page]["item"]} == {
        d["url"] for d in v.distributions
    }
    for d in v.distributions:
        assert contexts[d["url"]]["collection"][0]["href"] == version_page


# --- search and OAI-PMH -----------------------------------------------------------------


def test_search_answers_what_the_cli_answers(client: TestClient) -> None:
    for query, facets in (("forum posts", []), ("", ["licence=CC-BY-4.0"]), ("grade", [])):
        params: dict[str, Any] = {"q": query, "facet": facets}
        api = client.get("/search", params=params)
        assert api.status_code == 200
        args = ["search", query, "--json"] + [x for f in facets for x in ("--facet", f)]
        cli = CliRunner().invoke(main, args)
        assert cli.exit_code == 0, cli.output
        assert api.json() == json.loads(cli.stdout)
    hits = client.get("/search", params={"q": "forum posts"}).json()["hits"]
    assert DATASET in {h["dataset_id"] for h in hits}
    assert client.get("/search", params={"facet": "licence"}).status_code == 400


def test_oai_pmh_lists_the_published_versions(client: TestClient) -> None:
    ns = {"o": "http://www.openarchives.org/OAI/2.0/"}
    identify = etree.fromstring(client.get("/oai", params={"verb": "Identify"}).content)
    assert identify.find("o:Identify/o:baseURL", ns).text == f"{BASE}/oai"
    for prefix in ("oai_dc", "oai_datacite"):
        response = client.get("/oai", params={"verb": "ListRecords", "metadataPrefix": prefix})
        assert response.status_code == 200
        records = etree.fromstring(response.content).findall("o:ListRecords/o:record", ns)
        store = VersionStore(publish_root())
        published = sum(len(store.load(d).published) for d in store.datasets())
        assert len(records) == published > 0
        assert _version().doi in response.text
    bad = etree.fromstring(client.get("/oai", params={"verb": "Nope"}).content)
    assert bad.find("o:error", ns).get("code") == "badVerb"


# --- downloads ----------------------------------------------------------------------------


def test_data_needs_a_token(client: TestClient, tokens: dict[str, str]) -> None:
    url = f"/datasets/{DATASET}/versions/1/data"
    response = client.get(url)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert client.get(url, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get(url, headers={"Authorization": "Basic abc"}).status_code == 401
    assert client.get("/exports/oneroster").status_code == 401
    assert "nope" not in client.get(url, headers={"Authorization": "Bearer nope"}).text


def _audit_lines(home: Path) -> int:
    path = home / "access" / "audit.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_token_without_the_attribute_gets_403_and_an_audit_line(
    client: TestClient, tokens: dict[str, str], spanda_home: Path
) -> None:
    url = f"/datasets/{DATASET}/versions/1/data"
    cases = [
        (auth(tokens["researcher"], None), "purpose"),  # no purpose stated
        (auth(tokens["researcher"], "marketing"), "marketing"),  # not approved
        (auth(tokens["no_dua"]), "data use agreement"),
        (auth(tokens["public"]), "public"),
    ]
    for headers, why in cases:
        before = _audit_lines(spanda_home)
        response = client.get(url, headers=headers)
        assert response.status_code == 403, response.text
        assert why in response.text.lower() or why in json.dumps(response.json()["reasons"])
        assert _audit_lines(spanda_home) == before + 1
        last = json.loads((spanda_home / "access" / "audit.jsonl").read_text().splitlines()[-1])
        assert last["decision"] == "deny" and last["resource"].startswith(f"dataset/{DATASET}")
    verify = CliRunner().invoke(main, ["access", "audit", "--verify"])
    assert verify.exit_code == 0, verify.output


def test_full_download_is_the_published_file_byte_for_byte(
    client: TestClient, tokens: dict[str, str]
) -> None:
    v = _version()
    headers = auth(tokens["researcher"], "longitudinal_research")  # every column permitted
    for d in v.distributions:
        response = client.get(
            f"/datasets/{DATASET}/versions/1/data?format={d['format']}", headers=headers
        )
        assert response.status_code == 200, response.text
        assert "x-spanda-columns-withheld" not in response.headers
        assert hashlib.sha256(response.content).hexdigest() == d["sha256"]
        assert response.headers["etag"] == f'"{d["sha256"]}"'


def _read(fmt: str, content: bytes) -> pa.Table:
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content))
    if fmt == "csv":
        return pacsv.read_csv(io.BytesIO(content))
    return ipc.open_stream(io.BytesIO(content)).read_all()


def test_a_withheld_column_is_left_out_in_every_format(
    client: TestClient, tokens: dict[str, str]
) -> None:
    v = _version()
    full = pq.read_table(
        VersionStore(publish_root()).directory(DATASET, 1) / f"{DATASET}-v1.parquet"
    )
    subjects = set(full.column("subject_id").to_pylist())
    for fmt in FORMATS:
        response = client.get(
            f"/datasets/{DATASET}/versions/1/data?format={fmt}", headers=auth(tokens["researcher"])
        )
        assert response.status_code == 200, response.text
        assert response.headers["x-spanda-columns-withheld"] == "subject_id"
        table = _read(fmt, response.content)
        assert table.column_names == [c for c in v.columns if c != "subject_id"]
        assert table.num_rows == v.rows
        assert not any(s.encode() in response.content for s in list(subjects)[:50])
        assert b"subject_id" not in response.content  # not in the schema's metadata either


def test_columns_and_filters_stream_from_the_snapshot(
    client: TestClient, tokens: dict[str, str]
) -> None:
    full = pq.read_table(
        VersionStore(publish_root()).directory(DATASET, 1) / f"{DATASET}-v1.parquet"
    )
    course = full.column("course_id")[0].as_py()
    year = full.column("created_at_year")[0].as_py()
    expected = sorted(
        r["post_id"]
        for r in full.to_pylist()
        if r["course_id"] == course and r["created_at_year"] >= year
    )
    response = client.get(
        f"/datasets/{DATASET}/versions/1/data",
        params={
            "format": "arrow",
            "columns": "post_id,course_id",
            "filter": f"course_id = {course!r} and created_at_year >= {year}",
        },
        headers=auth(tokens["researcher"]),
    )
    assert response.status_code == 200, response.text
    table = _read("arrow", response.content)
    assert table.column_names == ["post_id", "course_id"]
    assert sorted(table.column("post_id").to_pylist()) == expected
    assert response.headers["x-spanda-snapshot-id"] == str(_version().snapshot_id)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"filter": "subject_id = 'x'"}, 403, "filter reads column"),
        ({"filter": "created_at_year = 'abc'"}, 400, "is not an integer"),
        ({"filter": "course_id = 'x'; DROP TABLE gold.validated_posts"}, 400, "unexpected"),
        ({"filter": "1=1 OR course_id = ''"}, 400, "column name"),
        ({"columns": "post_id,email"}, 400, "not in this version"),
        ({"columns": "subject_id"}, 403, "every requested column"),
        ({"format": "xlsx"}, 422, ""),
        ({"filter": "x" * 5_000}, 422, ""),
        ({"columns": "a," * 3_000}, 422, ""),
        ({"purpose": "r" * 100}, 422, ""),
    ],
)
def test_bad_download_requests_are_4xx_with_the_reason(
    client: TestClient, tokens: dict[str, str], params: dict[str, str], status: int, says: str
) -> None:
    response = client.get(
        f"/datasets/{DATASET}/versions/1/data", params=params, headers=auth(tokens["researcher"])
    )
    assert response.status_code == status, response.text
    assert says in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/datasets/..%2F..%2Fetc%2Fpasswd",
        "/datasets/%2e%2e/versions/1",
        "/datasets/validated_posts/versions/..%2F1/data",
        "/datasets/validated_posts/versions/99999999999999999999999",
        "/datasets/validated_posts/versions/-1",
        "/datasets/VALIDATED_POSTS'--",
        "/datasets/bronze.students",
        "/datasets/" + "a" * 5_000,
        "/exports/oneroster/..%2F..%2Fkey",
        "/exports/../../secrets",
    ],
)
def test_path_injection_is_4xx(client: TestClient, tokens: dict[str, str], path: str) -> None:
    response = client.get(path, headers=auth(tokens["steward"]))
    assert 400 <= response.status_code < 500, (path, response.status_code)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    dataset_id=st.sampled_from(sorted(DATASETS)),
    fmt=st.sampled_from(FORMATS),
    purpose=st.sampled_from(PURPOSES),
    columns=st.lists(st.sampled_from(["post_id", "subject_id", "course_id", "body_length"]),
                     min_size=0, max_size=3, unique=True),
    who=st.sampled_from(["researcher", "no_dua"]),
)  # fmt: skip
def test_a_researcher_never_sees_a_withheld_column(
    client: TestClient,
    tokens: dict[str, str],
    dataset_id: str,
    fmt: str,
    purpose: str,
    columns: list[str],
    who: str,
) -> None:
    """Over datasets x formats x purposes x column selections: whatever the request, the
    columns the declaration keeps from this purpose (and every restricted one) are never
    in the answer, and an answer is 200 only with a permitted purpose."""
    declared = DATASETS[dataset_id]
    state = VersionStore(publish_root()).load(dataset_id)
    if not state.published:
        return
    available = state.published[-1].columns
    chosen = [c for c in columns if c in available]
    params = {"format": fmt} | ({"columns": ",".join(chosen)} if chosen else {})
    response = client.get(
        f"/datasets/{dataset_id}/versions/{state.published[-1].version}/data",
        params=params,
        headers=auth(tokens[who], purpose or None),
    )
    assert response.status_code in (200, 403), response.text
    if response.status_code != 200:
        return
    assert who == "researcher" and purpose in declared.access.purposes
    names = _read(fmt, response.content).column_names
    for name in names:
        rule = declared.access.column(name)
        assert rule.sensitivity != "restricted", name
        if rule.sensitivity == "quasi_identifier":
            assert purpose in rule.purposes, (name, purpose)


# --- withdrawal ---------------------------------------------------------------------------


def test_a_withdrawn_version_is_a_tombstone(
    client: TestClient, tokens: dict[str, str], spanda_home: Path
) -> None:
    """Withdrawing changes the shared world: this test restores the record afterwards."""
    store = VersionStore(publish_root())
    record = store.path("validated_enrollments")
    saved = record.read_bytes()
    number = store.load("validated_enrollments").published[-1].version
    files = store.directory("validated_enrollments", number)
    kept = spanda_home.parent / "kept-files"
    shutil.copytree(files, kept)
    try:
        v = store.load("validated_enrollments").published[-1]
        assert withdraw_version(v.tag, "a student's erasure request", store)
        page = client.get(f"/datasets/validated_enrollments/versions/{v.version}")
        assert page.status_code == 410
        assert "withdrawn" in page.text and "erasure" in page.text
        assert 'rel="item"' not in page.headers["link"]
        assert "distribution" not in _json_ld(page.text)
        data = client.get(
            f"/datasets/validated_enrollments/versions/{v.version}/data",
            headers=auth(tokens["steward"]),
        )
        assert data.status_code == 410
    finally:
        record.write_bytes(saved)
        shutil.rmtree(files, ignore_errors=True)
        shutil.move(kept, files)


# --- the real server ------------------------------------------------------------------------


def _wait_until_serving(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Until `spanda serve` answers /health; fails with its output if it exits first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else b"(exited)"
        assert time.monotonic() < deadline, f"spanda serve did not answer in {timeout} s"
        time.sleep(0.3)


def _serve(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "spanda"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_spanda_serve_answers_on_loopback(spanda_home: Path, tokens: dict[str, str]) -> None:
    port = free_port()
    env = dict(os.environ) | {"SPANDA_PUBLIC_URL": f"http://127.0.0.1:{port}"}
    proc = _serve(port, env)
    try:
        _wait_until_serving(port, proc)
        openapi = httpx.get(f"http://127.0.0.1:{port}/openapi.json").json()
        assert "/datasets/{dataset_id}/versions/{version}/data" in openapi["paths"]
        page = httpx.get(f"http://127.0.0.1:{port}/datasets/{DATASET}/versions/1")
        assert page.status_code == 200
        assert f"http://127.0.0.1:{port}/datasets/{DATASET}" in page.text
        with httpx.stream(
            "GET",
            f"http://127.0.0.1:{port}/datasets/{DATASET}/versions/1/data?format=csv",
            headers=auth(tokens["researcher"]),
        ) as response:
            assert response.status_code == 200
            body = b"".join(response.iter_bytes())
        assert body.startswith(b'"post_id"')
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_policy_that_does_not_validate_stops_the_server(
    spanda_home: Path, tmp_path: Path
) -> None:
    packaged = Path(spanda_assets.__file__).parent / "config" / "access"
    broken = tmp_path / "access"
    shutil.copytree(packaged, broken)
    policies = next(broken.glob("*.cedar"))
    policies.write_text(
        policies.read_text()
        + '\n@id("broken")\n'
        + "permit (principal, action, resource) when { principal.shoe_size > 3 };\n"
    )
    env = dict(os.environ) | {"SPANDA_ACCESS_POLICY_DIR": str(broken)}
    proc = _serve(free_port(), env)
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    assert proc.returncode != 0
    assert b"shoe_size" in out


# --- schemathesis over the OpenAPI document ---------------------------------------------


def test_no_request_the_openapi_document_allows_is_a_500(
    client: TestClient, tokens: dict[str, str]
) -> None:
    """Schemathesis generates requests from /openapi.json, valid ones and ones that break
    its constraints, with and without a researcher's token: nothing answers 5xx, and
    every operation is exercised."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = {result.ok().label for result in schema.get_all_operations()}
    real = {"dataset_id": DATASET, "version": 1}  # most cases reach a published version
    strategy = st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE),
        schema.as_strategy(GenerationMode.NEGATIVE),
        schema.as_strategy(GenerationMode.POSITIVE, path_parameters=real),
        schema.as_strategy(GenerationMode.POSITIVE, path_parameters={"kind": "xapi"}),
    )
    statuses: Counter[int] = Counter()
    seen: Counter[str] = Counter()

    @settings(
        max_examples=600,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, with_token=st.booleans())
    def run(case: Any, with_token: bool) -> None:
        headers = auth(tokens["researcher"]) if with_token else None
        response = case.call(headers=headers)
        seen[case.operation.label] += 1
        statuses[response.status_code] += 1
        assert response.status_code < 500, (case.as_curl_command(), response.text[:500])

    run()
    assert set(seen) == operations, operations - set(seen)
    assert statuses[200] >= 50, statuses  # the generated requests reach real answers


def test_the_demo_serves_the_api_with_a_researchers_token(
    spanda_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`spanda demo` starts the API beside the UI and prints a demo researcher's token
    that downloads the published data (a purpose's quasi-identifiers included)."""
    port = free_port()
    proc = _demo_api("127.0.0.1", port)
    assert proc is not None
    try:
        printed = capsys.readouterr().out
        (value,) = re.findall(r"TOKEN=(\S+)", printed)
        _wait_until_serving(port, proc)
        response = httpx.get(
            f"http://127.0.0.1:{port}/datasets/{DATASET}/versions/1/data?format=csv",
            headers=auth(value, "longitudinal_research"),
        )
        assert response.status_code == 200, response.text
        assert response.text.startswith('"post_id","subject_id"')
        # the token is stored only as its hash
        assert value not in (spanda_home / "access" / "tokens.json").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_head_answers_with_the_signposting_links(client: TestClient) -> None:
    for url in (f"/datasets/{DATASET}", f"/datasets/{DATASET}/versions/1"):
        response = client.head(url)
        assert response.status_code == 200 and response.content == b""
        assert 'rel="cite-as"' in response.headers["link"]
    assert client.head(f"/datasets/{DATASET}/linkset").status_code == 200


def test_a_metadata_document_links_back_to_the_page_it_describes(
    client: TestClient, spanda_home: Path
) -> None:
    before = _audit_lines(spanda_home)
    response = client.get(f"/datasets/{DATASET}/versions/1?format=datacite-json")
    assert response.headers["link"] == (
        f'<{BASE}/datasets/{DATASET}/versions/1>; rel="describes"; type="text/html"'
    )
    # metadata is public by the policy's explicit permit, and the decision is audited
    last = json.loads((spanda_home / "access" / "audit.jsonl").read_text().splitlines()[-1])
    assert _audit_lines(spanda_home) == before + 1
    assert last["action"] == "read_metadata" and last["decision"] == "allow"


def test_a_column_the_declaration_no_longer_describes_is_withheld(
    spanda_home: Path, tokens: dict[str, str]
) -> None:
    """A steward drops subject_id from the declaration (its description and its rule):
    versions published before still hold it, and it must not become public by default."""
    declared = DATASETS[DATASET]
    columns = {k: v for k, v in declared.columns.items() if k != "subject_id"}
    rules = dataclasses.replace(
        declared.access,
        columns={k: v for k, v in declared.access.columns.items() if k != "subject_id"},
    )
    changed = dataclasses.replace(declared, columns=columns, access=rules)
    others = [d for d in DATASETS.values() if d.id != DATASET]
    with TestClient(create_app(datasets=[changed, *others]), base_url=BASE) as c:
        response = c.get(
            f"/datasets/{DATASET}/versions/1/data?format=csv",
            headers=auth(tokens["researcher"], "longitudinal_research"),
        )
    assert response.status_code == 200
    assert response.headers["x-spanda-columns-withheld"] == "subject_id"
    assert b"subject_id" not in response.content


def test_errors_never_echo_a_token_and_published_files_are_checked(
    client: TestClient, tokens: dict[str, str]
) -> None:
    long_header = f"Bearer {tokens['researcher']} " + "x" * 600
    response = client.get(
        f"/datasets/{DATASET}/versions/1/data", headers={"Authorization": long_header}
    )
    assert response.status_code == 422
    assert tokens["researcher"] not in response.text and "Authorization" in response.text
    # the published file is served only while its bytes are those its metadata names
    v = _version()
    d = next(d for d in v.distributions if d["format"] == "csv")
    path = VersionStore(publish_root()).directory(DATASET, 1) / d["file_name"]
    headers = auth(tokens["researcher"], "longitudinal_research")
    ok = client.get(f"/datasets/{DATASET}/versions/1/data?format=csv", headers=headers)
    digest = base64.b64encode(bytes.fromhex(d["sha256"])).decode()
    assert ok.headers["repr-digest"] == f"sha-256=:{digest}:"
    saved = path.read_bytes()
    try:
        path.write_bytes(saved.replace(b"a", b"b", 1))  # same size, other bytes
        bad = client.get(f"/datasets/{DATASET}/versions/1/data?format=csv", headers=headers)
        assert bad.status_code == 503 and "SHA-256" in bad.text
        path.unlink()
        gone = client.get(f"/datasets/{DATASET}/versions/1/data?format=csv", headers=headers)
        assert gone.status_code == 503 and "missing" in gone.text
    finally:
        path.write_bytes(saved)


def test_exports_are_served_only_when_every_source_is_permitted(
    client: TestClient, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    listing = client.get("/exports/xapi", headers=auth(tokens["steward"], "longitudinal_research"))
    assert listing.status_code == 200, listing.text
    name = listing.json()["files"][0]["name"]
    assert client.get(f"/exports/xapi/{name}", headers=auth(tokens["public"])).status_code == 403
    info = app_module.latest_export("xapi")
    assert info is not None
    # an export that names no source table, or an undeclared one, is refused (fail closed)
    for sources in ({}, {"gold.unknown_table": 1}):
        fake = dataclasses.replace(info, sources=sources, datasets=())
        monkeypatch.setattr(app_module, "latest_export", lambda kind, fake=fake: fake)
        refused = client.get(
            f"/exports/xapi/{name}", headers=auth(tokens["steward"], "longitudinal_research")
        )
        assert refused.status_code == 403, refused.text
