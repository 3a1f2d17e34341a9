"""Spanda's starter dashboard in Superset, built through Superset's REST API (v1).

`build_dashboard` logs in (JWT access token, then a CSRF token for the writes), then
creates or updates, in this order:

1. the database "Spanda lakehouse": DuckDB on the BI file (lib/bi/refresh.py), read-only,
   with the file's extension directory; SQL Lab may query it, never write (no DML, CTAS,
   uploads), and Superset's configuration locks its files (lib/bi/superset_config.py);
2. one physical dataset per table a chart reads (gold.validated_posts, gold.quarantine,
   gold.dq_history, gold.post_predictions), its columns refreshed from the file;
3. the four charts, each saved with its query context, so `/api/v1/chart/{id}/data`
   answers the chart's own query;
4. the dashboard "spanda-overview" laying them out.

Every object carries a fixed UUID (uuid5 of its Spanda name): a second run finds it by
UUID and updates it, so re-running never duplicates anything, and objects a person made
in the UI beside them are left alone. Credentials come from the environment and are
never printed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from spanda_assets.lib.bi.refresh import extension_directory
from spanda_assets.lib.errors import SpandaError

ENV_URL = "SPANDA_SUPERSET_URL"
ENV_USERNAME = "SPANDA_SUPERSET_USERNAME"
ENV_PASSWORD = "SPANDA_SUPERSET_PASSWORD"  # the variable's name

DATABASE_NAME = "Spanda lakehouse"
DASHBOARD_TITLE = "Spanda: data, quality and model"
DASHBOARD_SLUG = "spanda-overview"
_NAMESPACE = uuid.UUID("6f1d2f43-5b8e-4f0e-9a55-5c2b1f0e7a34")  # Spanda's BI objects


class SupersetError(SpandaError):
    """Superset refused a call, or answered something the build cannot use."""


def object_uuid(kind: str, name: str) -> str:
    """The fixed UUID of one of Spanda's Superset objects: how a re-run finds it."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{name}"))


# ------------------------------------------------------------------------------ charts


@dataclass(frozen=True)
class Metric:
    label: str
    sql: str

    def adhoc(self) -> dict[str, Any]:
        return {
            "expressionType": "SQL",
            "sqlExpression": self.sql,
            "label": self.label,
            "hasCustomLabel": True,
            "optionName": f"metric_{self.label}",
        }


@dataclass(frozen=True)
class ChartSpec:
    """One chart: an aggregate (`columns` x `metrics`) over one exposed table."""

    key: str
    name: str
    table: str  # gold.<table>
    viz_type: str
    columns: tuple[str, ...]
    metrics: tuple[Metric, ...]
    description: str
    width: int = 6
    height: int = 50
    form: dict[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]

    def params(self, dataset_id: int) -> dict[str, Any]:
        """The chart's form data, as the Explore view saves it."""
        metrics = [m.adhoc() for m in self.metrics]
        base: dict[str, Any] = {
            "datasource": f"{dataset_id}__table",
            "viz_type": self.viz_type,
            "adhoc_filters": [],
            "row_limit": 10_000,
        }
        if self.viz_type == "big_number_total":
            base["metric"] = metrics[0]
        elif self.viz_type == "table":
            base.update(
                query_mode="aggregate",
                groupby=list(self.columns),
                metrics=metrics,
                all_columns=[],
                order_desc=True,
                table_timestamp_format="smart_date",
            )
        else:  # a bar chart: first column on the x axis, the rest as series
            base.update(
                x_axis=self.columns[0],
                groupby=list(self.columns[1:]),
                metrics=metrics,
                x_axis_sort_asc=True,
                show_legend=True,
                rich_tooltip=True,
                orientation="vertical",
            )
        base.update(self.form)
        return base

    def query_context(self, dataset_id: int) -> dict[str, Any]:
        """The query the chart's data endpoint runs: the plain aggregate, one row per
        group (what the tests compare with a pyiceberg scan of the same snapshot)."""
        metrics = [m.adhoc() for m in self.metrics]
        return {
            "datasource": {"id": dataset_id, "type": "table"},
            "force": False,
            "queries": [
                {
                    "columns": list(self.columns),
                    "metrics": metrics,
                    "orderby": [[c, True] for c in self.columns] or [],
                    "filters": [],
                    "extras": {"having": "", "where": ""},
                    "row_limit": 10_000,
                    "is_timeseries": False,
                }
            ],
            "form_data": self.params(dataset_id),
            "result_format": "json",
            "result_type": "full",
        }


RATE = "AVG(CASE WHEN {} THEN 1.0 ELSE 0.0 END)"

CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec(
        key="posts_per_course",
        name="Posts per course per year",
        table="gold.validated_posts",
        viz_type="echarts_timeseries_bar",
        columns=("course_id", "created_at_year"),
        metrics=(Metric("posts", "COUNT(*)"),),
        description=(
            "Validated forum posts per course, by the year they were written. Posts "
            "leave bronze with the year only (Safe Harbor: no finer date element), so a "
            "year is the finest time grain any dashboard can show."
        ),
        form={"y_axis_title": "posts", "y_axis_title_margin": 30},
    ),
    ChartSpec(
        key="quarantine_reasons",
        name="Quarantine reasons",
        table="gold.quarantine",
        viz_type="echarts_timeseries_bar",
        columns=("reason", "table_name"),
        metrics=(Metric("rows", "COUNT(*)"),),
        description=(
            "Rows gold holds back, by the rule they failed and the table: what to fix at "
            "the source (gold.quarantine holds keys and reasons, never a row's content)."
        ),
        form={"orientation": "horizontal"},
    ),
    ChartSpec(
        key="check_pass_rates",
        name="Check pass rates",
        table="gold.dq_history",
        viz_type="table",
        columns=("table_name", "check_name"),
        metrics=(
            Metric("runs", "COUNT(*)"),
            Metric("runs_passed_share", RATE.format("passed")),
            Metric("mean_row_pass_rate", "AVG(pass_rate)"),
        ),
        description=(
            "Every data-quality check run (gold.dq_history): how many runs, the share that "
            "passed, and the mean share of rows or expectations that passed."
        ),
        form={
            "column_config": {
                "runs_passed_share": {"d3NumberFormat": ".0%"},
                "mean_row_pass_rate": {"d3NumberFormat": ".1%"},
            }
        },
    ),
    ChartSpec(
        key="urgency_rate",
        name="Model urgency rate",
        table="gold.post_predictions",
        viz_type="big_number_total",
        columns=(),
        metrics=(Metric("urgency_rate", RATE.format("label = 'urgent'")),),
        description=(
            "Share of scored posts the champion post_urgency model labels urgent "
            "(gold.post_predictions)."
        ),
        form={"y_axis_format": ".1%", "subheader": "of scored posts predicted urgent"},
    ),
)


# ------------------------------------------------------------------------------ client


def rison(value: Any) -> str:
    """Rison, the URL-friendly JSON Superset's list endpoints take in `q` (strings are
    always quoted, which Rison allows for every string)."""
    if value is True:
        return "!t"
    if value is False:
        return "!f"
    if value is None:
        return "!n"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return "'" + value.replace("!", "!!").replace("'", "!'") + "'"
    if isinstance(value, list | tuple):
        return "!(" + ",".join(rison(v) for v in value) + ")"
    if isinstance(value, dict):
        return "(" + ",".join(f"{k}:{rison(v)}" for k, v in value.items()) + ")"
    raise TypeError(f"cannot write {type(value).__name__} as Rison")


class SupersetClient:
    """A logged-in session on Superset's REST API: a JWT bearer token for every call, and
    the session cookie plus CSRF token that Superset's CSRF protection wants on writes."""

    def __init__(
        self, url: str, username: str, password: str, timeout: float = 60, verify: bool = True
    ) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify)
        try:
            login = self.http.post(
                "/api/v1/security/login",
                json={"username": username, "password": password, "provider": "db"},
            )
        except httpx.HTTPError as exc:
            self.http.close()
            raise SupersetError(f"Superset at {self.url} does not answer: {exc}") from None
        if login.status_code != 200:
            self.http.close()
            # the answer names no credential; neither does this message
            raise SupersetError(
                f"Superset at {self.url} refused the login ({login.status_code}): check "
                f"{ENV_USERNAME} and {ENV_PASSWORD}"
            )
        self.http.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
        csrf = self.call("GET", "/api/v1/security/csrf_token/")
        self.http.headers["X-CSRFToken"] = str(csrf["result"])
        self.http.headers["Referer"] = self.url + "/"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SupersetClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        response = self.http.request(method, path, json=body, params=params)
        if response.status_code >= 400:
            raise SupersetError(
                f"{method} {path} answered {response.status_code}: {response.text[:1000]}"
            )
        return response.json() if response.content else {}

    def find(self, resource: str, object_id: str) -> dict[str, Any] | None:
        """The object of `resource` (chart, dataset, ...) with this UUID, if any."""
        q = rison({"filters": [{"col": "uuid", "opr": "eq", "value": object_id}]})
        found = self.call("GET", f"/api/v1/{resource}/", params={"q": q})
        rows = found.get("result", [])
        return rows[0] if rows else None

    def upsert(
        self, resource: str, object_id: str, body: dict[str, Any], changed: list[str]
    ) -> int:
        """Create the object, or update the one with this UUID; returns its id."""
        existing = self.find(resource, object_id)
        if existing is None:
            created = self.call("POST", f"/api/v1/{resource}/", {**body, "uuid": object_id})
            changed.append(f"created {resource} {created['id']}")
            return int(created["id"])
        pk = int(existing["id"])
        self.call("PUT", f"/api/v1/{resource}/{pk}", body)
        changed.append(f"updated {resource} {pk}")
        return pk

    def chart_data(self, chart_id: int) -> list[dict[str, Any]]:
        """The rows of the chart's saved query (its first query)."""
        answer = self.call("GET", f"/api/v1/chart/{chart_id}/data/", params={"format": "json"})
        return list(answer["result"][0]["data"])


# ------------------------------------------------------------------------------ build


@dataclass
class Built:
    database_id: int
    datasets: dict[str, int]
    charts: dict[str, int]
    dashboard_id: int
    dashboard_url: str
    changes: list[str] = field(default_factory=list)


def database_body(bi_file: Path) -> dict[str, Any]:
    """The DuckDB connection: the BI file read-only, the extension directory beside it,
    nothing installed or autoloaded (superset_config.py loads and locks)."""
    path = bi_file.resolve()
    config = {
        "extension_directory": str(extension_directory(path)),
        "home_directory": str(path.parent),
        "temp_directory": str(path.parent / "tmp"),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
    }
    extra = {
        "engine_params": {"connect_args": {"read_only": True, "config": config}},
        "metadata_params": {},
        "schemas_allowed_for_file_upload": [],
    }
    return {
        "database_name": DATABASE_NAME,
        "sqlalchemy_uri": f"duckdb:///{path}",
        "expose_in_sqllab": True,
        "allow_dml": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_file_upload": False,
        "allow_run_async": False,
        "extra": json.dumps(extra),
    }


def _position(charts: list[tuple[ChartSpec, int]]) -> dict[str, Any]:
    """The dashboard layout: two charts a row, each its spec's width."""
    layout: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": DASHBOARD_TITLE}},
    }
    for start in range(0, len(charts), 2):
        row_id = f"ROW-{start // 2 + 1}"
        layout["GRID_ID"]["children"].append(row_id)
        row: dict[str, Any] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for spec, chart_id in charts[start : start + 2]:
            node_id = f"CHART-{spec.key}"
            row["children"].append(node_id)
            layout[node_id] = {
                "type": "CHART",
                "id": node_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": spec.width,
                    "height": spec.height,
                    "chartId": chart_id,
                    "sliceName": spec.name,
                    "uuid": object_uuid("chart", spec.key),
                },
            }
        layout[row_id] = row
    return layout


def build_dashboard(
    client: SupersetClient,
    bi_file: Path,
    charts: tuple[ChartSpec, ...] = CHARTS,
    log: Callable[[str], None] = lambda _: None,
) -> Built:
    """Create or update the database, datasets, charts and dashboard (idempotent)."""
    changes: list[str] = []
    database_id = client.upsert(
        "database", object_uuid("database", DATABASE_NAME), database_body(bi_file), changes
    )
    log(f"database {DATABASE_NAME!r}: id {database_id}")
    datasets: dict[str, int] = {}
    for spec in charts:
        if spec.table in datasets:
            continue
        body = {"database": database_id, "schema": spec.schema, "table_name": spec.table_name}
        dataset_uuid = object_uuid("dataset", spec.table)
        existing = client.find("dataset", dataset_uuid)
        if existing is None:
            created = client.call("POST", "/api/v1/dataset/", {**body, "uuid": dataset_uuid})
            pk = int(created["id"])
            changes.append(f"created dataset {pk}")
        else:
            pk = int(existing["id"])
            update = {"database_id": database_id, "schema": spec.schema}
            update["table_name"] = spec.table_name
            client.call("PUT", f"/api/v1/dataset/{pk}", update)
            changes.append(f"updated dataset {pk}")
        # the columns as the file has them now (a table may have gained one)
        client.call("PUT", f"/api/v1/dataset/{pk}/refresh")
        datasets[spec.table] = pk
        log(f"dataset {spec.table}: id {pk}")

    dashboard_uuid = object_uuid("dashboard", DASHBOARD_SLUG)
    dashboard_body = {
        "dashboard_title": DASHBOARD_TITLE,
        "slug": DASHBOARD_SLUG,
        "published": True,
    }
    dashboard_id = client.upsert("dashboard", dashboard_uuid, dashboard_body, changes)

    chart_ids: dict[str, int] = {}
    for spec in charts:
        dataset_id = datasets[spec.table]
        body = {
            "slice_name": spec.name,
            "description": spec.description,
            "viz_type": spec.viz_type,
            "datasource_id": dataset_id,
            "datasource_type": "table",
            "params": json.dumps(spec.params(dataset_id)),
            "query_context": json.dumps(spec.query_context(dataset_id)),
            "query_context_generation": False,
            "dashboards": [dashboard_id],
        }
        chart_ids[spec.key] = client.upsert("chart", object_uuid("chart", spec.key), body, changes)
        log(f"chart {spec.name!r}: id {chart_ids[spec.key]}")

    layout = _position([(spec, chart_ids[spec.key]) for spec in charts])
    metadata = {
        "color_scheme": "supersetColors",
        "refresh_frequency": 0,
        "cross_filters_enabled": False,
        "native_filter_configuration": [],
        "positions": layout,
    }
    client.call(
        "PUT",
        f"/api/v1/dashboard/{dashboard_id}",
        {
            **dashboard_body,
            "position_json": json.dumps(layout),
            "json_metadata": json.dumps(metadata),
        },
    )
    url = f"{client.url}/superset/dashboard/{DASHBOARD_SLUG}/"
    log(f"dashboard {DASHBOARD_TITLE!r}: {url}")
    return Built(database_id, datasets, chart_ids, dashboard_id, url, changes)
