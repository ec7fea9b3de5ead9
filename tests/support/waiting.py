"""Waiting inside the reactor without blocking it: conditions with deadlines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor as _default_reactor
from twisted.internet import task
from twisted.internet.defer import Deferred

_reactor: Any = _default_reactor


def now() -> float:
    """The reactor's clock (what the emulator's delays are measured against)."""
    return float(_reactor.seconds())


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after ``seconds`` (for pacing, not for conditions)."""
    return task.deferLater(_reactor, seconds, lambda: None)


async def wait_until(
    condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.01, what: str = ""
) -> None:
    """Poll ``condition`` until truthy; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = _reactor.seconds() + timeout
    while not condition():
        if _reactor.seconds() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s: {what or condition}")
        await sleep(interval)
