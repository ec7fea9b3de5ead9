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
socket had earlier sends unconfirmed took none of it (:meth:`refused`): the glue puts the
chunk back and the window falls to 1 at once. The same ERROR comes from a module whose
connection is ending, so the verdict waits (:meth:`settle`): if that socket's earlier sends
are then all confirmed on the same connection, the module refused the overlap and the
window stays 1 for good (logged once); if its connection ends first, the ERROR was the
connection's and the profile's window comes back.

Fairness: a cursor walks the channels in order and starts each search just after the last
channel served, so a channel with data waits for at most one send of every other channel
(round-robin by turns; chunk sizes are each channel's own business: ``next_chunk``
coalesces up to ``max_chunk``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = ["Refusal", "Scheduler", "SendSource", "Settled"]


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

    @property
    def epoch(self) -> int:
        """Its current connection (a new one at every open)."""
        ...

    @property
    def stream_open(self) -> bool:
        """Its current connection is open (its stream goes on)."""
        ...


S = TypeVar("S", bound=SendSource)


class Refusal(Enum):
    """What an ERROR before ``>`` to a send means (:meth:`Scheduler.refused`)."""

    #: The send was not pipelined: the socket's send failed, as ever.
    FAILED = "failed"
    #: Pipelined: the chunk was not taken and goes back to the head of its queue; the
    #: window is 1 until :meth:`Scheduler.settle` decides why.
    RETRY = "retry"


class Settled(Enum):
    """:meth:`Scheduler.settle`'s verdict on a refused pipelined send."""

    #: The socket's earlier sends were confirmed on the same connection: the module does
    #: not take pipelined sends. The window stays 1 (log it: this happens once).
    FELL_BACK = "fell-back"
    #: The socket's connection ended first: the ERROR was its end. The window is the
    #: profile's again.
    RESTORED = "restored"


class Scheduler(Generic[S]):
    def __init__(self, channels: Sequence[S], max_unconfirmed: int = 1) -> None:
        self._channels: tuple[S, ...] = tuple(channels)
        self._cursor = 0  # index of the channel that gets the first look on the next pick
        self._busy = False
        self._picked: S | None = None  # the channel whose send holds the line
        self._pipelined = False  # ... picked with earlier sends unconfirmed
        self._profile_window = max_unconfirmed
        self._fell_back = False
        # A refused pipelined send awaiting its verdict: the channel and its epoch then.
        self._suspect: tuple[S, int] | None = None
        self.set_max_unconfirmed(max_unconfirmed)  # checks it
        self._apply_window()

    def set_channels(self, channels: Sequence[S]) -> None:
        """Serve these channels from now on (a reload); a send in flight keeps the line."""
        self._channels = tuple(channels)
        self._cursor = 0
        if self._suspect is not None and self._suspect[0] not in self._channels:
            self._suspect = None  # its socket is gone: no verdict to wait for
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
            self._suspect = None
            self._apply_window()  # else the channels have it already (asked every send)

    @property
    def window(self) -> int:
        """Sends per socket that may await their ``+QSSLSEND`` result now."""
        return 1 if self._fell_back or self._suspect is not None else self._profile_window

    @property
    def fell_back(self) -> bool:
        """The module refused pipelined sends: the window is 1 whatever the profile says."""
        return self._fell_back

    def refused(self) -> Refusal:
        """The module answered ERROR before ``>`` to the send holding the line (call it
        before :meth:`done`). Pipelined (its socket had earlier sends unconfirmed when it
        was picked): the chunk goes back and the window is 1 until :meth:`settle`."""
        if not self._busy or not self._pipelined or self._picked is None:
            return Refusal.FAILED
        if not self._fell_back and self._suspect is None:
            self._suspect = (self._picked, self._picked.epoch)
            self._apply_window()
        return Refusal.RETRY

    def settle(self) -> Settled | None:
        """The verdict on a refused pipelined send, once there is one (call it before
        :meth:`pick`; None: nothing to decide, or not yet)."""
        if self._suspect is None:
            return None
        channel, epoch = self._suspect
        if channel.epoch != epoch or not channel.stream_open:
            self._suspect = None
            self._apply_window()
            return Settled.RESTORED
        if channel.unconfirmed_sends == 0:
            self._suspect = None
            self._fell_back = True
            self._apply_window()
            return Settled.FELL_BACK
        return None

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
                self._picked = channel
                self._pipelined = channel.unconfirmed_sends > 0
                return channel
        return None

    def done(self) -> None:
        """The line is free again (the send was accepted, or it failed)."""
        self._busy = False
        self._picked = None
        self._pipelined = False
