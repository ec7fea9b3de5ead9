"""Fair round-robin over the channels that have data to send; one QSSLSEND at a time.

Pure: it never sends anything itself. The glue asks ``pick()`` for the channel whose turn
it is, takes ``channel.next_chunk()`` from it, runs the send, and calls ``done()`` when the
send's result is in (success or failure alike), then asks ``pick()`` again.

Fairness: a cursor walks the channels in order and starts each search just after the last
channel served, so a channel with data waits for at most one send of every other channel
(round-robin by turns; chunk sizes are each channel's own business: ``next_chunk``
coalesces up to ``max_chunk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["Scheduler", "SendSource"]


class SendSource(Protocol):
    """What the scheduler needs of a channel."""

    def sendable(self) -> int:
        """Bytes that may be sent right now (0: nothing, or not allowed now)."""
        ...


S = TypeVar("S", bound=SendSource)


class Scheduler(Generic[S]):
    def __init__(self, channels: Sequence[S]) -> None:
        self._channels: tuple[S, ...] = tuple(channels)
        self._cursor = 0  # index of the channel that gets the first look on the next pick
        self._busy = False

    @property
    def busy(self) -> bool:
        """A send is in flight on the serial line."""
        return self._busy

    def pick(self) -> S | None:
        """The next channel to send from, marking the line busy; None if busy or all idle."""
        if self._busy:
            return None
        count = len(self._channels)
        for step in range(count):
            index = (self._cursor + step) % count
            channel = self._channels[index]
            if channel.sendable() > 0:
                self._cursor = (index + 1) % count
                self._busy = True
                return channel
        return None

    def done(self) -> None:
        """The send in flight finished (either way): the line is free."""
        self._busy = False
