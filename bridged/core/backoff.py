"""Exponential backoff with jitter, for reopening SSL sockets.

Pure: no clock, no global random state. The caller injects a ``random.Random`` (seeded in
tests) and turns each delay into a timer itself.

Delays double from ``initial`` up to ``maximum``. Jitter only ever *shortens* a delay, by up
to the ``jitter`` fraction of it: ``delay = base * (1 - jitter * u)`` with ``u`` uniform in
[0, 1). Two reasons: a configured ``maximum`` is then a true maximum, and sockets that failed
together (one module reboot closes all six) spread out instead of retrying in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffBounds"]


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffBounds:
    """The first and the longest delay of a backoff, in seconds (``serial.reopen_backoff``)."""

    initial: float = 1.0
    max: float = 30.0


class Backoff:
    """Delays for successive retries: ``initial``, ``2*initial``, ... capped at ``maximum``."""

    def __init__(self, initial: float, maximum: float, jitter: float, rng: random.Random) -> None:
        if initial <= 0:
            raise ValueError(f"initial delay must be > 0, got {initial}")
        if maximum < initial:
            raise ValueError(f"maximum delay {maximum} is below the initial delay {initial}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter is a fraction in [0, 1], got {jitter}")
        self._initial = initial
        self._maximum = maximum
        self._jitter = jitter
        self._rng = rng
        self._attempts = 0
        self._base = initial

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last ``reset()``."""
        return self._attempts

    def next_delay(self) -> float:
        """The delay before the next attempt, in seconds; counts one attempt."""
        delay = self._base * (1 - self._jitter * self._rng.random())
        self._attempts += 1
        # Grow the base rather than computing initial * 2**attempts: no overflow, ever.
        self._base = min(self._base * 2, self._maximum)
        return delay

    def reset(self) -> None:
        """Start over from ``initial`` (after a success)."""
        self._attempts = 0
        self._base = self._initial
