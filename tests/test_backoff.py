"""Exponential backoff: doubling, cap, jitter bounds, reset, determinism."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridged.core.backoff import Backoff


def delays(backoff: Backoff, count: int) -> list[float]:
    return [backoff.next_delay() for _ in range(count)]


def test_without_jitter_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(1.0, 10.0, 0.0, random.Random(0))
    assert delays(backoff, 7) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


def test_attempts_count_the_delays_handed_out() -> None:
    backoff = Backoff(1.0, 10.0, 0.0, random.Random(0))
    assert backoff.attempts == 0
    delays(backoff, 3)
    assert backoff.attempts == 3


def test_reset_starts_over_from_initial() -> None:
    backoff = Backoff(0.5, 60.0, 0.0, random.Random(0))
    delays(backoff, 5)
    backoff.reset()
    assert backoff.attempts == 0
    assert delays(backoff, 3) == [0.5, 1.0, 2.0]


def test_same_seed_same_delays() -> None:
    first = delays(Backoff(1.0, 300.0, 0.5, random.Random(42)), 20)
    second = delays(Backoff(1.0, 300.0, 0.5, random.Random(42)), 20)
    assert first == second


def test_jitter_spreads_sockets_that_fail_together() -> None:
    # Six sockets closed by one reboot must not retry in lockstep.
    rng = random.Random(7)
    first_delays = {Backoff(1.0, 300.0, 0.2, rng).next_delay() for _ in range(6)}
    assert len(first_delays) == 6


def test_many_attempts_neither_overflow_nor_exceed_the_maximum() -> None:
    backoff = Backoff(1.0, 300.0, 0.0, random.Random(0))
    assert delays(backoff, 5000)[-1] == 300.0


@given(
    initial=st.floats(0.001, 100.0),
    growth=st.floats(1.0, 1000.0),
    jitter=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_each_delay_lies_within_jitter_of_its_base_and_never_above_maximum(
    initial: float, growth: float, jitter: float, seed: int
) -> None:
    maximum = initial * growth
    backoff = Backoff(initial, maximum, jitter, random.Random(seed))
    base = initial
    for _ in range(40):
        delay = backoff.next_delay()
        assert base * (1 - jitter) <= delay <= base <= maximum
        base = min(base * 2, maximum)


@pytest.mark.parametrize(
    ("initial", "maximum", "jitter"),
    [(0.0, 1.0, 0.1), (-1.0, 1.0, 0.1), (2.0, 1.0, 0.1), (1.0, 2.0, -0.1), (1.0, 2.0, 1.5)],
)
def test_nonsense_settings_are_refused(initial: float, maximum: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, jitter, random.Random(0))
