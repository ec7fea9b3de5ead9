"""Callbacks at absolute times, run in time order and, for equal times, FIFO.

Twisted's ``callLater`` does not promise FIFO for equal deadlines; the emulator needs
it so recv data, the closed URC and send results keep the order they happened in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from twisted.internet.interfaces import IDelayedCall, IReactorTime


@dataclass(order=True)
class _Entry:
    due: float
    seq: int
    action: Callable[[], None] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)


class TimelineHandle:
    """Returned by :meth:`Timeline.at`; ``cancel()`` is idempotent."""

    def __init__(self, entry: _Entry) -> None:
        self._entry = entry

    def cancel(self) -> None:
        self._entry.cancelled = True


class Timeline:
    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._wakeup: IDelayedCall | None = None
        self._running = False

    def now(self) -> float:
        return self._clock.seconds()

    def at(self, due: float, action: Callable[[], None]) -> TimelineHandle:
        """Run ``action`` at ``due`` (reactor seconds), or soon if that has passed."""
        entry = _Entry(due, next(self._seq), action)
        heapq.heappush(self._heap, entry)
        self._schedule()
        return TimelineHandle(entry)

    def after(self, delay: float, action: Callable[[], None]) -> TimelineHandle:
        return self.at(self.now() + max(0.0, delay), action)

    def clear(self) -> None:
        """Forget everything pending (the module rebooted)."""
        self._heap.clear()
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        self._wakeup = None

    def _schedule(self) -> None:
        if self._running or not self._heap:
            return
        delay = max(0.0, self._heap[0].due - self.now())
        if self._wakeup is not None and self._wakeup.active():
            if self._wakeup.getTime() <= self.now() + delay:
                return
            self._wakeup.cancel()
        self._wakeup = self._clock.callLater(delay, self._run_due)

    def _run_due(self) -> None:
        self._wakeup = None
        self._running = True
        try:
            while self._heap and self._heap[0].due <= self.now():
                entry = heapq.heappop(self._heap)
                if not entry.cancelled:
                    entry.action()
        finally:
            self._running = False
        self._schedule()
