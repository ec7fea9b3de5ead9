"""Fair round-robin over the channels that have data to send; one QSSLSEND at a time.

Pure: it never sends anything itself. The glue asks ``pick()`` for the channel whose turn
it is, takes ``channel.next_chunk()`` from it, runs the send, and calls ``done()`` once the
serial line is free for the next AT+QSSLSEND (when the module has accepted the payload, or
the send failed), then asks ``pick()`` again. The send's final ``+QSSLSEND`` result may come
later: a channel with a chunk unconfirmed reports ``sendable() == 0`` meanwhile, so other
channels can use the line but no channel ever has two chunks in flight.

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

    def set_channels(self, channels: Sequence[S]) -> None:
        """Serve these channels from now on (a reload); a send in flight keeps the line."""
        self._channels = tuple(channels)
        self._cursor = 0

    @property
    def busy(self) -> bool:
        """A send holds the serial line."""
        return self._busy

    def pick(self) -> S | None:
        """The next channel to send from, marking the line busy; None if busy or all idle."""
        if self._busy:
            return None
        count = len(self._channels)
        if not count:
            return None
        for step in range(count):
            index = (self._cursor + step) % count
            channel = self._channels[index]
            if channel.sendable() > 0:
                self._cursor = (index + 1) % count
                self._busy = True
                return channel
        return None

    def done(self) -> None:
        """The line is free again (the send was accepted, or it failed)."""
        self._busy = False
