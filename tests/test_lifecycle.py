"""The module's lifecycle and recovery ladder, table-driven on a virtual clock."""

from __future__ import annotations

import pytest

from bridged.core.lifecycle import (
    Initialise,
    Lifecycle,
    LifecycleSettings,
    Reopen,
    Reset,
    SetTimer,
    Stage,
)

SETTINGS = LifecycleSettings(max_consecutive_timeouts=2, init_timeout=60.0, reset_grace=15.0)


def steps(actions: list[object]) -> list[type]:
    return [type(a) for a in actions if not isinstance(a, SetTimer)]


def ready_lifecycle() -> Lifecycle:
    life = Lifecycle(SETTINGS)
    (init,) = [a for a in life.opened(0.0) if isinstance(a, Initialise)]
    life.ready(init.generation, 1.0)
    assert life.stage is Stage.READY and life.healthy
    return life


def test_every_stage_but_a_closed_port_has_a_deadline() -> None:
    life = Lifecycle(SETTINGS)
    life.opened(0.0)
    assert life.stage is Stage.INITIALISING and life.deadline == 60.0
    assert steps(life.timer_fired(60.0)) == [Reopen]  # init hung: first rung
    assert life.stage is Stage.RECOVERING and life.deadline is not None
    life.lost(61.0)
    assert life.deadline is None  # the shell's reopen backoff runs
    life.opened(62.0)
    assert steps(life.timer_fired(122.0)) == [Reset]  # init hung again: next rung
    assert life.deadline == 137.0
    assert steps(life.timer_fired(137.0)) == [Initialise]  # no boot sign: init anyway
    assert steps(life.timer_fired(197.0)) == [Reopen]  # and the ladder starts over


@pytest.mark.parametrize(
    "fail",
    [
        lambda life, now: life.unresponsive(now),
        lambda life, now: life.command_result("timeout", now) + life.command_result("timeout", now),
        lambda life, now: life.init_failed(life.generation, now, "ERROR"),
    ],
    ids=["unresponsive", "consecutive timeouts", "init failed"],
)
def test_each_failure_climbs_one_rung(fail: object) -> None:
    life = ready_lifecycle()
    life.boot_sign(2.0)  # a reboot was seen: initialising, where every failure applies
    assert steps(fail(life, 3.0)) == [Reopen]  # type: ignore[operator]
    assert not life.healthy  # the watchdog ping stops while the ladder is climbed
    life.lost(3.1)
    life.opened(3.5)
    assert steps(fail(life, 4.0)) == [Reset]  # type: ignore[operator]
    assert life.expecting_boot
    assert steps(life.boot_sign(5.0)) == [Initialise]
    life.ready(life.generation, 6.0)
    assert life.healthy and life.rung == -1


def test_a_stale_initialisation_result_is_ignored() -> None:
    life = ready_lifecycle()
    old = life.generation
    life.boot_sign(2.0)
    assert life.ready(old, 3.0) == []
    assert life.init_failed(old, 3.0, "late") == []
    assert life.stage is Stage.INITIALISING


def test_without_reset_the_ladder_only_reopens() -> None:
    life = Lifecycle(LifecycleSettings(allow_reset=False))
    life.opened(0.0)
    for t in (1.0, 2.0, 3.0):
        assert steps(life.unresponsive(t)) == [Reopen]
        life.lost(t)
        life.opened(t)
