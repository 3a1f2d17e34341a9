"""When each stage runs by itself, and how fresh the UI expects it to be.

Bronze runs on its sensor (new source rows, every minute) and the hourly
schedule. Everything past bronze is declarative: a stage runs as soon as one
of its parents published something new (eager), so a consent withdrawal that
reaches bronze.consent_events reaches silver and gold within minutes, with
nobody clicking. Stages downstream of a gold table (the labeled set, the
model) also wait until the gold table's blocking checks passed.

Freshness windows follow the schedule: bronze is extracted at least hourly,
and each later stage follows within minutes of its parents, so a stage that
has not materialized for two hours (warn) or three (fail) is stuck.
"""

import datetime as dt
from typing import Any

import dagster as dg

BRONZE_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=2), warn_window=dt.timedelta(minutes=90)
)
SILVER_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=2, minutes=30), warn_window=dt.timedelta(hours=2)
)
GOLD_FRESHNESS = dg.FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=3), warn_window=dt.timedelta(hours=2, minutes=30)
)


def stage_automation() -> dg.AutomationCondition:
    """Silver and gold: run as soon as a parent published new data (and none is running)."""
    return dg.AutomationCondition.eager()


def downstream_of_gold() -> dg.AutomationCondition:
    """A stage fed by gold: eager, and only after the gold table's blocking checks passed."""
    return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def at_cron_if_changed(cron: str) -> dg.AutomationCondition:
    """Due at each tick of `cron` (UTC) when something changed since this asset last
    succeeded; runs once its parents have settled (none running, none missing, every
    blocking check passed): "daily at 05:00 when the data changed" (decision 0036).

    * `changed`: a parent updated since this asset's last successful materialization
      (or it never materialized). A failed run leaves it set, so the next tick retries.
    * `due`: latched at a tick where `changed` holds, until the asset is requested. A
      tick that finds a parent mid-rewrite or a blocking check failing waits for them,
      the same day, instead of skipping to the next tick.

    Dagster's `on_cron` means something else: run at the first parent update *after* a
    tick, so a table changed at 04:00 was not published at 05:00.
    """
    ac: Any = dg.AutomationCondition  # its generics do not follow `&` and `|` for mypy
    changed = (
        ac.any_deps_updated().since(ac.newly_updated() | ac.initial_evaluation()) | ac.missing()
    ).with_label("a parent changed since the last success")
    handled = ac.newly_requested() | ac.newly_updated() | ac.initial_evaluation()
    due = (ac.cron_tick_passed(cron, "UTC") & changed).since(handled)
    return (
        due.with_label(f"due at {cron} UTC")
        & ~ac.any_deps_missing()
        & ~ac.any_deps_in_progress()
        & ~ac.in_progress()
        & ac.all_deps_blocking_checks_passed()
    ).with_label(f"at {cron} UTC if a parent changed")
