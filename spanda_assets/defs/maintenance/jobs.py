"""Physical erasure on a schedule: expire old snapshots past bronze and delete their files.

An erased row (a consent withdrawal, an erasure request) leaves the current
snapshot at once, but older snapshots and their data files still hold it until
they are expired. This job expires, on every table past bronze, the snapshots
older than SPANDA_RETENTION_DAYS (default 7) and deletes the files no
remaining snapshot needs, so an erasure is physical within the retention
period. One op per writer pool: an op waits for the stage that writes its
tables, so an expiry never races a write of the same table.
"""

import datetime as dt
from typing import Any

import dagster as dg

from spanda_assets import settings
from spanda_assets.defs.privacy.assets import silver_pool, silver_sources
from spanda_assets.defs.validation.assets import GOLD_POOL
from spanda_assets.resources import LakehouseResource


def _groups() -> dict[str, tuple[str, list[tuple[str, str]] | None]]:
    """op name -> (pool, the tables it expires; None: every table of the namespace that no
    other op claims)."""
    groups: dict[str, tuple[str, list[tuple[str, str]] | None]] = {
        f"expire_silver_{s.name}": (silver_pool(s.name), [("silver", s.name)])
        for s in silver_sources()
    }
    groups["expire_silver_consent"] = (
        silver_pool("consent_records"),
        [("silver", "consent_records"), ("silver", "consent_quarantine")],
    )
    groups["expire_silver_consent_status_lists"] = (
        silver_pool("consent_status_lists"),
        [("silver", "consent_status_lists")],
    )
    groups["expire_gold"] = (GOLD_POOL, None)
    groups["expire_submissions"] = ("submissions", None)
    return groups


def _claimed() -> set[tuple[str, str]]:
    return {t for _, tables in _groups().values() if tables for t in tables}


def _build_op(name: str, pool: str, tables: list[tuple[str, str]] | None) -> dg.OpDefinition:
    namespace = name.removeprefix("expire_").split("_")[0]

    @dg.op(name=name, pool=pool, tags={"spanda/maintenance": "expiry"})
    def _expire(context: dg.OpExecutionContext, lakehouse: LakehouseResource) -> dict[str, Any]:
        from spanda_assets.lib.lakehouse import load_table_or_none
        from spanda_assets.lib.privacy.erasure import derived_tables
        from spanda_assets.lib.writes import expire

        catalog = lakehouse.catalog()
        if tables is None:
            claimed = _claimed()
            targets = [
                t
                for t in derived_tables(catalog, (namespace,))
                if tuple(t.name()[-2:]) not in claimed
            ]
        else:
            targets = [
                t for t in (load_table_or_none(catalog, *i) for i in tables) if t is not None
            ]
        older_than = dt.datetime.now(dt.UTC) - settings.retention()
        report: dict[str, Any] = {}
        for table in targets:
            done = expire(table, older_than=older_than, orphan_grace=settings.orphan_grace())
            report[done.table] = {
                "snapshots_expired": done.snapshots_expired,
                "files_removed": done.files_removed + done.orphans_removed,
                "bytes_removed": done.bytes_removed,
                "unreferenced_files_in_grace": done.orphans_kept_in_grace,
            }
            context.log.info(f"{done.table}: {report[done.table]}")
        return report

    return _expire


@dg.job(
    name="expire_history",
    description=(
        "Expire snapshots older than SPANDA_RETENTION_DAYS (default 7) on every table past "
        "bronze and delete the data files nothing references any more: erased rows leave "
        "storage within the retention period. Bronze, the restricted legal record, is kept."
    ),
    tags={"spanda/trigger": "maintenance"},
)
def expire_history_job() -> None:
    for name, (pool, tables) in _groups().items():
        _build_op(name, pool, tables)()


daily_expiry = dg.ScheduleDefinition(
    name="daily_expiry",
    job=expire_history_job,
    cron_schedule="30 3 * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 03:30 UTC: physical erasure of history past the retention.",
)
