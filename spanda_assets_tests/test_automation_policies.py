"""`at_cron_if_changed` (decision 0036), evaluated by Dagster's own automation engine at
chosen times: due at the tick when a parent changed, latched until the parents settle,
retried at the next tick after a failed run, and nothing when nothing changed."""

import datetime as dt
from typing import Any

import dagster as dg

from spanda_assets.defs.automation.policies import at_cron_if_changed

CRON = "0 5 * * *"
PARENT = dg.AssetKey("parent")
CHILD = dg.AssetKey("child")


@dg.asset(key=PARENT, check_specs=[dg.AssetCheckSpec("gate", asset=PARENT, blocking=True)])
def parent():  # no return annotation: with check specs dagster reads one as outputs
    pass


@dg.asset(key=CHILD, deps=[PARENT], automation_condition=at_cron_if_changed(CRON))
def child() -> None: ...


DAY0 = dt.datetime.combine(
    dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC
)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return DAY0 + dt.timedelta(days=day, hours=hour, minutes=minute)


class Engine:
    """The automation engine's evaluations in order, with its cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor: Any = None

    def requested(self, when: dt.datetime) -> bool:
        result = dg.evaluate_automation_conditions(
            defs=[parent, child], instance=self.instance, cursor=self.cursor, evaluation_time=when
        )
        self.cursor = result.cursor
        return result.get_num_requested(CHILD) == 1

    def update(self, key: dg.AssetKey, gate: bool | None = None) -> None:
        self.instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key))
        if gate is not None:
            self.gate(gate)

    def gate(self, passed: bool) -> None:
        self.instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(asset_key=PARENT, check_name="gate", passed=passed)
        )


def test_due_at_the_tick_retried_after_a_failure_and_quiet_without_change() -> None:
    with dg.instance_for_test() as instance:
        engine = Engine(instance)
        engine.update(PARENT, gate=True)
        engine.update(CHILD)  # published once already: nothing pending
        assert not engine.requested(at(0, 3))  # first evaluation
        engine.update(PARENT, gate=True)  # 03:xx: the data changes before the tick
        assert not engine.requested(at(0, 4)), "not before the tick"
        assert engine.requested(at(0, 5, 1)), "at the tick, with the 03:xx change"
        # the run fails: nothing materialized; no retry loop the same day ...
        assert not engine.requested(at(0, 5, 30))
        assert not engine.requested(at(0, 14))
        # ... but the change is still pending at the next tick
        assert engine.requested(at(1, 5, 1)), "a failed run is retried at the next tick"
        engine.update(CHILD)  # this time it succeeded
        assert not engine.requested(at(2, 5, 1)), "nothing changed: no run"
        assert not engine.requested(at(3, 5, 1))


def test_a_tick_that_finds_a_failing_check_waits_for_it_the_same_day() -> None:
    with dg.instance_for_test() as instance:
        engine = Engine(instance)
        engine.update(PARENT, gate=True)
        engine.update(CHILD)
        assert not engine.requested(at(0, 3))
        engine.update(PARENT, gate=False)  # changed, and its blocking check fails
        assert not engine.requested(at(0, 5, 1)), "a failing blocking check holds it"
        assert not engine.requested(at(0, 5, 10))
        engine.gate(True)  # fixed at 05:15
        assert engine.requested(at(0, 5, 20)), "the same day, once the check passed"
        engine.update(CHILD)
        assert not engine.requested(at(1, 5, 1))


def test_a_parent_that_existed_before_the_first_evaluation_is_published_at_the_tick() -> None:
    with dg.instance_for_test() as instance:
        engine = Engine(instance)
        engine.update(PARENT, gate=True)  # gold was there before the daemon started
        assert not engine.requested(at(0, 3))
        assert engine.requested(at(0, 5, 1)), "never published: due at the first tick"
