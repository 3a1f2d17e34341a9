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
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from spanda_assets.api.webhook import graphql_launcher, make_server
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


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("ui-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANDA_")}
    env.update(SPANDA_HOME=str(home), DAGSTER_HOME=str(home / "dagster"))
    spanda = Path(sys.executable).with_name("spanda")
    subprocess.run(
        [str(spanda), "demo", "--no-ui", "--size", "tiny"],
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
        cwd=ROOT,
    )
    port = free_port()
    webserver = str(Path(sys.executable).with_name("dagster-webserver"))
    cmd = [webserver, "-h", "127.0.0.1", "-p", str(port), "-w", str(ROOT / "workspace.yaml")]
    with spawned(cmd, env, ROOT, home / "webserver.log") as proc:
        wait_for_port(port, 90, proc)
        yield f"http://127.0.0.1:{port}"


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
