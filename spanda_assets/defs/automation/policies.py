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
    """At each tick of `cron` (UTC), if a parent changed since this asset last ran, and
    every parent's blocking checks passed: "daily at 05:00 when the data changed".

    Dagster's `on_cron` means something else: at the first parent update *after* a tick.
    With it, a table that changed at 04:00 would not be published at 05:00, and one that
    changes at 14:00 would be published at 14:00. A tick missed while the daemon was down
    is taken at its first evaluation after restart.
    """
    return (
        dg.AutomationCondition.cron_tick_passed(cron, "UTC")
        & dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label(f"at {cron} UTC if a parent changed")
