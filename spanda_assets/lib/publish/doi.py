"""DOIs for published datasets: minting, and registration with a provider.

DOIs are deterministic: the concept DOI of dataset `validated_posts` is
`<prefix>/spanda.validated_posts` and its version 3 is
`<prefix>/spanda.validated_posts.v3`. A rerun after a crash therefore asks for the
same DOI again instead of minting a second one, and registration resumes where it
stopped (`release`: draft -> register -> publish, each step skipped when done).

Two providers speak the same `DoiProvider` protocol:

- `OfflineProvider` (the embedded default) records DOIs in JSON files under a
  directory, with DataCite's states and rules, and registers nothing anywhere. Its
  default prefix is `10.99999`, a placeholder: DataCite's old shared test prefix
  10.5072 was retired in 2019 (test DOIs now live in DataCite's test system under each
  account's own prefix), and no prefix is reserved for examples. Set SPANDA_DOI_PREFIX
  to your repository's prefix so that offline DOIs are the ones DataCite will register.
- `DataCiteProvider` calls the DataCite REST API (the test system,
  https://api.test.datacite.org, unless SPANDA_DATACITE_URL says otherwise) with the
  repository's id and password (HTTP basic auth). The password is never logged nor put
  into an error message.

`provider_from_env` picks one from SPANDA_DOI_PROVIDER (`offline` or `datacite`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, cast
from urllib.parse import quote

import httpx

from spanda_assets import settings
from spanda_assets.lib.errors import ConfigError, MissingSecretError, SpandaError, redact_url
from spanda_assets.lib.publish.datacite import (
    Event,
    MetadataError,
    metadata_problems,
    to_rest_payload,
)
from spanda_assets.lib.publish.datasets import DATASET_ID

ENV_DOI_PROVIDER = "SPANDA_DOI_PROVIDER"
ENV_DOI_PREFIX = "SPANDA_DOI_PREFIX"
ENV_DATACITE_URL = "SPANDA_DATACITE_URL"
ENV_DATACITE_REPOSITORY_ID = "SPANDA_DATACITE_REPOSITORY_ID"
ENV_DATACITE_PASSWORD = "SPANDA_DATACITE_PASSWORD"
ENV_DATACITE_PREFIX = "SPANDA_DATACITE_PREFIX"

DEFAULT_OFFLINE_PREFIX = "10.99999"
DEFAULT_DATACITE_URL = "https://api.test.datacite.org"
DEFAULT_TIMEOUT_SECONDS = 30.0
SUFFIX_NAMESPACE = "spanda"
JSON_API = "application/vnd.api+json"

DoiState = Literal["draft", "registered", "findable"]
_PREFIX = re.compile(r"^10\.\d{4,9}$")
_STATES: tuple[DoiState, ...] = ("draft", "registered", "findable")
# Which state each event leads to; DataCite's own rules (findable cannot go back to
# registered by "register": that is "hide").
_EVENT_STATE: dict[Event, DoiState] = {
    "register": "registered",
    "publish": "findable",
    "hide": "registered",
}

log = logging.getLogger(__name__)


class DoiError(SpandaError):
    """A DOI could not be minted, registered or read. Names the DOI, the HTTP status where
    there was one, and the provider's own reasons (DataCite's error titles)."""

    def __init__(
        self, message: str, doi: str, status: int | None = None, titles: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.doi = doi
        self.status = status
        self.titles = titles


@dataclass(frozen=True)
class DoiRecord:
    """A DOI as its provider holds it: state, landing page and metadata attributes."""

    doi: str
    state: DoiState
    url: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict, compare=False)


def check_prefix(prefix: str, variable: str = ENV_DOI_PREFIX) -> str:
    """`prefix` if it is a DOI prefix (10.NNNN), else a ConfigError naming the variable."""
    if not _PREFIX.match(prefix):
        raise ConfigError(
            f"{variable}={prefix!r} is not a DOI prefix: write 10. followed by 4-9 digits, "
            "e.g. 10.12345 (your DataCite repository's prefix)"
        )
    return prefix


def _check_dataset_id(dataset_id: str) -> str:
    if not DATASET_ID.match(dataset_id):
        raise ConfigError(
            f"dataset id {dataset_id!r} cannot name a DOI: use lowercase letters and digits, "
            "words joined by '_' or '-'"
        )
    return dataset_id


def mint_concept_doi(prefix: str, dataset_id: str) -> str:
    """The concept DOI of a dataset: the same for every version, and for every run."""
    return f"{check_prefix(prefix)}/{SUFFIX_NAMESPACE}.{_check_dataset_id(dataset_id)}"


def mint_version_doi(prefix: str, dataset_id: str, version: int) -> str:
    """The DOI of one version (counted from 1) of a dataset."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ConfigError(f"a dataset version is a whole number from 1, got {version!r}")
    return f"{mint_concept_doi(prefix, dataset_id)}.v{version}"


class DoiProvider(Protocol):
    """Mints and registers DOIs. Every step is keyed by the DOI, so retries are safe."""

    prefix: str

    def concept_doi(self, dataset_id: str) -> str: ...

    def version_doi(self, dataset_id: str, version: int) -> str: ...

    def draft(self, doi: str, metadata: Mapping[str, Any]) -> DoiRecord:
        """Create the DOI as a draft (deletable, not resolvable) with its metadata."""
        ...

    def register(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        """Make the DOI registered: permanent and resolvable to `url`, not yet indexed."""
        ...

    def publish(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        """Make the DOI findable (indexed); on a findable DOI this updates its metadata."""
        ...

    def hide(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        """Take a findable DOI out of the index (registered again): a withdrawn version's
        DOI still resolves, to its tombstone page, but search no longer offers it."""
        ...

    def resolve(self, doi: str) -> DoiRecord | None:
        """The DOI as the provider holds it, or None when it does not exist."""
        ...


def release(provider: DoiProvider, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
    """Take `doi` through draft -> register -> publish, resuming after the last step done.

    A run that stopped half-way (a crash, a timeout) continues from the state the
    provider reports instead of failing on "DOI already taken"; a findable DOI gets its
    metadata updated (a concept DOI after each new version).
    """
    current = provider.resolve(doi)
    if current is None:
        current = provider.draft(doi, metadata)
    if current.state == "draft":
        current = provider.register(doi, metadata, url)
    return provider.publish(doi, metadata, url)


def _under_prefix(doi: str, prefix: str, who: str) -> None:
    if not doi.lower().startswith(prefix.lower() + "/"):
        raise DoiError(f"DOI {doi} is not under {who}'s prefix {prefix}", doi)


def _attributes(doi: str, metadata: Mapping[str, Any], url: str | None) -> dict[str, Any]:
    given = metadata.get("doi")
    if given and str(given).lower() != doi.lower():
        raise DoiError(f"the metadata is of DOI {given}, not of DOI {doi}", doi)
    attributes = to_rest_payload(metadata, url=url)["data"]["attributes"]
    attributes["doi"] = doi
    return cast(dict[str, Any], attributes)


class OfflineProvider:
    """DOIs recorded in JSON files under `store`, one file per DOI; nothing leaves the host.

    It keeps DataCite's rules so the embedded demo fails where DataCite would: a DOI is
    drafted once, registering and publishing need a landing page and metadata that
    passes the DataCite 4.5 schema, and a findable DOI cannot be registered again.
    """

    def __init__(self, store: Path, prefix: str = DEFAULT_OFFLINE_PREFIX) -> None:
        self.store = store
        self.prefix = check_prefix(prefix)

    def __repr__(self) -> str:
        return f"OfflineProvider(store={str(self.store)!r}, prefix={self.prefix!r})"

    def concept_doi(self, dataset_id: str) -> str:
        return mint_concept_doi(self.prefix, dataset_id)

    def version_doi(self, dataset_id: str, version: int) -> str:
        return mint_version_doi(self.prefix, dataset_id, version)

    def _path(self, doi: str) -> Path:
        # DOIs are case-insensitive; '/' and other characters are quoted for the file name
        return self.store / f"{quote(doi.lower(), safe='')}.json"

    def _write(self, record: DoiRecord) -> DoiRecord:
        """Write the record whole or not at all (temporary file, then rename)."""
        self.store.mkdir(parents=True, exist_ok=True)
        body = {
            "doi": record.doi,
            "state": record.state,
            "url": record.url,
            "attributes": dict(record.attributes),
            "provider": "offline",
        }
        fd, tmp = tempfile.mkstemp(dir=self.store, prefix=".doi-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(body, f, indent=2, sort_keys=True, ensure_ascii=False)
            os.replace(tmp, self._path(record.doi))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return record

    def resolve(self, doi: str) -> DoiRecord | None:
        path = self._path(doi)
        if not path.is_file():
            return None
        body = json.loads(path.read_text(encoding="utf-8"))
        return DoiRecord(body["doi"], body["state"], body.get("url"), body.get("attributes", {}))

    def draft(self, doi: str, metadata: Mapping[str, Any]) -> DoiRecord:
        _under_prefix(doi, self.prefix, "the offline provider")
        if self.resolve(doi) is not None:
            raise DoiError(f"DOI {doi} has already been taken (offline store {self.store})", doi)
        attributes = _attributes(doi, metadata, metadata.get("url"))
        return self._write(DoiRecord(doi, "draft", attributes.get("url"), attributes))

    def _move(self, doi: str, metadata: Mapping[str, Any], url: str, event: Event) -> DoiRecord:
        _under_prefix(doi, self.prefix, "the offline provider")
        current = self.resolve(doi)
        if current is None:
            raise DoiError(f"DOI {doi} does not exist offline: create it as a draft first", doi)
        if event == "register" and current.state == "findable":
            raise DoiError(f"DOI {doi} is findable: it can only be hidden, not registered", doi)
        attributes = _attributes(doi, metadata, url)
        problems = metadata_problems(attributes)
        if not url:
            problems.insert(0, "url: missing (a registered DOI must resolve to a landing page)")
        if problems:
            raise MetadataError(f"DOI {doi} (offline {event})", problems)
        return self._write(DoiRecord(doi, _EVENT_STATE[event], url, attributes))

    def register(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._move(doi, metadata, url, "register")

    def publish(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._move(doi, metadata, url, "publish")

    def hide(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._move(doi, metadata, url, "hide")


# What to do about each refusal; DataCite's own reasons come from the response body.
_STATUS_HINTS = {
    401: "check {repo_var} and {password_var}",
    403: "the repository may only create DOIs under its own prefix ({prefix_var})",
    404: "the DOI does not exist there: create it as a draft first",
    422: "DataCite refused the metadata",
    429: "DataCite is rate-limiting requests: try again later",
}


class DataCiteProvider:
    """The DataCite REST API (JSON:API): POST /dois for a draft, PUT /dois/{doi} with the
    `event` attribute "register" then "publish", GET /dois/{doi} to resolve."""

    def __init__(
        self,
        repository_id: str,
        password: str,
        prefix: str,
        base_url: str = DEFAULT_DATACITE_URL,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"{ENV_DATACITE_URL}={base_url!r} must be an http(s) URL")
        self.repository_id = repository_id
        self.prefix = check_prefix(prefix, ENV_DATACITE_PREFIX)
        self.base_url = base_url.rstrip("/")
        # what messages show: a URL with user:password@ in it loses the password
        self.shown_url = redact_url(self.base_url)
        self.timeout = timeout
        self._password = password  # never logged, never in a message (see _redact)

    @classmethod
    def from_env(cls) -> DataCiteProvider:
        """A provider from SPANDA_DATACITE_*; every missing setting is named at once."""
        env = {
            name: os.environ.get(name, "").strip()
            for name in (
                ENV_DATACITE_REPOSITORY_ID,
                ENV_DATACITE_PASSWORD,
                ENV_DATACITE_PREFIX,
            )
        }
        missing = [name for name, value in env.items() if not value]
        if missing:
            raise MissingSecretError(
                f"{ENV_DOI_PROVIDER}=datacite needs {', '.join(missing)} in the environment "
                "(the DataCite repository's id, password and DOI prefix)"
            )
        return cls(
            repository_id=env[ENV_DATACITE_REPOSITORY_ID],
            password=env[ENV_DATACITE_PASSWORD],
            prefix=env[ENV_DATACITE_PREFIX],
            base_url=os.environ.get(ENV_DATACITE_URL, "").strip() or DEFAULT_DATACITE_URL,
        )

    def __repr__(self) -> str:
        return (
            f"DataCiteProvider(base_url={self.shown_url!r}, "
            f"repository_id={self.repository_id!r}, prefix={self.prefix!r})"
        )

    def concept_doi(self, dataset_id: str) -> str:
        return mint_concept_doi(self.prefix, dataset_id)

    def version_doi(self, dataset_id: str, version: int) -> str:
        return mint_version_doi(self.prefix, dataset_id, version)

    def _redact(self, text: str) -> str:
        """`text` without the password, nor any URL's user:password@ part."""
        text = redact_url(text)
        return text.replace(self._password, "***") if self._password else text

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(self.repository_id, self._password),
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0)),
            headers={"Accept": JSON_API},
            follow_redirects=False,
        )

    def _send(
        self, method: str, doi: str, action: str, body: dict[str, Any] | None = None
    ) -> httpx.Response:
        path = "/dois" if method == "POST" else f"/dois/{quote(doi, safe='/')}"
        content = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Content-Type": JSON_API} if content is not None else {}
        try:
            with self._client() as client:
                return client.request(method, path, content=content, headers=headers)
        except httpx.TimeoutException as exc:
            raise DoiError(
                f"DataCite at {self.shown_url} did not answer within {self.timeout:g} s when "
                f"asked to {action} DOI {doi} ({type(exc).__name__}); try again later",
                doi,
            ) from None
        except httpx.HTTPError as exc:
            raise DoiError(
                self._redact(
                    f"could not reach DataCite at {self.shown_url} to {action} DOI {doi}: "
                    f"{type(exc).__name__}: {exc}; check {ENV_DATACITE_URL} and the network"
                ),
                doi,
            ) from None

    def _refusal(self, response: httpx.Response, doi: str, action: str) -> DoiError:
        titles = _error_titles(response)
        status = response.status_code
        hint = _STATUS_HINTS.get(status, "")
        if status >= 500:
            hint = "DataCite had an internal error: try again later"
        hint = hint.format(
            repo_var=ENV_DATACITE_REPOSITORY_ID,
            password_var=ENV_DATACITE_PASSWORD,
            prefix_var=ENV_DATACITE_PREFIX,
        )
        reasons = f": {'; '.join(titles)}" if titles else ""
        message = (
            f"DataCite at {self.shown_url} refused to {action} DOI {doi} for repository "
            f"{self.repository_id}: HTTP {status}{reasons}" + (f" ({hint})" if hint else "")
        )
        return DoiError(self._redact(message), doi, status, tuple(self._redact(t) for t in titles))

    def _record(self, response: httpx.Response, doi: str, action: str) -> DoiRecord:
        try:
            data = response.json()["data"]
            attributes = dict(data["attributes"])
            state = attributes.get("state")
        except (ValueError, KeyError, TypeError):
            raise DoiError(
                f"DataCite at {self.shown_url} answered {action} of DOI {doi} with "
                f"HTTP {response.status_code} but no JSON:API document",
                doi,
                response.status_code,
            ) from None
        if state not in _STATES:
            raise DoiError(
                f"DataCite at {self.shown_url} reports DOI {doi} in unknown state {state!r}",
                doi,
                response.status_code,
            )
        return DoiRecord(
            str(attributes.get("doi") or data.get("id") or doi),
            cast(DoiState, state),
            attributes.get("url"),
            attributes,
        )

    def _write(
        self,
        method: str,
        doi: str,
        metadata: Mapping[str, Any],
        url: str | None,
        event: Event | None,
    ) -> DoiRecord:
        _under_prefix(doi, self.prefix, f"DataCite repository {self.repository_id}")
        action = event or "draft"
        body = to_rest_payload(_attributes(doi, metadata, url), event=event)
        response = self._send(method, doi, action, body)
        if response.status_code not in (200, 201):
            raise self._refusal(response, doi, action)
        record = self._record(response, doi, action)
        log.info("DataCite: %s DOI %s -> %s", action, doi, record.state)
        return record

    def draft(self, doi: str, metadata: Mapping[str, Any]) -> DoiRecord:
        return self._write("POST", doi, metadata, metadata.get("url"), None)

    def register(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._write("PUT", doi, metadata, url, "register")

    def publish(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._write("PUT", doi, metadata, url, "publish")

    def hide(self, doi: str, metadata: Mapping[str, Any], url: str) -> DoiRecord:
        return self._write("PUT", doi, metadata, url, "hide")

    def resolve(self, doi: str) -> DoiRecord | None:
        response = self._send("GET", doi, "resolve")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._refusal(response, doi, "resolve")
        return self._record(response, doi, "resolve")


def _error_titles(response: httpx.Response) -> list[str]:
    """DataCite's reasons: the `title` (with its `source` field) of each JSON:API error."""
    try:
        errors = response.json().get("errors", [])
    except (ValueError, AttributeError):
        errors = []
    titles = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict) and error.get("title"):
            source = error.get("source")
            prefix = f"{source}: " if isinstance(source, str) and source else ""
            titles.append(f"{prefix}{error['title']}")
    if not titles and response.text.strip():
        titles.append(response.text.strip().splitlines()[0][:200])
    return titles


def offline_prefix() -> str:
    """SPANDA_DOI_PREFIX, or the placeholder 10.99999 (10.5072 was retired in 2019)."""
    return check_prefix(os.environ.get(ENV_DOI_PREFIX, "").strip() or DEFAULT_OFFLINE_PREFIX)


def offline_store() -> Path:
    """Where the offline provider keeps its DOIs: SPANDA_HOME/doi."""
    return settings.spanda_home() / "doi"


def provider_from_env(store: Path | None = None) -> DoiProvider:
    """The DOI provider SPANDA_DOI_PROVIDER names: `offline` (default) or `datacite`.

    `store` is the offline provider's directory (SPANDA_HOME/doi when None).
    """
    kind = os.environ.get(ENV_DOI_PROVIDER, "").strip().lower() or "offline"
    if kind == "offline":
        return OfflineProvider(store or offline_store(), offline_prefix())
    if kind == "datacite":
        return DataCiteProvider.from_env()
    raise ConfigError(f"{ENV_DOI_PROVIDER}={kind!r} is not a DOI provider: use offline or datacite")
