"""Fair round-robin over the channels that have data to send; one QSSLSEND on the line at a
time, and how many per socket may await their ``+QSSLSEND`` result (the send window).

Pure: it never sends anything itself. The glue asks ``pick()`` for the channel whose turn
it is, takes ``channel.next_chunk()`` from it, runs the send, and calls ``done()`` once the
serial line is free for the next AT+QSSLSEND (when the module has accepted the payload, or
the send failed), then asks ``pick()`` again. The send's ``+QSSLSEND`` result may come
later: a channel reports ``sendable() == 0`` while it has ``window`` chunks unconfirmed, so
other channels can use the line meanwhile (window 1: no channel ever has two chunks in
flight).

The send window: the module profile's ``max_unconfirmed_sends`` (1 unless the profile
says the module takes more), which the scheduler hands to every channel. Above 1, a
socket's next AT+QSSLSEND goes after the previous one's ``OK`` without waiting for its
result (pipelining). A module that answers ERROR before ``>`` to a send picked while its
socket had earlier sends unconfirmed refused it (it took no data): :meth:`refused` says
so, and the window falls to 1 for good, once; the glue puts the chunk back and logs it.

Fairness: a cursor walks the channels in order and starts each search just after the last
channel served, so a channel with data waits for at most one send of every other channel
(round-robin by turns; chunk sizes are each channel's own business: ``next_chunk``
coalesces up to ``max_chunk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = ["Refusal", "Scheduler", "SendSource"]


class SendSource(Protocol):
    """What the scheduler needs of a channel."""

    def sendable(self) -> int:
        """Bytes that may be sent right now (0: nothing, or not allowed now)."""
        ...

    @property
    def unconfirmed_sends(self) -> int:
        """Sends taken from it whose ``+QSSLSEND`` result has not come."""
        ...

    def set_max_unconfirmed(self, n: int) -> None:
        """The send window: it is not sendable while ``n`` sends are unconfirmed."""
        ...


S = TypeVar("S", bound=SendSource)


class Refusal(Enum):
    """What an ERROR before ``>`` to a send means (:meth:`Scheduler.refused`)."""

    #: The send was not pipelined: the socket's send failed, as ever.
    FAILED = "failed"
    #: The module refused a pipelined send: the window has just fallen to 1 (log it);
    #: the chunk was not taken and goes back to the head of its queue.
    FELL_BACK = "fell-back"
    #: A pipelined send refused after the fallback (a window set again meanwhile): the
    #: chunk goes back, nothing to log.
    RETRY = "retry"


class Scheduler(Generic[S]):
    def __init__(self, channels: Sequence[S], max_unconfirmed: int = 1) -> None:
        self._channels: tuple[S, ...] = tuple(channels)
        self._cursor = 0  # index of the channel that gets the first look on the next pick
        self._busy = False
        self._pipelined = False  # the send holding the line was picked with others unconfirmed
        self._profile_window = max_unconfirmed
        self._fell_back = False
        self.set_max_unconfirmed(max_unconfirmed)

    def set_channels(self, channels: Sequence[S]) -> None:
        """Serve these channels from now on (a reload); a send in flight keeps the line."""
        self._channels = tuple(channels)
        self._cursor = 0
        self._apply_window()

    @property
    def busy(self) -> bool:
        """A send holds the serial line."""
        return self._busy

    # --- the send window ---

    def set_max_unconfirmed(self, n: int) -> None:
        """The module profile's ``max_unconfirmed_sends``. A module that refused
        pipelining stays at 1 while the profile says the same; a different profile (the
        module identified, a reload) starts afresh."""
        if n < 1:
            raise ValueError(f"max_unconfirmed_sends must be >= 1, got {n}")
        if n != self._profile_window:
            self._profile_window = n
            self._fell_back = False
        self._apply_window()

    @property
    def window(self) -> int:
        """Sends per socket that may await their ``+QSSLSEND`` result now."""
        return 1 if self._fell_back else self._profile_window

    @property
    def fell_back(self) -> bool:
        """The module refused a pipelined send: the window is 1 whatever the profile says."""
        return self._fell_back

    def refused(self) -> Refusal:
        """The module answered ERROR before ``>`` to the send holding the line (call it
        before :meth:`done`). Pipelined (its socket had earlier sends unconfirmed when it
        was picked): the module refused the overlap, so the window falls to 1."""
        if not self._busy or not self._pipelined:
            return Refusal.FAILED
        if self._fell_back:
            return Refusal.RETRY
        self._fell_back = True
        self._apply_window()
        return Refusal.FELL_BACK

    def _apply_window(self) -> None:
        window = self.window
        for channel in self._channels:
            channel.set_max_unconfirmed(window)

    # --- turns ---

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
                self._pipelined = channel.unconfirmed_sends > 0
                return channel
        return None

    def done(self) -> None:
        """The line is free again (the send was accepted, or it failed)."""
        self._busy = False
        self._pipelined = False
