"""Publication under the real Dagster daemon, with nobody clicking.

The publish cron is set to every minute (SPANDA_PUBLISH_CRON), the source is seeded,
and the daemon is left alone:

1. the chain reaches gold by itself, and at the next tick after gold's blocking checks
   passed, `publish/validated_posts` makes a first version and `export/oneroster` its
   first package, both in runs the automation launched;
2. once the chain has settled, a tick with nothing new starts no publish run;
3. new rows at the source flow to gold, and the next tick makes a new version with them.

This is the schedule's meaning as the README states it ("daily at 05:00 when its
table's data changed"), at one minute instead of a day.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG

from spanda_assets.lib.exports.store import latest_export
from spanda_assets.lib.publish.versions import VersionStore, publish_root
from spanda_assets.lib.seed import SeedSizes, seed
from spanda_assets_tests.conftest import append_batch
from spanda_assets_tests.servers import PROJECT_ROOT, dagster_daemon
from spanda_assets_tests.waiting import settled, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TIMEOUT_S = 420
PUBLISHED = dg.AssetKey(["publish", "validated_posts"])
EXPORTED = dg.AssetKey(["export", "oneroster"])
GOLD = dg.AssetKey(["gold", "validated_posts"])


def _version() -> int:
    latest = VersionStore(publish_root()).load("validated_posts").latest
    return latest.version if latest else 0


def _materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.EventLogEntry]:
    return [
        r.event_log_entry
        for r in instance.fetch_materializations(key, limit=100).records
        if r.event_log_entry is not None
    ]


def _latest(instance: dg.DagsterInstance, key: dg.AssetKey) -> int:
    """The storage id of the key's latest materialization (0: none): ids grow with time."""
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else 0


def _publish_runs(instance: dg.DagsterInstance) -> int:
    """Runs that target publish/validated_posts, whatever became of them."""
    return sum(
        1
        for r in instance.get_run_records()
        if PUBLISHED in (r.dagster_run.asset_selection or set())
    )


def _launched_by_automation(instance: dg.DagsterInstance, entry: dg.EventLogEntry) -> bool:
    run = instance.get_run_by_id(entry.run_id)
    return run is not None and run.tags.get(AUTOMATION_CONDITION_TAG) == "true"


@pytest.mark.timeout(1200)  # two passes of the chain under the daemon, and a quiet minute
def test_publication_follows_its_cron_and_only_when_data_changed(
    tmp_path: Path, spanda_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = spanda_home / "operational.db"
    url = f"sqlite:///{db}"
    seed(url, SeedSizes.preset("tiny"), seed=5, ground_truth=tmp_path / "gt")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    shutil.copyfile(
        PROJECT_ROOT / "spanda_assets/config/dagster.yaml", dagster_home / "dagster.yaml"
    )
    log = tmp_path / "daemon.log"
    settings = {
        "SPANDA_SOURCE_URL": url,
        "SPANDA_DEMO": "1",
        "SPANDA_SENSOR_INTERVAL_SECONDS": "15",
        "SPANDA_MIN_LABELS_PER_CLASS": "0",
        "SPANDA_PUBLISH_CRON": "* * * * *",
        "DAGSTER_HOME": str(dagster_home),
    }
    for k, v in settings.items():
        monkeypatch.setenv(k, v)

    # the instance's storage is created here first: created by the daemon and this process
    # at once, its schema could be stamped twice
    with dg.DagsterInstance.get() as instance, dagster_daemon(dict(os.environ), log):
        # 1. seeded source -> gold -> a first version and the first export, by themselves
        wait_until("publish/validated_posts version 1", lambda: _version() >= 1, TIMEOUT_S, log)
        wait_until("the first OneRoster export", lambda: latest_export("oneroster"), TIMEOUT_S, log)
        for key in (PUBLISHED, EXPORTED):
            # the files are in place a moment before the run records the materialization
            made = wait_until(
                f"{key.to_user_string()} materialized",
                lambda key=key: _materializations(instance, key),
                60,
                log,
            )
            assert all(_launched_by_automation(instance, m) for m in made), key

        # 2. once gold's last change is published and the chain has settled, ticks with
        #    nothing new start no publish run
        wait_until(
            "gold's last change published",
            lambda: _latest(instance, PUBLISHED) > _latest(instance, GOLD),
            TIMEOUT_S,
            log,
        )
        settled(log, TIMEOUT_S)
        first = VersionStore(publish_root()).load("validated_posts").latest
        assert first is not None and first.rows > 0
        runs = _publish_runs(instance)
        time.sleep(75)  # at least one more tick of the minute cron
        assert _publish_runs(instance) == runs, "a tick with nothing new started a publish run"
        assert _version() == first.version

        # 3. new rows at the source: the next tick after gold publishes them, a new version
        export_key = latest_export("oneroster").key  # type: ignore[union-attr]
        append_batch(url, tmp_path, seed_value=8)
        wait_until(
            "a new version of publish/validated_posts",
            lambda: _version() > first.version,
            TIMEOUT_S,
            log,
        )
        second = VersionStore(publish_root()).load("validated_posts").latest
        assert second is not None and second.version > first.version
        assert second.rows > first.rows and second.snapshot_id != first.snapshot_id
        assert second.concept_doi == first.concept_doi and second.doi != first.doi
        wait_until(
            "a new OneRoster export",
            lambda: latest_export("oneroster").key != export_key,  # type: ignore[union-attr]
            TIMEOUT_S,
            log,
        )
        assert all(
            _launched_by_automation(instance, m) for m in _materializations(instance, PUBLISHED)
        )
