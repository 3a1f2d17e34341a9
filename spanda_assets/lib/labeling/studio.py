"""Label Studio over its REST API (label-studio-sdk 2.x): the annotation server's side of
the labeled set.

What the platform asks of the server is small, and each call here is one of them:

* provision the project idempotently (title, label config, sampling order), and
  report a label config someone changed by hand in the UI instead of overwriting it;
* push tasks, each with its pre-label inline (one request per batch: the import
  endpoint returns no task ids, so identity is the post's pseudonymous key kept in
  the task's data, and re-runs skip keys the project already holds);
* read back the tasks whose annotations changed after a watermark, in Label
  Studio's own export format, so the same resolution code reads the server and the
  local store (lib/labeling);
* delete the tasks (and with them the annotations) of posts whose student withdrew
  consent.

Errors name what to fix and carry no secret: an unreachable server or a refused
token raises `LabelStudioError` before anything is written, so the next run starts
from the same state.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
from pydantic import ValidationError

from spanda_assets.lib.errors import SpandaError, redact_url
from spanda_assets.lib.labeling.lsformat import (
    REVIEW_META,
    WATERMARK_OVERLAP,
    Changes,
    Task,
    annotation_table,
    choice_result,
    dump_tasks,
    read_tasks,
    review_meta,
)
from spanda_assets.lib.labeling.store import AddResult, ImportResult, write_atomically

ENV_URL = "LABEL_STUDIO_URL"
ENV_API_KEY = "LABEL_STUDIO_API_KEY"
ENV_PROJECT = "LABEL_STUDIO_PROJECT"  # the project's title; one platform, one project
PROJECT_TITLE = "Spanda: does this post need an instructor today?"
# Tasks are served in the order they are pushed, which is the platform's uncertainty
# order (lib/labeling): lowest margin first, plus a random share for evaluation.
SAMPLING = "Sequential sampling"
LABELS = ("urgent", "not_urgent")
PUSH_BATCH = 500
REVIEW_VIEW = "Spanda review: likely mislabeled"
# The SDK retries a POST after a timeout or a 5xx; a retried import can create the same
# tasks twice. Creating calls are not retried: the next run pushes what is missing.
NO_RETRY = {"max_retries": 0}
# Label Studio filters datetimes in this one format (microseconds and a literal Z).
_LS_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


class LabelStudioError(SpandaError):
    """The server is unreachable, refused the token, or answered something unusable."""


def label_config() -> str:
    """The packaged labeling interface: urgent / not_urgent and an optional note."""
    return (
        resources.files("spanda_assets.config")
        .joinpath("label_config.xml")
        .read_text(encoding="utf-8")
    )


def config_hash(config: str) -> str:
    """Identity of a label config, blind to whitespace between tags (the UI's editor
    reformats what it saves)."""
    canonical = re.sub(r">\s+<", "><", config.strip())
    canonical = re.sub(r"\s+", " ", canonical)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Project:
    id: int
    created: bool
    config_hash: str
    # Set when the project's label config is not the packaged one: it was edited in
    # the UI. The platform reports it and leaves the project as it is.
    config_drift: str | None = None


def ls_time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime(_LS_TIME)


def parse_time(value: str | dt.datetime) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def _prediction(row: Mapping[str, Any]) -> dict[str, Any] | None:
    label = row.get("prelabel")
    if not label:
        return None
    return {
        "model_version": str(row.get("model_version") or ""),
        "score": row.get("confidence"),
        "result": [r.model_dump(mode="json") for r in choice_result(label)],
    }


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date | dt.datetime) else value


def _export_shape(task: dict[str, Any]) -> dict[str, Any]:
    """A task as the API lists it, in the export format's shape: the fields the
    platform reads, annotations and predictions as Label Studio exports them."""
    keep = ("id", "completed_by", "result", "was_cancelled", "ground_truth")
    annotations = [
        {
            **{k: a.get(k) for k in keep},
            # an annotator whose account was deleted: the annotation still counts
            "completed_by": a.get("completed_by")
            if a.get("completed_by") is not None
            else "deleted-user",
            "created_at": a.get("created_at"),
            "updated_at": a.get("updated_at") or a.get("created_at"),
            "lead_time": a.get("lead_time"),
        }
        for a in task.get("annotations") or []
    ]
    predictions = [
        {
            "id": p.get("id"),
            "model_version": p.get("model_version") or "",
            "score": p.get("score"),
            "result": p.get("result") or [],
        }
        for p in sorted(
            task.get("predictions") or [], key=lambda p: (str(p.get("created_at")), p.get("id"))
        )
    ]
    return {
        "id": task["id"],
        "data": task["data"],
        "annotations": annotations,
        "predictions": predictions,
    }


def _annotator_email(who: Any) -> str:
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    text = str(who)
    return text if "@" in text else f"annotator-{text}@imported.invalid"


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    dumped: dict[str, Any] = obj.model_dump(mode="json")
    return dumped


class Studio:
    """One Label Studio project, reached with a legacy API token or a personal access
    token (the SDK exchanges a personal access token for short-lived access tokens)."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 30.0) -> None:
        from label_studio_sdk import LabelStudio

        if not url:
            raise LabelStudioError(f"{ENV_URL} is not set: give the Label Studio server's URL")
        if not api_key:
            raise LabelStudioError(
                f"{ENV_API_KEY} is not set: use an access token from the Label Studio "
                "account page (legacy token or personal access token)"
            )
        self.url = redact_url(url.rstrip("/"))  # what messages show
        base = url.rstrip("/")
        self._base = base
        # A personal access token is exchanged for an access token right here, so a
        # refused or expired one fails in the constructor: same clear error as any call.
        self._client = self._call(
            "exchange the personal access token",
            LabelStudio,
            base_url=base,
            api_key=api_key,
            timeout=timeout,
        )
        self.project_id: int | None = None

    # ------------------------------------------------------------------ errors

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one API call; turn transport and auth failures into a clear error."""
        from label_studio_sdk.core.api_error import ApiError

        try:
            return fn(*args, **kwargs)
        except (httpx.ConnectError, httpx.TimeoutException) as exc:
            raise LabelStudioError(
                f"Label Studio at {self.url} is not reachable ({type(exc).__name__}) while "
                f"trying to {what}. Start the server or fix {ENV_URL}; nothing was written, "
                "and the next run starts again from the same watermark."
            ) from None
        except ApiError as exc:
            if exc.status_code in (401, 403):
                raise LabelStudioError(
                    f"Label Studio at {self.url} refused the token in {ENV_API_KEY} "
                    f"(HTTP {exc.status_code}) while trying to {what}. Use a personal access "
                    "token, or a legacy token on a server started with "
                    "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true."
                ) from None
            detail = exc.body.get("detail") if isinstance(exc.body, dict) else exc.body
            raise LabelStudioError(
                f"Label Studio at {self.url} answered HTTP {exc.status_code} while trying to "
                f"{what}: {str(detail)[:300]}"
            ) from None

    def check(self) -> str:
        """Who the token belongs to: proves the server is up and the token good."""
        me = self._call("check the token", self._client.users.whoami)
        return str(getattr(me, "email", "") or getattr(me, "username", ""))

    # ------------------------------------------------------------------ project

    def provision(self, title: str = PROJECT_TITLE, config: str | None = None) -> Project:
        """The project with `title`, created with the packaged label config when
        missing. An existing project's config is compared, not overwritten."""
        config = config or label_config()
        want = config_hash(config)
        found = [
            p
            for p in self._call("list projects", self._client.projects.list, title=title)
            if p.title == title
        ]
        if found:
            project = min(found, key=lambda p: p.id)
            self.project_id = int(project.id)
            have = config_hash(project.label_config or "")
            drift = None
            if have != want:
                drift = (
                    f"the label config of Label Studio project {project.id} ({title!r}) was "
                    f"changed outside the platform (hash {have}, packaged {want}); it is left "
                    "as it is. Restore the packaged config in the project's settings, or "
                    "change spanda_assets/config/label_config.xml to match and redeploy."
                )
            return Project(self.project_id, False, have, drift)
        project = self._call(
            "create the project",
            self._client.projects.create,
            title=title,
            label_config=config,
            sampling=SAMPLING,
            description="Urgency of de-identified forum posts, pushed by the Spanda platform.",
        )
        self.project_id = int(project.id)
        return Project(self.project_id, True, want)

    def _project(self) -> int:
        if self.project_id is None:
            raise LabelStudioError("no project: call provision() first")
        return self.project_id

    # ------------------------------------------------------------------ tasks

    def tasks(self, query: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every task of the project (paged), as Label Studio exports it."""
        kwargs: dict[str, Any] = {"project": self._project(), "fields": "all", "page_size": 200}
        if query is not None:
            kwargs["query"] = json.dumps(query)
        pager = iter(self._call("list tasks", self._client.tasks.list, **kwargs))
        while True:
            # Pages after the first are fetched while iterating: the same error mapping.
            task = self._call("list tasks", next, pager, None)
            if task is None:
                return
            yield _as_dict(task)

    def task_ids(self) -> dict[str, list[int]]:
        """post_key → the ids of its tasks (one, unless someone imported a post twice)."""
        out: dict[str, list[int]] = {}
        for task in self.tasks():
            key = (task.get("data") or {}).get("post_key")
            if key:
                out.setdefault(str(key), []).append(int(task["id"]))
        return out

    def task_keys(self) -> set[str]:
        return set(self.task_ids())

    def add_tasks(
        self, posts: pa.Table | Iterable[pa.RecordBatch], *, data_columns: tuple[str, ...] = ()
    ) -> AddResult:
        """Import a task per post the project does not hold yet, its pre-label inline
        (one request per batch); on a known post whose prediction came from another
        model version, add the new prediction. Same contract as the local store's."""
        known: dict[str, tuple[int, set[str]]] = {}
        for task in self.tasks():
            key = (task.get("data") or {}).get("post_key")
            if key:
                versions = {str(p.get("model_version") or "") for p in task.get("predictions", [])}
                known[str(key)] = (int(task["id"]), versions)
        skipped = 0
        batches = posts.to_batches() if isinstance(posts, pa.Table) else posts
        added = replaced = unchanged = 0
        fresh: list[dict[str, Any]] = []
        versions_pushed: set[str] = set()
        for batch in batches:
            for row in batch.to_pylist():
                if row.get("post_key") is None or row.get("body") is None:
                    skipped += 1  # no identity or no text: nothing an annotator can label
                    continue
                key = str(row["post_key"])
                prediction = _prediction(row)
                if prediction is not None:
                    versions_pushed.add(prediction["model_version"])
                if key not in known:
                    data = {"post_key": key, "body": row["body"]}
                    data |= {c: _json_value(row[c]) for c in data_columns}
                    fresh.append(
                        {"data": data, **({"predictions": [prediction]} if prediction else {})}
                    )
                    known[key] = (-1, {prediction["model_version"]} if prediction else set())
                    if len(fresh) >= PUSH_BATCH:
                        added += self._import(fresh)
                        fresh = []
                    continue
                task_id, versions = known[key]
                if task_id < 0 or prediction is None or prediction["model_version"] in versions:
                    unchanged += 1
                    continue
                self._call(
                    "add a prediction",
                    self._client.predictions.create,
                    request_options=NO_RETRY,
                    task=task_id,
                    result=prediction["result"],
                    model_version=prediction["model_version"],
                    score=prediction["score"],
                )
                versions.add(prediction["model_version"])
                replaced += 1
        if fresh:
            added += self._import(fresh)
        if len(versions_pushed) == 1:
            # Label Studio shows annotators the predictions of the project's model version.
            self._call(
                "set the project's model version",
                self._client.projects.update,
                id=self._project(),
                model_version=versions_pushed.pop(),
            )
        return AddResult(
            added=added, predictions_replaced=replaced, unchanged=unchanged, skipped=skipped
        )

    def _import(self, payload: list[dict[str, Any]]) -> int:
        result = self._call(
            "import tasks",
            self._client.projects.import_tasks,
            id=self._project(),
            request=payload,
            request_options=NO_RETRY,
        )
        return int(getattr(result, "task_count", 0) or 0)

    def changed_since(self, watermark: dt.datetime | None) -> Changes:
        """Tasks updated after `watermark` less the overlap (an annotation added,
        changed or deleted updates its task), with every annotation they hold now."""
        query = None
        if watermark is not None:
            since = ls_time(watermark - WATERMARK_OVERLAP)
            item = {
                "filter": "filter:tasks:updated_at",
                "operator": "greater",
                "type": "Datetime",
                "value": since,
            }
            query = {"filters": {"conjunction": "and", "items": [item]}}
        tasks: list[Task] = []
        high = watermark
        invalid: list[str] = []
        # The listing is paged, not a snapshot: a task updated while later pages are read
        # must not fall behind the next watermark. The watermark never passes the server's
        # clock at the start of the listing.
        started = self._server_now()
        for raw in self.tasks(query):
            if not (raw.get("data") or {}).get("post_key"):
                continue  # a task someone imported by hand, without a post key
            try:
                task = Task.model_validate(_export_shape(raw))
            except ValidationError as exc:
                invalid.append(f"task {raw.get('id')}: {exc.errors()[0]['msg']}")
                continue
            tasks.append(task)
            stamp = raw.get("updated_at") or raw.get("created_at")
            if stamp:
                updated = parse_time(stamp)
                high = updated if high is None else max(high, updated)
        if high is not None and started is not None:
            high = min(high, started)
        return Changes([t.data.post_key for t in tasks], annotation_table(tasks), high, invalid)

    def _server_now(self) -> dt.datetime | None:
        """The server's clock (its Date header, to the second), None when it has none."""
        try:
            stamp = httpx.get(f"{self._base}/api/version", timeout=10).headers.get("date")
        except httpx.HTTPError:
            return None
        return email.utils.parsedate_to_datetime(stamp) if stamp else None

    def task_texts(self) -> dict[str, str]:
        """post_key -> the text annotators see (the first task of a post)."""
        out: dict[str, str] = {}
        for task in self.tasks():
            data = task.get("data") or {}
            if data.get("post_key") and str(data["post_key"]) not in out:
                out[str(data["post_key"])] = str(data.get("body") or "")
        return out

    def update_texts(self, texts: dict[str, str]) -> int:
        """Replace the text of these posts' tasks; annotations stay."""
        changed = 0
        for task in self.tasks():
            data = dict(task.get("data") or {})
            body = texts.get(str(data.get("post_key")))
            if body is None or body == data.get("body"):
                continue
            data["body"] = body
            self._call("update a task's text", self._client.tasks.update, id=task["id"], data=data)
            changed += 1
        return changed

    def review(self, flags: pa.Table) -> int:
        """Send likely mislabeled posts back for a second look: each flagged task gets
        `meta.spanda_review`, unflagged ones lose it, and the project's Data Manager tab
        REVIEW_VIEW lists exactly the flagged tasks. Only changes are written, so a
        re-run touches nothing (a task update would count as an annotation change)."""
        wanted = {f["post_key"]: review_meta(f) for f in flags.to_pylist()}
        changed = 0
        flagged_ids: list[int] = []
        for task in self.tasks():
            key = (task.get("data") or {}).get("post_key")
            meta = dict(task.get("meta") or {})
            mark = wanted.get(str(key)) if key else None
            if mark is not None:
                flagged_ids.append(int(task["id"]))
            if meta.get(REVIEW_META) == mark:
                continue
            if mark is None:
                meta.pop(REVIEW_META, None)
            else:
                meta[REVIEW_META] = mark
            self._call(
                "mark a task for review", self._client.tasks.update, id=task["id"], meta=meta
            )
            changed += 1
        self._review_view(sorted(flagged_ids))
        return changed

    def _review_view(self, task_ids: list[int]) -> None:
        items = [
            {"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": i}
            for i in task_ids
        ] or [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number", "value": -1}]
        data = {"title": REVIEW_VIEW, "filters": {"conjunction": "or", "items": items}}
        views = self._call("list views", self._client.views.list, project=self._project())
        mine = [v for v in views if (v.data or {}).get("title") == REVIEW_VIEW]
        if not mine:
            self._call(
                "create the review view",
                self._client.views.create,
                project=self._project(),
                data=data,
            )
        elif (mine[0].data or {}).get("filters") != data["filters"]:
            self._call(
                "update the review view",
                self._client.views.update,
                id=str(mine[0].id),
                project=self._project(),
                data=data,
            )

    def export(self, path: Path) -> int:
        """Every task of the project, annotated or not, to `path` in the export format."""
        tasks = [Task.model_validate(_export_shape(raw)) for raw in self.tasks()]
        write_atomically(path, dump_tasks(tasks))
        return len(tasks)

    def import_file(self, path: Path) -> ImportResult:
        """Merge a Label Studio JSON export (e.g. the local store's) into the project,
        keyed by post key. Annotators are matched by e-mail (created when missing); an
        annotator known only by another server's numeric id becomes
        `annotator-<id>@imported.invalid`. An annotation already on the task (same
        annotator and choice) is not added twice, so importing twice adds nothing."""
        incoming = read_tasks(path)  # validated whole before anything is written
        rows = [{"post_key": t.data.post_key, "body": t.data.body} for t in incoming]
        added = self.add_tasks(pa.Table.from_pylist(rows)).added if rows else 0
        by_key = {
            str(raw["data"]["post_key"]): raw
            for raw in self.tasks()
            if (raw.get("data") or {}).get("post_key")
        }
        users: dict[str, int] = {}
        new = present = 0
        for task in incoming:
            raw = by_key[task.data.post_key]
            have = {
                (str(a.get("completed_by")), json.dumps(a.get("result"), sort_keys=True))
                for a in raw.get("annotations") or []
            }
            for a in task.annotations:
                email = _annotator_email(a.completed_by)
                user = users.get(email) or self.user(email)
                users[email] = user
                result = [r.model_dump(mode="json") for r in a.result]
                if (str(user), json.dumps(result, sort_keys=True)) in have:
                    present += 1
                    continue
                self._call(
                    "import an annotation",
                    self._client.annotations.create,
                    id=int(raw["id"]),
                    result=result,
                    completed_by=user,
                    was_cancelled=a.was_cancelled,
                    ground_truth=a.ground_truth,
                    lead_time=a.lead_time,
                    request_options=NO_RETRY,
                )
                have.add((str(user), json.dumps(result, sort_keys=True)))
                new += 1
        return ImportResult(
            tasks_added=added, annotations_added=new, annotations_already_present=present
        )

    def annotate(self, task_id: int, label: str, user_id: int, **fields: Any) -> int:
        """An annotation as user `user_id` (what a simulated annotator does in tests and
        the demo; instructors annotate in the UI)."""
        made = self._call(
            "create an annotation",
            self._client.annotations.create,
            id=task_id,
            result=[r.model_dump(mode="json") for r in choice_result(label)],
            completed_by=user_id,
            request_options=NO_RETRY,
            **fields,
        )
        return int(made.id)

    def delete(self, post_keys: Iterable[str]) -> int:
        """Delete every task of these posts, annotations and predictions with them."""
        ids = self.task_ids()
        deleted = 0
        for key in sorted(set(post_keys)):
            for task_id in ids.get(key, []):
                self._call("delete a task", self._client.tasks.delete, id=task_id)
                deleted += 1
        return deleted

    def user(self, email: str) -> int:
        """The id of the user with `email`, created when missing (simulated annotators)."""
        for u in self._call("list users", self._client.users.list):
            if getattr(u, "email", None) == email:
                return int(u.id)
        made = self._call(
            "create a user",
            self._client.users.create,
            email=email,
            username=email.split("@", maxsplit=1)[0],
        )
        return int(made.id)
