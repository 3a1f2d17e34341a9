"""The Dagster UI as a data engineer sees it: a real webserver and a real (headless) browser.

The demo is materialized first (`spanda demo --no-ui`), then `dagster-webserver`
serves the same instance on a free 127.0.0.1 port and Chromium opens it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from playwright.sync_api import sync_playwright

from spanda_assets.api.webhook import graphql_launcher, make_server
from spanda_assets.definitions import defs
from spanda_assets.lib.publish.datasets import load_datasets
from spanda_assets.lib.validation.contracts import existing_docs
from spanda_assets_tests.servers import free_port, spawned, wait_for_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Not SPANDA_*: the tests' isolation removes those from the environment.
ARTIFACTS_ENV = "UI_ARTIFACTS"


@dataclass(frozen=True)
class DemoRun:
    """The demo as a user ran it: its home and what it printed to the terminal."""

    home: Path
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    home = tmp_path_factory.mktemp("ui-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env.update(SPANDA_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    # The demo switches library progress bars off itself; a setting inherited from the
    # developer's shell must not do it for the demo (nor hide a bar the demo lets through).
    for noise in ("TQDM_DISABLE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"):
        env.pop(noise, None)
    spanda = Path(sys.executable).with_name("spanda")
    done = subprocess.run(
        [str(spanda), "demo", "--no-ui", "--size", "tiny"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    # kept beside the world, for a person reading a failure
    (home / "demo.stdout.log").write_text(done.stdout)
    (home / "demo.stderr.log").write_text(done.stderr)
    return DemoRun(home=home, stdout=done.stdout, stderr=done.stderr)


@pytest.fixture(scope="module")
def ui(demo: DemoRun) -> Iterator[str]:
    home = demo.home
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env.update(SPANDA_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    port = free_port()
    webserver = str(Path(sys.executable).with_name("dagster-webserver"))
    cmd = [webserver, "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
    with spawned(cmd, env, ROOT, home / "webserver.log") as proc:
        wait_for_port(port, 90, proc)
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots a person looks at go: $UI_ARTIFACTS (CI uploads it), else a
    directory under pytest's temporary root. Printed, so a failing run says where."""
    configured = os.environ.get(ARTIFACTS_ENV)
    path = Path(configured) if configured else tmp_path_factory.mktemp("ui-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"UI screenshots in {path}")
    return path


def _dismiss_popups(page: object) -> None:
    """Dagster shows a 'Join the community' dialog on first load."""
    for label in ("Dismiss", "No thanks", "Close", "Skip"):
        button = page.get_by_role("button", name=label)  # type: ignore[attr-defined]
        if button.count():
            button.first.click()


@pytest.fixture
def page() -> Iterator[Any]:
    """A page of a headless Chromium (the system's), closed after the test."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def _open(page: Any, url: str, ready_text: str, first_load: bool = False) -> str:
    """Open `url`, wait until `ready_text` shows, and return the page's text."""
    page.goto(url, wait_until="networkidle")
    if first_load:
        page.wait_for_timeout(1500)  # the community dialog appears a moment after load
    _dismiss_popups(page)
    page.get_by_text(ready_text).first.wait_for(timeout=30_000)
    return str(page.inner_text("body"))


def test_bronze_asset_page_shows_extract_metadata(ui: str, page: Any, tmp_path: Path) -> None:
    body = _open(page, f"{ui}/assets/bronze/forum_posts", "watermark_after", first_load=True)
    page.screenshot(path=str(tmp_path / "forum_posts.png"), full_page=True)
    assert "forum_posts" in body
    # the description is rendered Markdown: code spans lose their backticks
    assert "Incremental extract of dbo.ForumPosts into the Iceberg table bronze.forum_posts" in body
    assert "iceberg_snapshot_id" in body and "rows_added" in body
    assert "data-engineering" in body  # the owner, shown without its "team:" prefix

    listing = _open(page, f"{ui}/assets", "consent_events")
    for name in ("students", "courses", "enrollments", "forum_posts", "assessment_results"):
        assert name in listing


def test_automation_is_visible(ui: str, page: Any) -> None:
    body = _open(page, f"{ui}/automation", "bronze_new_source_rows")
    for name in ("hourly_extract", "spanda_automation", "spanda_alerts", "daily_expiry"):
        assert name in body, name


def test_silver_asset_shows_its_audit_and_freshness(ui: str, page: Any, tmp_path: Path) -> None:
    """A silver table as published: the audit that gated it, the branch it was staged on,
    and its freshness policy."""
    url = f"{ui}/assets/silver/forum_posts"
    overview = _open(page, url, "audit_branch", first_load=True)
    page.screenshot(path=str(tmp_path / "silver_overview.png"), full_page=True)
    assert "silver.forum_posts@audit" in overview
    assert "published" in overview and "iceberg_snapshot_id" in overview
    assert "Freshness" in overview
    checks = _open(page, f"{url}?view=checks", "residual_pii")
    assert "residual_pii" in checks


def test_gold_asset_shows_contracts_and_quarantine(ui: str, page: Any, tmp_path: Path) -> None:
    """What a data engineer checks on a validated table: its contract checks and counts."""
    url = f"{ui}/assets/gold/validated_posts"
    checks = _open(page, f"{url}?view=checks", "gx_soft_signals", first_load=True)
    page.screenshot(path=str(tmp_path / "gold_checks.png"), full_page=True)
    for name in ("pandera_contract", "gx_gates", "gx_soft_signals"):
        assert name in checks
    # each check's latest execution, and the evaluation of the one shown, passed
    assert checks.count("Succeeded") == 3 and "Failed" not in checks
    assert "Passed" in checks

    overview = _open(page, url, "rows_quarantined")
    for key in ("rows_validated", "quality_history", "data_docs", "full_rebuild"):
        assert key in overview, key


def test_labeled_set_shows_its_label_quality_checks(ui: str, page: Any, tmp_path: Path) -> None:
    """The demo's instructors annotated the first batch: the labeled set's page shows its
    audits and the figures a labeling lead looks at."""
    url = f"{ui}/assets/gold/labeled_posts"
    checks = _open(page, f"{url}?view=checks", "annotator_agreement", first_load=True)
    page.screenshot(path=str(tmp_path / "labeled_checks.png"), full_page=True)
    for name in (
        "split_disjoint",
        "minimum_labels_per_class",
        "annotator_agreement",
        "likely_mislabeled",
    ):
        assert name in checks, name
    overview = _open(page, url, "prelabels_accepted")
    for key in ("by_label", "by_annotator", "annotation_watermark", "unresolved_ties"):
        assert key in overview, key


def test_the_model_shows_its_gates_and_lineage(ui: str, page: Any, tmp_path: Path) -> None:
    """The demo trained post_urgency: its page shows every gate as a check, and the
    version, run and lineage a data engineer needs to trace it."""
    url = f"{ui}/assets/model/post_urgency_model"
    checks = _open(page, f"{url}?view=checks", "minimum_functionality", first_load=True)
    page.screenshot(path=str(tmp_path / "model_checks.png"), full_page=True)
    for name in (
        "training_frame_schema",
        "class_balance",
        "no_single_feature_leakage",
        "heldout_f1",
        "invariance",
        "directional",
        "slice_recall_gap",
        "no_regression",
        "champion_consent",
    ):
        assert name in checks, name
    overview = _open(page, url, "frame_digest")
    for key in ("model_version", "mlflow_run_id", "labeled_snapshot_id", "promoted_to_champion"):
        assert key in overview, key


# ----------------------------------------------------------------------------- the lineage

LIVE_QUERY = """query Live($keys: [AssetKeyInput!]!) {
  assetNodes(assetKeys: $keys) {
    assetKey { path } groupName isMaterializable
    partitionStats { numPartitions numMaterialized numMaterializing numFailed }
    assetMaterializations(limit: 1) { runId timestamp }
    assetChecksOrError { ... on AssetChecks { checks {
      name
      executionForLatestMaterialization { status evaluation { severity } }
      partitionStatuses { __typename ... on AssetCheckDefaultPartitionStatuses {
        succeededPartitions failedPartitions executionFailedPartitions
        inProgressPartitions skippedPartitions } }
    } } }
  }
  assetsLatestInfo(assetKeys: $keys) {
    assetKey { path } inProgressRunIds unstartedRunIds latestRun { id status endTime }
  }
}"""

# The graph draws full nodes (status and checks rows) only at 60% zoom or more
# (MINIMAL_SCALE in Dagster's AssetGraphExplorer): one group at a time fits this page.
GROUP_VIEWPORT = {"width": 1800, "height": 2200}
# The whole graph, every group expanded, for the screenshot a person looks at.
GLOBAL_VIEWPORT = {"width": 3200, "height": 2400}

# A full node's rows, read in the page: the asset's name, the links it holds (the asset's
# own pages), and per row its first cell, the rest, the icons and the row's background.
READ_NODES = """() => {
  const view = document.querySelector('[data-svg-viewport]').getBoundingClientRect();
  return Array.from(document.querySelectorAll('[class*="AssetNode_assetNodeBox"]')).map((box) => {
    const r = box.getBoundingClientRect();
    const rows = Array.from(box.querySelectorAll('[class*="AssetNode_assetNodeRowBox"]'));
    return {
      name: box.querySelector('[class*="AssetNode_assetName"]').innerText.trim(),
      links: Array.from(box.querySelectorAll('a[href^="/assets/"]')).map(
        (a) => a.getAttribute('href')),
      inside: r.width > 0 && r.left >= view.left && r.right <= view.right
        && r.top >= view.top && r.bottom <= view.bottom,
      rows: rows.map((row) => {
        const first = row.firstElementChild;
        return {
          first: first ? first.innerText.trim() : '',
          rest: row.innerText.trim().slice(first ? first.innerText.trim().length : 0).trim(),
          icons: Array.from(row.querySelectorAll('[role="img"]')).map(
            (i) => i.getAttribute('aria-label')),
          background: row.style.backgroundColor,
        };
      }),
    };
  });
}"""


# Every node drawn on the whole graph, full or minimal (zoomed out: a name on a colour).
READ_WHOLE_GRAPH = """() => {
  const view = document.querySelector('[data-svg-viewport]').getBoundingClientRect();
  const boxes = document.querySelectorAll(
    '[class*="AssetNode_assetNodeBox"], [class*="AssetNode_minimalAssetNodeBox"]');
  return Array.from(boxes).map((box) => {
    const r = box.getBoundingClientRect();
    const minimal = box.style.getPropertyValue('--minimal-bg');
    const status = box.querySelector('[class*="AssetNode_assetNodeRowBox"]:last-child');
    return {
      tone: (minimal || (status ? status.style.backgroundColor : ''))
        .replace('var(--color-background-', '').replace(')', ''),
      inside: r.width > 0 && r.left >= view.left && r.right <= view.right
        && r.top >= view.top && r.bottom <= view.bottom,
    };
  });
}"""


@dataclass(frozen=True)
class NodeView:
    """What an asset's node on the lineage graph says, in the UI's words."""

    status: str  # "Materialized", "Failed", "Never materialized", "1 partition", ...
    tone: str  # the status row's colour: green, red, gray, blue
    checks: str | None  # "3 / 3 Passed"; None for an asset without checks
    checks_icon: str | None  # done, close, warning_outline, dot


def _check_state(check: dict[str, Any]) -> str:
    """A check's aggregate state as the graph node counts it (Dagster's
    getAggregateCheckIconType, ui-core/src/assets/asset-checks/util.tsx)."""
    latest = check["executionForLatestMaterialization"] or {}
    severity = (latest.get("evaluation") or {}).get("severity")
    partitions = check["partitionStatuses"]
    if partitions is not None:
        # Only default (static/dynamic) partitions are modelled; another kind must be added
        # here rather than guessed.
        assert partitions["__typename"] == "AssetCheckDefaultPartitionStatuses", partitions
        count = {k: len(v or []) for k, v in partitions.items() if k != "__typename"}
        if sum(count.values()):
            if count["failedPartitions"] or count["executionFailedPartitions"]:
                return "WARN" if severity == "WARN" else "ERROR"
            if count["inProgressPartitions"]:
                return "IN_PROGRESS"
            if count["skippedPartitions"]:
                return "SKIPPED"
            return "SUCCEEDED"
    status = latest.get("status")
    if status is None:
        return "NOT_EVALUATED"
    if status == "FAILED":
        return "WARN" if severity == "WARN" else "ERROR"
    return "ERROR" if status == "EXECUTION_FAILED" else str(status)


def _expected_node(node: dict[str, Any], latest: dict[str, Any]) -> NodeView:
    """The node the UI must draw for what the instance holds (Dagster's
    buildAssetNodeStatusContent and AssetChecksStatusSummary, 'dag2025' rendering)."""
    checks = node["assetChecksOrError"].get("checks", [])
    states = [_check_state(c) for c in checks]
    # an ERROR check that failed (or could not run) turns the status row red
    executions = [c["executionForLatestMaterialization"] or {} for c in checks]
    checks_failed = any(
        e.get("status") == "EXECUTION_FAILED"
        or (e.get("status") == "FAILED" and (e.get("evaluation") or {}).get("severity") == "ERROR")
        for e in executions
    )
    summary = f"{states.count('SUCCEEDED')} / {len(states)} Passed" if checks else None
    icon = None
    if checks:
        icon = next(
            (
                i
                for s, i in (("ERROR", "close"), ("WARN", "warning_outline"), ("SKIPPED", "dot"))
                if s in states
            ),
            "done",
        )
    last = node["assetMaterializations"][0] if node["assetMaterializations"] else None
    run = latest["latestRun"]
    failed_run = (
        run is not None
        and run["status"] == "FAILURE"
        and not (last and last["runId"] == run["id"])
        and not (last and float(last["timestamp"]) > float(run["endTime"] or 0) * 1000)
    )
    parts = node["partitionStats"]
    if latest["inProgressRunIds"] or latest["unstartedRunIds"]:
        status, tone = "Materializing...", "blue"
    elif parts is not None:
        total, missing = parts["numPartitions"], parts["numPartitions"] - parts["numFailed"]
        missing -= parts["numMaterialized"]
        status = f"{total:,} partition" + ("" if total == 1 else "s")
        tone = "red" if parts["numFailed"] or checks_failed else "gray" if missing else "green"
    elif failed_run:
        status, tone = "Failed", "red"
    elif checks_failed:
        status, tone = ("Materialized" if last else "Never materialized"), "red"
    elif last is None:
        status, tone = "Never materialized", "gray"
    else:
        status, tone = "Materialized", "green"
    return NodeView(status=status, tone=tone, checks=summary, checks_icon=icon)


def _tone(css: str) -> str:
    """`var(--color-background-green)` -> green (the UI paints status rows with these)."""
    return css.removeprefix("var(--color-background-").removesuffix(")")


def _seen_node(raw: dict[str, Any]) -> NodeView:
    """What a node read by READ_NODES says: its status row is its last (the default facets
    end with the status), its checks row is labelled."""
    rows = raw["rows"]
    status_row = rows[-1]
    checks = next((r for r in rows if r["first"] == "Asset checks"), None)
    return NodeView(
        status=status_row["first"],
        tone=_tone(status_row["background"]),
        # an asset without checks shows a dash in the row
        checks=(checks["rest"] if checks["rest"] not in ("", "–") else None) if checks else None,
        checks_icon=(checks["icons"][0] if checks and checks["icons"] else None),
    )


def _expected_lineage(ui: str) -> dict[str, dict[str, tuple[str, NodeView]]]:
    """group -> node name -> (asset key, expected node): the code location's assets and
    checks, each with the status the instance holds for it, asked of the same webserver."""
    graph = defs().resolve_asset_graph()
    keys = sorted(graph.get_all_asset_keys())
    variables = {"keys": [{"path": list(k.path)} for k in keys]}
    answer = httpx.post(
        f"{ui}/graphql", json={"query": LIVE_QUERY, "variables": variables}, timeout=60
    ).json()
    assert "errors" not in answer, answer
    nodes = {"/".join(n["assetKey"]["path"]): n for n in answer["data"]["assetNodes"]}
    latest = {"/".join(i["assetKey"]["path"]): i for i in answer["data"]["assetsLatestInfo"]}
    # the webserver serves the code location this process loads, check for check
    assert set(nodes) == {k.to_user_string() for k in keys}
    served_checks = {
        f"{key}:{c['name']}" for key, n in nodes.items() for c in n["assetChecksOrError"]["checks"]
    }
    assert served_checks == {
        f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys
    }
    expected: dict[str, dict[str, tuple[str, NodeView]]] = {}
    for key, node in nodes.items():
        names = expected.setdefault(node["groupName"], {})
        name = key.rsplit("/", 1)[-1]
        # a node shows its key's last part: within a group that must name one asset
        assert name not in names, f"two assets named {name} in group {node['groupName']}"
        names[name] = (key, _expected_node(node, latest[key]))
    return expected


def _search(page: Any, query: str) -> None:
    """Type an asset selection into the graph's search box, as a user does."""
    box = page.get_by_label("Search and filter assets")
    box.focus()
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    if query:
        page.keyboard.type(query)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")  # close the suggestions, which cover the graph


def _group_view(ui: str, group: str) -> str:
    """The global lineage's address for the selection `group:"<group>"`."""
    selection = 'group:"' + group + '"'
    return f"{ui}/asset-groups~{quote(selection, safe='')}"


def test_global_lineage_shows_every_asset_and_check_with_its_latest_status(
    ui: str, page: Any, artifacts: Path
) -> None:
    """After the whole chain ran, the global asset lineage shows every asset of the code
    location, bronze to the model and the published datasets, each node with the status
    and the checks' verdict the instance holds: group by group (a full node needs the
    zoom that one group fits in), then the whole graph with every group expanded."""
    expected = _expected_lineage(ui)
    # tall enough that the largest group (eight published datasets) fits at full zoom
    page.set_viewport_size(GROUP_VIEWPORT)
    _open(page, f"{ui}/asset-groups", "Global asset lineage", first_load=True)
    sidebar = page.inner_text("body")
    for group in expected:
        assert group in sidebar, group
    # The search box writes the selection into the page's address; each group is then
    # opened at its address, where the graph centres itself on mount (after a change of
    # selection in place it may keep the old position).
    first = min(expected)
    _search(page, f'group:"{first}"')
    address = _group_view(ui, first)
    page.wait_for_url(lambda url: url.rstrip("/") == address, timeout=30_000)
    for group, nodes in sorted(expected.items()):
        page.goto(_group_view(ui, group), wait_until="networkidle")
        page.wait_for_function(
            "n => document.querySelectorAll('[class*=\"AssetNode_assetNodeBox\"]').length == n",
            arg=len(nodes),
            timeout=30_000,
        )
        # the status rows fill in once the live data arrives, and the graph centres itself
        # on the selection (animated)
        page.wait_for_function(
            f"""() => ({READ_NODES})().every((n) => n.inside && n.rows.length
                 && !n.rows.some((r) => r.rest.includes('Loading') || r.first.includes('Loading')))
                 && !document.body.innerText.includes('Loading...')""",
            timeout=30_000,
        )
        page.screenshot(path=str(artifacts / f"lineage_{group}.png"), full_page=True)
        seen = {raw["name"]: raw for raw in page.evaluate(READ_NODES)}
        assert set(seen) == set(nodes), (group, sorted(seen), sorted(nodes))
        for name, (key, want) in nodes.items():
            raw = seen[name]
            assert raw["inside"], f"{key} is drawn outside the visible graph"
            # the node's own links name the asset in full: it is this asset, not a namesake
            assert all(link.split("?")[0] == f"/assets/{key}" for link in raw["links"]), raw
            assert _seen_node(raw) == want, (key, raw)

    # The whole graph: every group expanded (the graph's settings menu), zoomed out until
    # every node is drawn inside the page. Zoomed out, a node is its name on its status colour.
    _search(page, "")
    page.set_viewport_size(GLOBAL_VIEWPORT)
    page.locator('button:has([aria-label="settings"])').last.click()
    page.get_by_role("menuitem", name="Expand all groups").click()
    page.keyboard.press("Escape")
    assert all(f"global:{group}" in unquote(page.url) for group in expected), page.url
    total = sum(len(nodes) for nodes in expected.values())
    drawn: list[dict[str, Any]] = []
    for _ in range(12):
        page.wait_for_timeout(800)
        drawn = page.evaluate(READ_WHOLE_GRAPH)
        if len(drawn) == total and all(node["inside"] for node in drawn):
            break
        page.locator('button:has([aria-label="zoom_out"])').click()
    assert len(drawn) == total and all(node["inside"] for node in drawn), drawn
    # zoomed out, the graph paints each node's status colour once its live data arrived:
    # a node still loading is drawn light for a moment, so wait for the colours to settle
    want_tones = sorted(n.tone for nodes in expected.values() for _, n in nodes.values())
    tones: list[str] = []
    for _ in range(30):
        tones = sorted(node["tone"] for node in page.evaluate(READ_WHOLE_GRAPH))
        if tones == want_tones:
            break
        page.wait_for_timeout(1000)
    page.screenshot(path=str(artifacts / "lineage_global.png"), full_page=True)
    assert tones == want_tones

    # The UI says what the instance holds; and what it holds is the whole chain having run:
    # every asset of every stage materialized, no blocking gate failed. A WARN-level signal
    # may fire on the demo's data (the labeled set's soft label-quality audits: the
    # simulated instructors disagree on purpose); the node then shows it, as compared above.
    for nodes in expected.values():
        for key, node in nodes.values():
            # (the demo's inbox holds one submission: one partition of the submission assets)
            assert node.status in {"Materialized", "1 partition"}, (key, node)
            assert node.tone == "green", (key, node)
            assert node.checks_icon in {None, "done", "warning_outline"}, (key, node)
    assert {"bronze", "silver", "gold", "model", "publish"} <= set(expected)
    assert {"export/oneroster", "export/xapi", "model/post_urgency_model"} <= {
        key for nodes in expected.values() for key, _ in nodes.values()
    }


# ----------------------------------------------------------------------------- columns

SCHEMA_QUERY = """query Schema($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode {
    assetMaterializations(limit: 1) { metadataEntries {
      label ... on TableSchemaMetadataEntry { schema { columns { name description } } }
    } }
  } }
}"""

# The overview's column table: per row, the column's name and its rendered description.
READ_COLUMNS = """() => {
  const table = Array.from(document.querySelectorAll('table')).find(
    (t) => t.querySelector('thead') && t.querySelector('thead').innerText.includes('Column name'));
  if (!table) return null;
  return Array.from(table.querySelectorAll('tbody > tr')).map((tr) => {
    const cells = tr.querySelectorAll(':scope > td');
    return [cells[0].querySelector('span').innerText.trim(), cells[2].innerText.trim()];
  });
}"""


def _words(text: str | None) -> str:
    return " ".join((text or "").split())


def test_gold_column_tables_show_the_published_descriptions(ui: str, page: Any) -> None:
    """A published gold table's page says what each column holds, in config/datasets.yaml's
    words: the column table of its latest materialization, no column left undescribed."""
    keys = {k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()}
    gold = [d for d in load_datasets() if d.table.startswith("gold.")]
    assert {"validated_posts", "labeled_posts", "post_predictions"} <= {d.id for d in gold}
    first = True
    for dataset in gold:
        key = dataset.table.replace(".", "/")
        assert key in keys, key
        answer = httpx.post(
            f"{ui}/graphql",
            json={"query": SCHEMA_QUERY, "variables": {"key": {"path": key.split("/")}}},
            timeout=60,
        ).json()
        entries = answer["data"]["assetNodeOrError"]["assetMaterializations"][0]
        schema = next(
            e for e in entries["metadataEntries"] if e["label"] == "dagster/column_schema"
        )
        stored = [c["name"] for c in schema["schema"]["columns"]]

        _open(page, f"{ui}/assets/{key}", "Column name", first_load=first)
        first = False
        shown = dict(page.evaluate(READ_COLUMNS) or [])
        assert list(shown) == stored, (key, list(shown), stored)
        assert all(_words(text) for text in shown.values()), (key, shown)
        declared = dict(dataset.columns)
        assert declared and set(declared) <= set(shown), (key, sorted(declared), sorted(shown))
        for column, text in declared.items():
            assert _words(shown[column]) == _words(text), (key, column, shown[column])


# ----------------------------------------------------------------------------- terminal

# What a library's progress bar leaves in a captured terminal: tqdm redraws with carriage
# returns and draws "NN%|███| n/N [00:01<00:00, 3.2it/s]"; GX labels its bars.
PROGRESS_BAR_MARKS = ("Calculating Metrics", "\r", "%|", "it/s]", "s/it]")


def test_the_demo_terminal_has_no_library_progress_bars(demo: DemoRun) -> None:
    """`spanda demo` reports runs, not library progress bars: Great Expectations validated
    every gold table (its Data Docs were built), MLflow logged and loaded the model, and
    neither stream carries a bar."""
    assert "all assets materialized" in demo.stdout
    for name in ("gold/validated_posts", "model/post_urgency_model", "publish/validated_posts"):
        assert name in demo.stdout, name
    assert existing_docs(demo.home / "gx"), "GX did not run: the check below would prove nothing"
    for stream, text in (("stdout", demo.stdout), ("stderr", demo.stderr)):
        for mark in PROGRESS_BAR_MARKS:
            at = text.find(mark)
            assert at < 0, f"{mark!r} on the demo's {stream}: {text[max(0, at - 200) : at + 200]!r}"


# ----------------------------------------------------------------------------- last
# It queues a run of pull_annotations on the shared instance: the tests above read the
# instance as the demo left it (a queued run shows its assets as materializing).


def test_a_label_studio_webhook_launches_the_pull_on_the_webserver(ui: str) -> None:
    """The push alternative to polling: a signed event becomes a run of pull_annotations
    on the real webserver; a wrong secret or another event does not."""
    secret = "webhook-test-secret-7d1e"
    server = make_server("127.0.0.1", free_port(), secret, graphql_launcher(ui))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/label-studio"
    try:
        event = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}}
        wrong = httpx.post(url, json=event, headers={"X-Spanda-Webhook-Secret": "nope"})
        assert wrong.status_code == 401 and secret not in wrong.text
        other = httpx.post(
            url, json={"action": "PROJECT_UPDATED"}, headers={"X-Spanda-Webhook-Secret": secret}
        )
        assert other.status_code == 200 and other.json() == {"ignored": True}
        accepted = httpx.post(url, json=event, headers={"X-Spanda-Webhook-Secret": secret})
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        # The instance queues runs (concurrency limits); the daemon, tested elsewhere,
        # starts them. Here: the webserver holds a run of pull_annotations, tagged.
        query = """query Run($id: ID!) {
          runOrError(runId: $id) { ... on Run { jobName status tags { key value } } }
        }"""
        answer = httpx.post(f"{ui}/graphql", json={"query": query, "variables": {"id": run_id}})
        run = answer.json()["data"]["runOrError"]
        assert run["jobName"] == "pull_annotations"
        assert run["status"] in {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "SUCCESS"}
        tags = {t["key"]: t["value"] for t in run["tags"]}
        assert tags["spanda/trigger"] == "webhook:ANNOTATION_CREATED"
    finally:
        server.shutdown()
        server.server_close()
