"""FAIR publication, the DOI half: deterministic minting, the offline provider's store and
rules, and the DataCite REST provider against a local stand-in for DataCite's API
(basic auth, JSON:API bodies, draft -> register -> publish, JSON:API errors)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spanda_assets.lib.errors import ConfigError, MissingSecretError
from spanda_assets.lib.publish.datacite import (
    MetadataError,
    VersionFacts,
    build_version_metadata,
)
from spanda_assets.lib.publish.datasets import DatasetDeclaration, load_datasets
from spanda_assets.lib.publish.doi import (
    DEFAULT_OFFLINE_PREFIX,
    DataCiteProvider,
    DoiError,
    DoiProvider,
    OfflineProvider,
    mint_concept_doi,
    mint_version_doi,
    provider_from_env,
    release,
)

PREFIX = "10.12345"
REPOSITORY = "SPANDA.TEST"
PASSWORD = "Pa55-w0rd-never-shown"
LANDING = "https://data.example.org/datasets/validated_posts/1"


def _dataset() -> DatasetDeclaration:
    return next(d for d in load_datasets() if d.id == "validated_posts")


def _metadata(doi: str, prefix: str = PREFIX) -> dict[str, Any]:
    facts = VersionFacts(
        version=1,
        doi=doi,
        concept_doi=mint_concept_doi(prefix, "validated_posts"),
        table="gold.validated_posts",
        snapshot_id=5_120_334_877,
        published=dt.date(2025, 5, 6),
        row_count=10,
        byte_size=2048,
    )
    return build_version_metadata(_dataset(), facts)


# --- a local stand-in for the DataCite REST API ------------------------------------------


@dataclass
class FakeDataCite:
    """The parts of api.datacite.org the provider uses, with DataCite's state rules."""

    url: str = ""
    dois: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)  # method, doi, event
    slow_seconds: float = 0.0
    fail_with: int | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[tuple[str, str | None]]:
        with self.lock:
            return [(method, event) for method, _, event in self.calls]


_MANDATORY = ("url", "creators", "titles", "publisher", "publicationYear", "types")


def _errors(status: int, *items: tuple[str | None, str]) -> dict[str, Any]:
    return {
        "errors": [
            {"status": str(status), "title": title, **({"source": src} if src else {})}
            for src, title in items
        ]
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that timed out has gone: writing its answer fails, as intended
        pass


@contextlib.contextmanager
def fake_datacite() -> Iterator[FakeDataCite]:
    fake = FakeDataCite()
    expected = "Basic " + base64.b64encode(f"{REPOSITORY}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.api+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _doc(self, doi: str) -> dict[str, Any]:
            return {"data": {"id": doi, "type": "dois", "attributes": fake.dois[doi]}}

        def _admit(self, event: str | None, doi: str) -> bool:
            with fake.lock:
                fake.calls.append((self.command, doi, event))
            if fake.slow_seconds:
                time.sleep(fake.slow_seconds)
            if fake.fail_with:
                # a misbehaving server that echoes the request's credentials in its error
                echoed = base64.b64decode(self.headers["Authorization"].split()[1]).decode()
                self._reply(fake.fail_with, _errors(fake.fail_with, (None, f"oops {echoed}")))
                return False
            if self.headers.get("Authorization") != expected:
                self._reply(401, _errors(401, (None, "Bad credentials.")))
                return False
            return True

        def _body(self) -> dict[str, Any] | None:
            if self.headers.get("Content-Type") != "application/vnd.api+json":
                self._reply(415, _errors(415, (None, "Unsupported media type")))
                return None
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw)
            assert body["data"]["type"] == "dois"
            return dict(body["data"]["attributes"])

        def _doi(self) -> str:
            return self.path.removeprefix("/dois/")

        def _apply(self, doi: str, attributes: dict[str, Any], created: bool) -> None:
            event = attributes.pop("event", None)
            current = fake.dois.get(doi, {"state": "draft"})
            merged = {**current, **attributes}
            if event in ("register", "publish"):
                missing = [name for name in _MANDATORY if not merged.get(name)]
                if missing:
                    titles = [(name, f"{name.capitalize()} can't be blank") for name in missing]
                    self._reply(422, _errors(422, *titles))
                    return
                if event == "register" and current["state"] == "findable":
                    self._reply(422, _errors(422, ("event", "Can't register a findable DOI")))
                    return
                merged["state"] = "registered" if event == "register" else "findable"
            elif event == "hide":
                if current["state"] != "findable":
                    self._reply(422, _errors(422, ("event", "Only a findable DOI can be hidden")))
                    return
                merged["state"] = "registered"
            fake.dois[doi] = merged
            self._reply(201 if created else 200, self._doc(doi))

        def do_POST(self) -> None:
            attributes = self._body()
            if attributes is None:
                return
            doi = str(attributes.get("doi", ""))
            if not self._admit(attributes.get("event"), doi):
                return
            if not doi.startswith(PREFIX + "/"):
                self._reply(403, _errors(403, (None, "You are not authorized.")))
            elif doi in fake.dois:
                self._reply(422, _errors(422, ("doi", "This DOI has already been taken")))
            else:
                self._apply(doi, attributes, created=True)

        def do_PUT(self) -> None:
            attributes = self._body()
            if attributes is None or not self._admit(attributes.get("event"), self._doi()):
                return
            if self._doi() not in fake.dois:
                self._reply(
                    404, _errors(404, (None, "The resource you are looking for doesn't exist."))
                )
            else:
                self._apply(self._doi(), attributes, created=False)

        def do_GET(self) -> None:
            if not self._admit(None, self._doi()):
                return
            if self._doi() in fake.dois:
                self._reply(200, self._doc(self._doi()))
            else:
                self._reply(
                    404, _errors(404, (None, "The resource you are looking for doesn't exist."))
                )

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def datacite() -> Iterator[FakeDataCite]:
    with fake_datacite() as fake:
        yield fake


def _provider(fake: FakeDataCite, password: str = PASSWORD, **kw: Any) -> DataCiteProvider:
    return DataCiteProvider(REPOSITORY, password, PREFIX, base_url=fake.url, **kw)


# --- minting ---------------------------------------------------------------------------


def test_dois_are_deterministic() -> None:
    assert mint_concept_doi(PREFIX, "validated_posts") == "10.12345/spanda.validated_posts"
    assert mint_version_doi(PREFIX, "validated_posts", 3) == "10.12345/spanda.validated_posts.v3"
    assert mint_version_doi(PREFIX, "validated_posts", 3) == mint_version_doi(
        PREFIX, "validated_posts", 3
    )
    dois = {
        mint_concept_doi(PREFIX, "validated_posts"),
        mint_version_doi(PREFIX, "validated_posts", 1),
        mint_version_doi(PREFIX, "validated_posts", 2),
        mint_version_doi(PREFIX, "labeled_posts", 1),
        mint_version_doi("10.54321", "validated_posts", 1),
    }
    assert len(dois) == 5


def test_two_offline_providers_mint_the_same_dois(tmp_path: Path) -> None:
    a, b = OfflineProvider(tmp_path / "a", PREFIX), OfflineProvider(tmp_path / "b", PREFIX)
    assert a.concept_doi("labeled_posts") == b.concept_doi("labeled_posts")
    assert a.version_doi("labeled_posts", 2) == b.version_doi("labeled_posts", 2)


@pytest.mark.parametrize(
    ("prefix", "dataset_id", "version", "message"),
    [
        ("10.5", "posts", 1, "is not a DOI prefix"),
        ("11.12345", "posts", 1, "is not a DOI prefix"),
        (PREFIX, "Posts/../x", 1, "cannot name a DOI"),
        (PREFIX, "posts", 0, "a whole number from 1"),
    ],
)
def test_minting_refuses_what_cannot_be_a_doi(
    prefix: str, dataset_id: str, version: int, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        mint_version_doi(prefix, dataset_id, version)


def test_the_factory_defaults_to_offline_under_the_placeholder_prefix(
    spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = provider_from_env()
    assert isinstance(provider, OfflineProvider)
    assert provider.prefix == DEFAULT_OFFLINE_PREFIX != "10.5072"  # retired in 2019
    assert provider.store == spanda_home / "doi"
    monkeypatch.setenv("SPANDA_DOI_PREFIX", "10.80123")
    assert provider_from_env().concept_doi("x") == "10.80123/spanda.x"
    monkeypatch.setenv("SPANDA_DOI_PROVIDER", "crossref")
    with pytest.raises(ConfigError, match="use offline or datacite"):
        provider_from_env()


def test_the_factory_names_every_missing_datacite_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANDA_DOI_PROVIDER", "datacite")
    monkeypatch.setenv("SPANDA_DATACITE_PASSWORD", PASSWORD)
    with pytest.raises(MissingSecretError) as info:
        provider_from_env()
    message = str(info.value)
    assert "SPANDA_DATACITE_REPOSITORY_ID, SPANDA_DATACITE_PREFIX" in message
    assert PASSWORD not in message
    monkeypatch.setenv("SPANDA_DATACITE_REPOSITORY_ID", REPOSITORY)
    monkeypatch.setenv("SPANDA_DATACITE_PREFIX", PREFIX)
    provider = provider_from_env()
    assert isinstance(provider, DataCiteProvider)
    assert provider.base_url == "https://api.test.datacite.org"  # DataCite's test system
    assert PASSWORD not in repr(provider)


# --- the offline provider ----------------------------------------------------------------


def test_offline_release_records_what_it_registered(tmp_path: Path) -> None:
    provider = OfflineProvider(tmp_path / "doi", PREFIX)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    assert provider.resolve(doi) is None
    record = release(provider, doi, metadata, LANDING)
    assert (record.doi, record.state, record.url) == (doi, "findable", LANDING)
    # a new provider on the same directory resolves what the first one recorded
    again = OfflineProvider(tmp_path / "doi", PREFIX).resolve(doi)
    assert again is not None
    assert (again.state, again.url) == ("findable", LANDING)
    assert again.attributes == {**metadata, "url": LANDING}
    # releasing again is a metadata update, not a second DOI
    assert release(provider, doi, metadata, LANDING).state == "findable"
    assert len(list((tmp_path / "doi").glob("*.json"))) == 1


def test_offline_keeps_datacites_rules(tmp_path: Path) -> None:
    provider = OfflineProvider(tmp_path, PREFIX)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    with pytest.raises(DoiError, match="does not exist offline: create it as a draft first"):
        provider.register(doi, metadata, LANDING)
    assert provider.draft(doi, metadata).state == "draft"
    with pytest.raises(DoiError, match="has already been taken"):
        provider.draft(doi, metadata)
    broken = {k: v for k, v in metadata.items() if k != "titles"}
    with pytest.raises(MetadataError, match="titles: missing"):
        provider.register(doi, broken, LANDING)
    with pytest.raises(MetadataError, match="url: missing"):
        provider.publish(doi, metadata, "")
    assert provider.publish(doi, metadata, LANDING).state == "findable"
    with pytest.raises(DoiError, match="is findable: it can only be hidden"):
        provider.register(doi, metadata, LANDING)
    with pytest.raises(DoiError, match=r"is not under the offline provider's prefix 10\.12345"):
        provider.draft("10.99999/other", metadata)
    with pytest.raises(DoiError, match="the metadata is of DOI"):
        provider.draft(provider.version_doi("validated_posts", 2), metadata)


# --- the DataCite provider ---------------------------------------------------------------


def test_release_goes_draft_register_publish(datacite: FakeDataCite) -> None:
    provider: DoiProvider = _provider(datacite)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    record = release(provider, doi, metadata, LANDING)
    assert (record.doi, record.state, record.url) == (doi, "findable", LANDING)
    assert datacite.events() == [
        ("GET", None),  # does it exist yet?
        ("POST", None),  # the draft: no event
        ("PUT", "register"),
        ("PUT", "publish"),
    ]
    stored = datacite.dois[doi]
    assert stored["titles"] == metadata["titles"]
    assert stored["relatedIdentifiers"] == metadata["relatedIdentifiers"]
    resolved = provider.resolve(doi)
    assert resolved is not None and resolved.state == "findable"
    assert resolved.attributes["publicationYear"] == "2025"


def test_release_resumes_where_it_stopped(datacite: FakeDataCite) -> None:
    provider = _provider(datacite)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    assert provider.draft(doi, metadata).state == "draft"
    assert provider.register(doi, metadata, LANDING).state == "registered"
    datacite.calls.clear()
    assert release(provider, doi, metadata, LANDING).state == "findable"
    assert datacite.events() == [("GET", None), ("PUT", "publish")]


def test_hide_takes_a_findable_doi_out_of_the_index(datacite: FakeDataCite, tmp_path: Path) -> None:
    """A withdrawn version's DOI: registered again (it resolves to its tombstone page),
    no longer findable; DataCite and the offline provider agree."""
    provider = _provider(datacite)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    release(provider, doi, metadata, LANDING)
    datacite.calls.clear()
    assert provider.hide(doi, metadata, LANDING).state == "registered"
    assert datacite.events() == [("PUT", "hide")]
    resolved = provider.resolve(doi)
    assert resolved is not None and resolved.state == "registered" and resolved.url == LANDING
    offline = OfflineProvider(tmp_path / "doi", PREFIX)
    release(offline, doi, metadata, LANDING)
    assert offline.hide(doi, metadata, LANDING).state == "registered"


def test_resolve_of_an_unknown_doi_is_none(datacite: FakeDataCite) -> None:
    assert _provider(datacite).resolve(f"{PREFIX}/spanda.nothing") is None


def test_wrong_password_is_a_clear_error_without_the_password(
    datacite: FakeDataCite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wr0ng-" + PASSWORD
    provider = _provider(datacite, password=wrong)
    doi = provider.version_doi("validated_posts", 1)
    with pytest.raises(DoiError) as info:
        provider.draft(doi, _metadata(doi))
    error = info.value
    assert (error.doi, error.status, error.titles) == (doi, 401, ("Bad credentials.",))
    message = str(error)
    assert f"refused to draft DOI {doi} for repository {REPOSITORY}: HTTP 401" in message
    assert "Bad credentials." in message
    assert "SPANDA_DATACITE_REPOSITORY_ID and SPANDA_DATACITE_PASSWORD" in message
    for secret in (wrong, PASSWORD):
        assert secret not in message
        assert secret not in repr(provider)
        assert secret not in caplog.text


def test_invalid_payload_gets_datacites_reasons(datacite: FakeDataCite) -> None:
    provider = _provider(datacite)
    doi = provider.version_doi("validated_posts", 1)
    metadata = _metadata(doi)
    provider.draft(doi, {"doi": doi})  # a bare draft is allowed
    incomplete = {k: v for k, v in metadata.items() if k not in ("titles", "creators")}
    with pytest.raises(DoiError) as info:
        provider.register(doi, incomplete, LANDING)
    error = info.value
    assert error.status == 422
    assert error.titles == ("creators: Creators can't be blank", "titles: Titles can't be blank")
    message = str(error)
    assert f"refused to register DOI {doi}" in message
    assert "HTTP 422: creators: Creators can't be blank; titles: Titles can't be blank" in message
    assert PASSWORD not in message


def test_taken_doi_unknown_doi_and_foreign_prefix(datacite: FakeDataCite) -> None:
    provider = _provider(datacite)
    doi = provider.version_doi("validated_posts", 1)
    provider.draft(doi, _metadata(doi))
    with pytest.raises(DoiError, match="HTTP 422: doi: This DOI has already been taken"):
        provider.draft(doi, _metadata(doi))
    other = provider.version_doi("validated_posts", 2)
    with pytest.raises(DoiError, match=r"HTTP 404.*create it as a draft first") as info:
        provider.publish(other, {"doi": other}, LANDING)
    assert info.value.doi == other
    with pytest.raises(DoiError, match=r"not under DataCite repository SPANDA\.TEST's prefix"):
        provider.draft("10.99999/spanda.x", {})
    assert datacite.events() == [("POST", None), ("POST", None), ("PUT", "publish")]


def test_server_errors_never_carry_the_password(datacite: FakeDataCite) -> None:
    datacite.fail_with = 503
    provider = _provider(datacite)
    with pytest.raises(DoiError) as info:
        provider.resolve(f"{PREFIX}/spanda.x")
    message = str(info.value)
    assert "HTTP 503" in message and "try again later" in message
    assert f"oops {REPOSITORY}:***" in message  # the server echoed it; we did not
    assert PASSWORD not in message
    assert all(PASSWORD not in t for t in info.value.titles)


def test_timeouts_and_unreachable_servers(datacite: FakeDataCite) -> None:
    datacite.slow_seconds = 1.0
    slow = _provider(datacite, timeout=0.2)
    with pytest.raises(DoiError, match=r"did not answer within 0.2 s.*resolve DOI"):
        slow.resolve(f"{PREFIX}/spanda.x")
    closed = DataCiteProvider(REPOSITORY, PASSWORD, PREFIX, base_url="http://127.0.0.1:9")
    with pytest.raises(DoiError) as info:
        closed.resolve(f"{PREFIX}/spanda.x")
    assert "could not reach DataCite at http://127.0.0.1:9 to resolve DOI" in str(info.value)
    assert PASSWORD not in str(info.value)
