"""Spanda's HTTP API (`spanda serve`): landing pages, downloads, search, OAI-PMH, exports.

Metadata is public, as FAIR asks: landing pages, content negotiation, the linkset,
search and OAI-PMH answer without a token and hold no value of any row. Data is not:
downloads and exports need `Authorization: Bearer <token>` (401 without), a stated
purpose (`X-Purpose` header or `?purpose=`), and the access policy's permit (403 with
the reasons otherwise). Every decision, permit or deny, is one line of the hash-chained
audit log (`spanda access audit`).

The policy decides per column: a column the reader may not see is left out of the
download in every format (the schema included) and named in `X-Spanda-Columns-Withheld`;
a filter on such a column is refused, since filtering on it would reveal its values.

Nothing here holds a whole table: downloads stream from the version's snapshot one data
file at a time (`api/downloads.py`), or send the version's published file as it is.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import pyarrow as pa
from fastapi import FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from spanda_assets.api import downloads, formats, landing
from spanda_assets.api.filters import FilterError, column_types, parse_filter
from spanda_assets.lib.access import (
    ANONYMOUS,
    AccessControl,
    Decision,
    Principal,
    Unauthenticated,
)
from spanda_assets.lib.errors import SpandaError
from spanda_assets.lib.exports import EXPORT_KINDS, latest_export
from spanda_assets.lib.files import file_digest as file_sha256
from spanda_assets.lib.lakehouse import CatalogConfig, load_table_or_none, open_catalog
from spanda_assets.lib.publish import oai as oai_pmh
from spanda_assets.lib.publish.datacite import to_xml
from spanda_assets.lib.publish.datasets import DATASET_ID, DatasetDeclaration, load_datasets
from spanda_assets.lib.publish.search import (
    MAX_OFFSET,
    FacetSyntaxError,
    SearchIndex,
    SearchIndexError,
    default_path,
    parse_facet_pairs,
)
from spanda_assets.lib.publish.versions import (
    DatasetState,
    PublishedVersion,
    VersionStore,
    concept_metadata,
    landing_url,
    public_url,
    publish_root,
)

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

ENV_ADMIN_EMAIL = "SPANDA_ADMIN_EMAIL"
DEFAULT_ADMIN_EMAIL = "data-steward@spanda.invalid"
MAX_VERSION = 1_000_000
MAX_COLUMNS_PARAM = 4_000
DATASET_PATTERN = DATASET_ID.pattern


class ApiError(Exception):
    """An answer other than 200, with the reason a client can act on."""

    def __init__(
        self, status: int, message: str, headers: Mapping[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra


def _error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {"status": status, "error": message, **extra}


@dataclass(frozen=True)
class _Found:
    dataset: DatasetDeclaration
    state: DatasetState


class Api:
    """What the routes share: the declared datasets, the version records, the access
    policy (validated when the server starts), the catalog (opened on first use)."""

    def __init__(
        self,
        access: AccessControl,
        datasets: Sequence[DatasetDeclaration],
        store: VersionStore,
    ) -> None:
        self.access = access
        self.datasets = {d.id: d for d in datasets}
        self.store = store
        self._catalog: Catalog | None = None
        self._index: SearchIndex | None = None
        self._lock = threading.Lock()

    def index(self) -> SearchIndex:
        """The search index, one connection for the server's life: its facet arrays are
        built once and rebuilt only when the index changed, which keeps a query fast. An
        index that does not exist yet is created empty (nothing was published)."""

        with self._lock:
            if self._index is None:
                self._index = SearchIndex(default_path())
            return self._index

    def catalog(self) -> Catalog:
        with self._lock:
            if self._catalog is None:
                self._catalog = open_catalog(CatalogConfig.from_env())
            return self._catalog

    def find(self, dataset_id: str) -> _Found:
        dataset = self.datasets.get(dataset_id)
        if dataset is None:
            raise ApiError(404, f"no dataset {dataset_id!r}; GET /datasets lists them")
        state = self.store.load(dataset_id)
        if not [v for v in state.versions if v.status != "pending"]:
            raise ApiError(404, f"dataset {dataset_id!r} has no published version yet")
        return _Found(dataset, state)

    def version(self, found: _Found, number: int) -> PublishedVersion:
        for v in found.state.versions:
            if v.version == number and v.status != "pending":
                return v
        known = ", ".join(str(v.version) for v in found.state.versions if v.status != "pending")
        raise ApiError(
            404, f"dataset {found.dataset.id!r} has no version {number} (versions: {known})"
        )


# --- landing pages ---------------------------------------------------------------------


def _linkset_url(dataset_id: str) -> str:
    return f"{landing_url(dataset_id)}/linkset"


def _version_landing(found: _Found, v: PublishedVersion) -> formats.Landing:
    return formats.Landing(
        dataset_id=found.dataset.id,
        doi=v.doi,
        url=landing_url(found.dataset.id, v.version),
        metadata=v.metadata,
        distributions=tuple(v.distributions),
        version=v.version,
        concept_doi=v.concept_doi,
        concept_url=landing_url(found.dataset.id),
        linkset_url=_linkset_url(found.dataset.id),
        withdrawn_reason=(v.withdrawn_reason or "Withdrawn.") if v.status == "withdrawn" else "",
    )


def _concept_landing(found: _Found) -> formats.Landing:
    latest = found.state.latest
    if latest is None:  # every version withdrawn: the concept is a tombstone too
        last = [v for v in found.state.versions if v.status == "withdrawn"][-1]
        return formats.Landing(
            dataset_id=found.dataset.id,
            doi=last.concept_doi,
            url=landing_url(found.dataset.id),
            metadata=last.metadata,
            linkset_url=_linkset_url(found.dataset.id),
            withdrawn_reason="Every version of this dataset was withdrawn.",
        )
    return formats.Landing(
        dataset_id=found.dataset.id,
        doi=latest.concept_doi,
        url=landing_url(found.dataset.id),
        metadata=concept_metadata(found.dataset, found.state),
        distributions=tuple(latest.distributions),
        concept_doi=latest.concept_doi,
        linkset_url=_linkset_url(found.dataset.id),
    )


def _columns(dataset: DatasetDeclaration) -> list[tuple[str, str, str, Sequence[str]]]:
    return [
        (
            name,
            text,
            dataset.access.column(name).sensitivity,
            dataset.access.column(name).purposes,
        )
        for name, text in dataset.columns.items()
    ]


def _versions_table(found: _Found) -> list[dict[str, Any]]:
    return [
        {
            "version": v.version,
            "doi": v.doi,
            "doi_url": formats.doi_url(v.doi),
            "url": landing_url(found.dataset.id, v.version),
            "created": v.created,
            "rows": v.rows,
            "status": v.status,
        }
        for v in found.state.versions
        if v.status != "pending"
    ]


def _html(page: formats.Landing, found: _Found, *, concept: bool) -> str:
    dua = found.dataset.dua
    return landing.render(
        page,
        base=public_url(),
        columns=_columns(found.dataset),
        versions=_versions_table(found) if concept else (),
        dua=f"{dua.title} ({dua.id}, {dua.url})",
    )


def landing_html(dataset: DatasetDeclaration, state: DatasetState, version: int | None) -> str:
    """The HTML landing page of `version` of the dataset (None: the concept's page), as
    `GET /datasets/...` serves it: what the publish asset's JSON-LD check reads."""
    found = _Found(dataset, state)
    if version is None:
        return _html(_concept_landing(found), found, concept=True)
    chosen = next(v for v in state.versions if v.version == version)
    return _html(_version_landing(found, chosen), found, concept=False)


def _represent(
    page: formats.Landing, found: _Found, media_type: str, *, concept: bool, document: bool
) -> Response:
    """The landing page in `media_type`. `document`: asked for by `?format=`, so it is a
    metadata document of its own, which Signposting links back to the page it describes
    (`describes`) instead of repeating the page's links."""
    status = 410 if page.withdrawn_reason else 200
    links = (
        [formats.Link(page.url, "describes", formats.HTML)]
        if document and media_type != formats.HTML
        else formats.signposting(page)
    )
    headers = {"Link": formats.link_header(links), "Vary": "Accept"}
    if media_type == formats.HTML:
        text = _html(page, found, concept=concept)
        return Response(text, status, headers, media_type="text/html; charset=utf-8")
    body: str
    if media_type == formats.DATACITE_JSON:
        body = json.dumps(dict(page.metadata), ensure_ascii=False, indent=2)
    elif media_type == formats.DATACITE_XML:
        body = to_xml(page.metadata)
    elif media_type == formats.JSON_LD:
        body = json.dumps(
            formats.schema_org(page, found.dataset.columns), ensure_ascii=False, indent=2
        )
    elif media_type == formats.CSL_JSON:
        body = json.dumps(formats.csl_json(page), ensure_ascii=False, indent=2)
    elif media_type == formats.BIBTEX:
        body = formats.bibtex(page)
    elif media_type == formats.RIS:
        body = formats.ris(page)
    else:
        body = formats.citation_text(page) + "\n"
    charset = "" if media_type.endswith("+json") or "json" in media_type else "; charset=utf-8"
    return Response(body, status, headers, media_type=media_type + charset)


def _chosen_type(request: Request, format_name: str | None) -> str:
    if format_name is not None:
        media = formats.FORMAT_NAMES.get(format_name)
        if media is None:
            names = ", ".join(formats.FORMAT_NAMES)
            raise ApiError(400, f"format {format_name!r} is not offered; use one of: {names}")
        return media
    chosen = formats.negotiate(request.headers.get("accept"))
    if chosen is None:
        raise ApiError(
            406,
            "none of the media types in Accept is offered here",
            available=list(formats.MEDIA_TYPES),
        )
    return chosen


# --- data access -----------------------------------------------------------------------


def _purpose(header: str | None, query: str | None) -> str | None:
    value = (header or query or "").strip()
    if len(value) > 64:
        raise ApiError(400, "purpose: at most 64 characters, e.g. research")
    return value or None


def _principal(api: Api, authorization: str | None) -> Principal:
    """The caller behind a data request: 401 without a valid token."""

    try:
        principal = api.access.authenticate(authorization)
    except Unauthenticated as exc:
        raise ApiError(
            401, str(exc), {"WWW-Authenticate": 'Bearer realm="spanda", error="invalid_token"'}
        ) from exc
    if principal.role == "anonymous":
        raise ApiError(
            401,
            "this endpoint serves data and needs a token: send Authorization: Bearer <token> "
            "(a steward issues one with `spanda access token create`)",
            {"WWW-Authenticate": 'Bearer realm="spanda"'},
        )
    return principal


def _may_read_metadata(
    api: Api, authorization: str | None, dataset: DatasetDeclaration, v: PublishedVersion | None
) -> None:
    """Metadata is public, by the policy's one explicit permit (never bronze): the
    decision is Cedar's like any other and is audited. A token that does not
    authenticate does not stop a public read; it is read as anonymous."""
    try:
        principal = api.access.authenticate(authorization)
    except Unauthenticated:
        principal = ANONYMOUS
    decision = api.access.authorize(
        principal,
        "read_metadata",
        dataset,
        version=v.version if v else None,
        snapshot_id=v.snapshot_id if v else None,
    )
    if not decision.allowed:
        raise _forbidden(decision, f"reading the metadata of {dataset.id!r}")


def _forbidden(decision: Decision, what: str) -> ApiError:
    return ApiError(
        403,
        f"{what} is not permitted: " + "; ".join(decision.reasons or ("denied by policy",)),
        reasons=list(decision.reasons),
        policies=list(decision.policy_ids),
    )


def _requested_columns(param: str | None, available: Sequence[str]) -> list[str] | None:
    if param is None:
        return None
    if len(param) > MAX_COLUMNS_PARAM:
        raise ApiError(400, f"columns: at most {MAX_COLUMNS_PARAM} characters")
    names = [c.strip() for c in param.split(",") if c.strip()]
    if not names:
        raise ApiError(400, "columns: empty; leave it out for every column you may read")
    unknown = [c for c in names if c not in available]
    if unknown:
        raise ApiError(
            400,
            f"columns: {', '.join(repr(c) for c in unknown[:5])} not in this version; "
            f"its columns: {', '.join(available)}",
        )
    return list(dict.fromkeys(names))


_VERIFIED: dict[tuple[str, int, int], str] = {}
_VERIFIED_LOCK = threading.Lock()


def _published_file(api: Api, v: PublishedVersion, fmt: str) -> tuple[Path, Mapping[str, Any]]:
    """The version's published file of `fmt`, checked against the SHA-256 its DOI's
    metadata gives (once per file: the check is cached on path, size and mtime). A
    missing or altered file is a 503 naming it: a DOI's download must be the bytes its
    metadata describes, never a re-encoding that merely holds the same rows."""
    d = next((d for d in v.distributions if d["format"] == fmt), None)
    if d is None:
        raise ApiError(404, f"version {v.version} of {v.dataset_id!r} has no {fmt} file")
    path = api.store.directory(v.dataset_id, v.version) / str(d["file_name"])
    try:
        stat = path.stat()
    except FileNotFoundError as exc:
        raise ApiError(
            503,
            f"the published file {d['file_name']} of {v.dataset_id!r} version {v.version} is "
            "missing from the server; a steward restores it from backup (its SHA-256 is in "
            "the metadata). Meanwhile ?columns= streams the rows from the snapshot.",
        ) from exc
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _VERIFIED_LOCK:
        known = _VERIFIED.get(key)
    if known is None:
        known = file_sha256(path)
        with _VERIFIED_LOCK:
            _VERIFIED[key] = known
    if known != d["sha256"]:
        raise ApiError(
            503,
            f"the published file {d['file_name']} of {v.dataset_id!r} version {v.version} "
            "does not match the SHA-256 in its metadata; a steward restores it from backup",
        )
    return path, d


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest


# --- the app ---------------------------------------------------------------------------

DatasetIdParam = Annotated[
    str, PathParam(pattern=DATASET_PATTERN, max_length=64, description="the dataset's id")
]
VersionParam = Annotated[int, PathParam(ge=1, le=MAX_VERSION, description="version number")]
FormatParam = Annotated[
    str | None,
    Query(
        alias="format",
        max_length=32,
        description="a representation by name instead of the Accept header: "
        + ", ".join(formats.FORMAT_NAMES),
    ),
]
PurposeHeader = Annotated[
    str | None, Header(alias="X-Purpose", max_length=64, description="why the data is read")
]
PurposeQuery = Annotated[
    str | None, Query(alias="purpose", max_length=64, description="X-Purpose, as a parameter")
]
KindParam = Annotated[
    str, PathParam(pattern="^(" + "|".join(EXPORT_KINDS) + ")$", description="the export")
]
FileNameParam = Annotated[
    str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", description="a file it lists")
]
AuthHeader = Annotated[
    str | None,
    Header(alias="Authorization", max_length=512, description="Bearer <token>"),
]


def create_app(
    access: AccessControl | None = None,
    datasets: Sequence[DatasetDeclaration] | None = None,
    store: VersionStore | None = None,
) -> FastAPI:
    """The API over the version records under SPANDA_HOME. The access policy is loaded
    and validated here, so a policy that does not validate stops `spanda serve` before it
    listens, with the validator's message."""
    if access is None:
        access = AccessControl.load()
    api = Api(
        access,
        datasets if datasets is not None else load_datasets(),
        store or VersionStore(publish_root()),
    )
    app = FastAPI(
        title="Spanda",
        version=package_version("spanda"),
        summary="FAIR access to Spanda's published datasets",
        description=__doc__,
        openapi_url="/openapi.json",
    )
    app.state.api = api

    @app.exception_handler(ApiError)
    def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            _error_body(exc.status, exc.message, **exc.extra), exc.status, exc.headers
        )

    @app.exception_handler(FilterError)
    def _filter_error(_request: Request, exc: FilterError) -> JSONResponse:
        return JSONResponse(_error_body(400, str(exc)), 400)

    @app.exception_handler(RequestValidationError)
    def _invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        """The house error shape, naming each bad parameter and why, and never echoing
        the value sent: a header can be a token."""
        problems = [
            {"in": ".".join(str(p) for p in error.get("loc", ())), "problem": error.get("msg")}
            for error in exc.errors()
        ]
        text = "; ".join(f"{p['in']}: {p['problem']}" for p in problems)
        return JSONResponse(_error_body(422, text, problems=problems), 422)

    @app.exception_handler(SpandaError)
    def _unavailable(_request: Request, exc: SpandaError) -> JSONResponse:
        """A store the API depends on cannot be read or written (the audit log, the token
        store, a version record, the search index): 503 with the reason, since nothing
        may be served whose decision could not be recorded."""
        return JSONResponse(_error_body(503, str(exc)), 503)

    @app.get("/health", summary="Liveness", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "policy_set_hash": api.access.policy_set_hash}

    @app.get("/", summary="What this service offers", tags=["service"])
    def root() -> dict[str, Any]:
        base = public_url()
        return {
            "name": "Spanda",
            "datasets": f"{base}/datasets",
            "search": f"{base}/search?q=",
            "oai_pmh": f"{base}/oai?verb=Identify",
            "openapi": f"{base}/openapi.json",
        }

    @app.get("/datasets", summary="Every dataset with its latest version", tags=["metadata"])
    def list_datasets() -> list[dict[str, Any]]:
        out = []
        for dataset in api.datasets.values():
            state = api.store.load(dataset.id)
            latest = state.latest
            out.append(
                {
                    "id": dataset.id,
                    "title": dataset.title,
                    "url": landing_url(dataset.id),
                    "concept_doi": latest.concept_doi if latest else None,
                    "latest_version": latest.version if latest else None,
                    "latest_doi": latest.doi if latest else None,
                    "licence": dataset.licence.id,
                }
            )
        return out

    @app.api_route(
        "/datasets/{dataset_id}",
        methods=["GET", "HEAD"],
        summary="The dataset's landing page (every version), content-negotiated",
        tags=["metadata"],
        responses={406: {"description": "no offered media type is acceptable"}},
    )
    def dataset_page(
        request: Request,
        dataset_id: DatasetIdParam,
        format_name: FormatParam = None,
        authorization: AuthHeader = None,
    ) -> Response:
        media = _chosen_type(request, format_name)
        found = api.find(dataset_id)
        _may_read_metadata(api, authorization, found.dataset, None)
        page = _concept_landing(found)
        return _represent(page, found, media, concept=True, document=format_name is not None)

    @app.api_route(
        "/datasets/{dataset_id}/versions/{version}",
        methods=["GET", "HEAD"],
        summary="One version's landing page, content-negotiated",
        tags=["metadata"],
        responses={406: {"description": "no offered media type is acceptable"}},
    )
    def version_page(
        request: Request,
        dataset_id: DatasetIdParam,
        version: VersionParam,
        format_name: FormatParam = None,
        authorization: AuthHeader = None,
    ) -> Response:
        media = _chosen_type(request, format_name)
        found = api.find(dataset_id)
        v = api.version(found, version)
        _may_read_metadata(api, authorization, found.dataset, v)
        page = _version_landing(found, v)
        return _represent(page, found, media, concept=False, document=format_name is not None)

    @app.api_route(
        "/datasets/{dataset_id}/linkset",
        methods=["GET", "HEAD"],
        summary="FAIR Signposting level 2: the dataset's linkset (RFC 9264)",
        tags=["metadata"],
    )
    def dataset_linkset(dataset_id: DatasetIdParam, authorization: AuthHeader = None) -> Response:
        found = api.find(dataset_id)
        _may_read_metadata(api, authorization, found.dataset, None)
        pages = [_concept_landing(found)] + [
            _version_landing(found, v) for v in found.state.versions if v.status != "pending"
        ]
        body = json.dumps(formats.linkset(pages), indent=2)
        return Response(body, media_type=formats.LINKSET_JSON)

    @app.get(
        "/datasets/{dataset_id}/versions/{version}/data",
        summary="Download a version's rows (token, purpose and policy permit needed)",
        tags=["data"],
        response_class=StreamingResponse,
        responses={
            200: {
                "content": {m: {} for m in downloads.MEDIA_TYPES.values()},
                "description": "the rows; withheld columns are named in X-Spanda-Columns-Withheld",
            },
            401: {"description": "no valid token"},
            403: {"description": "the policy denies it; the reasons say why"},
            410: {"description": "the version was withdrawn"},
        },
    )
    def download(
        dataset_id: DatasetIdParam,
        version: VersionParam,
        fmt: Annotated[str, Query(alias="format", pattern="^(parquet|csv|arrow)$")] = "parquet",
        columns: Annotated[
            str | None, Query(max_length=MAX_COLUMNS_PARAM, description="a,b,c")
        ] = None,
        row_filter: Annotated[
            str | None,
            Query(
                alias="filter",
                max_length=2_000,
                description="e.g. course_id = 'c3' and created_at_year >= 2024",
            ),
        ] = None,
        purpose_query: PurposeQuery = None,
        purpose_header: PurposeHeader = None,
        authorization: AuthHeader = None,
    ) -> Response:
        principal = _principal(api, authorization)
        found = api.find(dataset_id)
        v = api.version(found, version)
        if v.status == "withdrawn":
            raise ApiError(
                410, f"version {version} of {dataset_id!r} was withdrawn: {v.withdrawn_reason}"
            )
        requested = _requested_columns(columns, v.columns)
        wanted = requested or list(v.columns)
        # One decision over every column of the version, before anything else is read:
        # the filter's columns are then checked against it, and a caller the policy
        # refuses learns nothing about the table (its schema, its snapshot) first.
        undeclared = [c for c in v.columns if c not in found.dataset.columns]
        decision = api.access.authorize(
            principal,
            "download",
            found.dataset,
            version=v.version,
            snapshot_id=v.snapshot_id,
            purpose=_purpose(purpose_header, purpose_query),
            consent_state="current",
            columns=[c for c in v.columns if c not in undeclared],
        )
        if not decision.allowed:
            raise _forbidden(decision, f"downloading {dataset_id!r} version {version}")
        # A column the declaration no longer describes (dropped since this version) has
        # no access rule today: withheld, never public by default.
        denied = set(decision.columns_denied) | set(undeclared)
        table = None
        parsed = None
        if row_filter is not None:
            table = _load_version_table(api, found, v)
            schema = downloads.snapshot_schema(table, v.snapshot_id)
            types = {k: t for k, t in column_types(schema.fields).items() if k in v.columns}
            parsed = parse_filter(row_filter, types)
            if blind := [c for c in parsed.columns if c in denied]:
                raise ApiError(
                    403,
                    f"the filter reads column(s) {', '.join(blind)}, which you may not read; "
                    "a filter on them would reveal their values (the decision is in the "
                    "audit log, with these columns denied)",
                )
        out_columns = [c for c in wanted if c not in denied]
        if not out_columns:
            raise ApiError(
                403,
                f"every requested column of {dataset_id!r} is withheld from you: "
                + ", ".join(wanted),
                reasons=list(decision.reasons),
            )
        withheld = [c for c in wanted if c in denied]
        name = f"{dataset_id}-v{version}.{downloads.EXTENSIONS[fmt]}"
        headers = {
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Spanda-Snapshot-Id": str(v.snapshot_id),
            "Link": formats.link_header(
                [
                    formats.Link(formats.doi_url(v.doi), "cite-as"),
                    formats.Link(landing_url(dataset_id, version), "collection", formats.HTML),
                ]
            ),
        }
        if withheld:
            headers["X-Spanda-Columns-Withheld"] = ",".join(withheld)
        if requested is None and parsed is None and not withheld and fmt in ("parquet", "csv"):
            path, d = _published_file(api, v, fmt)
            headers["ETag"] = f'"{d["sha256"]}"'
            headers["Repr-Digest"] = f"sha-256=:{_b64(d['sha256'])}:"
            return FileResponse(path, media_type=downloads.MEDIA_TYPES[fmt], headers=headers)
        if table is None:
            table = _load_version_table(api, found, v)
        chunks = downloads.stream(
            table, v.snapshot_id, out_columns, fmt, parsed.expression if parsed else None
        )
        # The first chunk is made before the status line goes out: planning the scan and
        # reading the first file fail here, as an answer with a reason, not as a 200
        # whose body stops short.
        try:
            first = next(chunks, b"")
        except (ValueError, TypeError, ArithmeticError, pa.ArrowException) as exc:
            raise ApiError(
                400, f"the filter cannot be applied to {dataset_id!r} version {version}: {exc}"
            ) from exc
        except FileNotFoundError as exc:
            raise ApiError(
                410,
                f"a data file of {dataset_id!r} version {version} is gone from the "
                "warehouse; the version's published files may still be downloaded without "
                "columns or filter",
            ) from exc
        return StreamingResponse(
            _prepend(first, chunks), media_type=downloads.MEDIA_TYPES[fmt], headers=headers
        )

    @app.get("/search", summary="Search published datasets' metadata", tags=["metadata"])
    def search(
        q: Annotated[str, Query(max_length=500, description="free text")] = "",
        facet: Annotated[
            list[str] | None,
            Query(description="key=value (subject, licence, grade_level, year); repeatable"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        all_versions: bool = False,
    ) -> Response:

        try:
            facets = parse_facet_pairs(facet or [])
        except FacetSyntaxError as exc:
            raise ApiError(400, str(exc)) from exc
        if sum(len(v) for v in facets.values()) > 50 or any(
            len(v) > 200 for vs in facets.values() for v in vs
        ):
            raise ApiError(400, "facet: at most 50 values of at most 200 characters each")
        try:
            results = api.index().search(
                q, facets, limit=limit, offset=offset, latest_only=not all_versions
            )
        except SearchIndexError as exc:
            raise ApiError(503, f"the search index cannot be read: {exc}") from exc
        except SpandaError as exc:  # the query itself (an unknown facet, ...)
            raise ApiError(400, str(exc)) from exc
        return Response(results.to_json(), media_type="application/json")

    @app.get(
        "/oai",
        summary="OAI-PMH 2.0 (oai_dc, oai_datacite)",
        tags=["metadata"],
        response_class=Response,
        responses={200: {"content": {"text/xml": {}}}},
    )
    def oai(request: Request) -> Response:

        args: dict[str, str | list[str]] = {}
        for key, value in request.query_params.multi_items():
            if len(value) > 2_000:
                raise ApiError(400, f"OAI-PMH argument {key!r} is longer than 2000 characters")
            previous = args.get(key)
            if previous is None:
                args[key] = value
            else:
                args[key] = [*([previous] if isinstance(previous, str) else previous), value]
        config = _oai_config(api)
        status, body = oai_pmh.respond(args, api.index(), config, datacite_xml=to_xml)
        return Response(body, status, media_type="text/xml; charset=utf-8")

    _export_routes(app, api)
    return app


def _oai_config(api: Api) -> oai_pmh.OaiConfig:

    first = next(iter(api.datasets.values()), None)
    name = first.publisher.name if first else "Spanda"
    email = os.environ.get(ENV_ADMIN_EMAIL) or DEFAULT_ADMIN_EMAIL
    return oai_pmh.OaiConfig(f"{name} (Spanda)", f"{public_url()}/oai", (email,))


def _load_version_table(api: Api, found: _Found, v: PublishedVersion) -> Any:

    table = load_table_or_none(api.catalog(), *found.dataset.identifier)
    if table is None or table.snapshot_by_id(v.snapshot_id) is None:
        raise ApiError(
            410,
            f"the snapshot of {found.dataset.id!r} version {v.version} is gone from "
            f"{found.dataset.table}; the version's published files are all that remain",
        )
    return table


def _export_routes(app: FastAPI, api: Api) -> None:
    """`/exports`: the OneRoster and xAPI packages (export/* assets), for readers the policy
    permits every dataset and column they derive from: an export has a fixed layout and
    cannot be masked."""

    by_table = {d.table: d for d in api.datasets.values()}

    def permitted(kind: str, principal: Principal, purpose: str | None) -> Any:
        """The export, if the policy permits every column of every table it read; the
        datasets are found from the tables the export names (not from its own list), and
        an export that names none, or a table no dataset declares, is refused."""
        try:
            info = latest_export(kind)
        except (SpandaError, ValueError, KeyError, TypeError) as exc:
            raise ApiError(503, f"the {kind} export's manifest cannot be read: {exc}") from exc
        if info is None:
            raise ApiError(404, f"no {kind} export yet: the export/{kind} asset has not run")
        undeclared = sorted(t for t in info.sources if t not in by_table)
        if not info.sources or undeclared:
            raise ApiError(
                403,
                f"the {kind} export is not served: it reads "
                + (", ".join(undeclared) or "no table")
                + ", which no declared dataset covers (config/datasets.yaml)",
            )
        for table_name in sorted(info.sources):
            dataset = by_table[table_name]
            read = list((info.columns or {}).get(table_name) or dataset.columns)
            decision = api.access.authorize(
                principal,
                "export",
                dataset,
                snapshot_id=info.sources[table_name],
                purpose=purpose,
                columns=[c for c in read if c in dataset.columns],
            )
            undescribed = [c for c in read if c not in dataset.columns]
            if not decision.allowed or decision.columns_denied or undescribed:
                withheld = [*decision.columns_denied, *undescribed]
                reasons = list(decision.reasons) or [
                    f"column(s) {', '.join(withheld)} of {dataset.id!r} are withheld from "
                    "you, and an export cannot leave them out"
                ]
                raise ApiError(
                    403,
                    f"the {kind} export is not permitted: " + "; ".join(reasons),
                    reasons=reasons,
                    policies=list(decision.policy_ids),
                )
        return info

    @app.get("/exports/{kind}", summary="An export's files", tags=["data"])
    def export_listing(
        kind: KindParam,
        purpose_query: PurposeQuery = None,
        purpose_header: PurposeHeader = None,
        authorization: AuthHeader = None,
    ) -> dict[str, Any]:
        principal = _principal(api, authorization)
        info = permitted(kind, principal, _purpose(purpose_header, purpose_query))
        base = f"{public_url()}/exports/{kind}"
        return {
            "kind": kind,
            "created": info.created,
            "sources": info.sources,
            "files": [asdict(f) | {"url": f"{base}/{f.name}"} for f in info.files],
        }

    @app.get("/exports/{kind}/{file_name}", summary="One file of an export", tags=["data"])
    def export_file(
        kind: KindParam,
        file_name: FileNameParam,
        purpose_query: PurposeQuery = None,
        purpose_header: PurposeHeader = None,
        authorization: AuthHeader = None,
    ) -> FileResponse:
        principal = _principal(api, authorization)
        info = permitted(kind, principal, _purpose(purpose_header, purpose_query))
        entry = next((f for f in info.files if f.name == file_name), None)
        if entry is None:  # only names the export lists: no path is built from the request
            raise ApiError(404, f"the {kind} export has no file {file_name!r}")
        return FileResponse(
            info.directory / entry.name,
            media_type=entry.media_type,
            headers={
                "ETag": f'"{entry.sha256}"',
                "Repr-Digest": f"sha-256=:{_b64(entry.sha256)}:",
            },
        )
