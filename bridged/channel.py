"""One SSL socket (connectID 0..5) as a pure state machine: inputs in, actions out.

Sans-IO, like h11: no reactor, no sockets, no clock. Every input is a method call that
returns a list of actions (frozen dataclasses below); the Twisted glue executes them in
order. The channel decides *what* happens to the socket, the TCP client and the bytes in
between; the glue decides *how*.

States of the SSL connection (``ChannelState``, an IntEnum: metrics export the numbers)::

                    OpenSocket                 open_result(0)
      +--------+ -----------------> +---------+ -------------> +------+
      | CLOSED |                    | OPENING |                | OPEN |
      +--------+ <----------------- +---------+                +------+
        ^    ^    open failed: StartTimer('reopen'),             |  |
        |    |    then OpenSocket when it fires                  |  | CloseSocket
        |    |                                                   |  | (all flushed,
        |    |                                  +---------+      |  |  or a send failed)
        |    +------------- close_done() ------ | CLOSING | <----|--+
        |                                       +---------+      |
        +------- remote_closed(): "closed" URC, no CloseSocket --+

``module_lost()`` takes any state straight to CLOSED. Besides the state, two flags:
``module_is_ready`` (nothing opens while the module is not ready) and ``reopen_pending``
(CLOSED, waiting for the 'reopen' timer of the backoff).

Modes:

- ``on-demand``: a client connecting opens the socket; one SSL connection per client. When
  the client leaves, what it wrote is still sent, then the socket is closed. A client that
  connects while the previous client's connection is still flushing or closing waits
  (attached, its writes queued) until that connection is closed, then gets its own.
  Open failures are retried ``open_retries`` times with backoff, then the client is closed.
- ``persistent``: the socket is opened when the module is ready and reopened with backoff,
  forever. Clients attach to and detach from it; received bytes that arrive while no
  client is attached are buffered (bounded) for the next client.

What happens to bytes (the invariants the tests check):

- Every byte a client wrote is either confirmed by a successful send or its client got
  ``CloseClient``; bytes that can no longer be sent are reported by ``CountTxLost`` (also for
  a client that already left). Nothing is dropped silently.
- A broken stream closes the client, in both modes: when the SSL connection ends other than
  by our own orderly close (``remote_closed``, a failed send, module lost), its attached
  client is closed. A persistent channel reconnects underneath, but the client's protocol
  state (a login, an MQTT session, a half-sent request) died with the old TLS session, so
  keeping the client attached to a fresh connection would lie to it. The app reconnects.
- Received bytes reach the client in order, exactly once; bytes that cannot be delivered
  or buffered are reported by ``CountRxDropped``.
- Flow control: ``PauseClient`` when the unconfirmed bytes reach ``send_max_bytes``,
  ``ResumeClient`` when they fall to half of it (the glue stops reading the TCP client).

Stale inputs (a result for an operation the channel no longer waits for, e.g. after
``module_lost``) change nothing and return ``[Ignored(...)]`` for the log.

Contract with the glue:

- Forward client events only from the attached client's connection: after ``CloseClient``
  or ``RefuseClient`` that TCP connection's later events must not reach the channel.
- Stale results must not outlive what voided them: results of operations started before
  ``module_lost()`` may arrive while the module is not ready (ignored), never after the
  next ``module_ready()``; a send pending when ``remote_closed()`` is called must be
  failed right after it (ignored), before anything else reaches the channel. A result
  that arrived later could be taken for the next connection's.
- Send path: on ``DataReady`` (and after ``Scheduler.done()``) ask the scheduler for a
  channel, send ``channel.next_chunk()``, report ``send_done(len(chunk))`` or
  ``send_failed(reason)`` when the ``+QSSLSEND`` result is in.
- ``CloseClient``: close the TCP connection after writing all data delivered so far (EOF).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Concatenate, Literal, ParamSpec

from bridged.backoff import Backoff

__all__ = [
    "REOPEN_TIMER",
    "Action",
    "CancelTimer",
    "Channel",
    "ChannelState",
    "CloseClient",
    "CloseSocket",
    "CountRxDropped",
    "CountTxLost",
    "DataReady",
    "DeliverToClient",
    "Ignored",
    "Mode",
    "OpenSocket",
    "PauseClient",
    "QueueLimits",
    "ReconnectPolicy",
    "RefuseClient",
    "ResumeClient",
    "StartTimer",
    "StateChanged",
]

REOPEN_TIMER = "reopen"

Mode = Literal["on-demand", "persistent"]
_MODES: tuple[Mode, ...] = ("on-demand", "persistent")


class ChannelState(IntEnum):
    CLOSED = 0
    OPENING = 1
    OPEN = 2
    CLOSING = 3


@dataclass(frozen=True, slots=True)
class QueueLimits:
    send_max_bytes: int = 65536  # unconfirmed client bytes at which the client is paused
    recv_buffer_bytes: int = 65536  # persistent mode: received bytes kept while no client


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    initial: float = 1.0  # seconds before the first retry
    max: float = 300.0  # the longest wait between retries
    jitter: float = 0.2  # fraction by which a wait is randomly shortened
    open_retries: int = 3  # on-demand: retries after the first failed open (0: no retry)


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Run AT+QSSLOPEN; report ``open_result(err)`` or ``open_error(reason)``."""


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Run AT+QSSLCLOSE; report ``close_done()`` whatever its outcome."""


@dataclass(frozen=True, slots=True)
class DeliverToClient:
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the TCP client after writing everything delivered to it (EOF); detached now."""

    reason: str


@dataclass(frozen=True, slots=True)
class RefuseClient:
    """Close the TCP connection that just arrived; the attached client is unaffected."""

    reason: str


@dataclass(frozen=True, slots=True)
class PauseClient:
    """Stop reading from the TCP client."""


@dataclass(frozen=True, slots=True)
class ResumeClient:
    """Read from the TCP client again."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start the named timer; when it fires, call ``timer_fired(name)``."""

    name: str
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class DataReady:
    """The channel has become sendable: poke the scheduler."""


@dataclass(frozen=True, slots=True)
class CountRxDropped:
    """Received bytes thrown away (no client to take them, or the buffer is full)."""

    n: int
    reason: str


@dataclass(frozen=True, slots=True)
class CountTxLost:
    """Client bytes that will never be confirmed sent (their client is closed or gone)."""

    n: int
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: ChannelState
    new: ChannelState
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An input that changed nothing (stale result, benign race); for the debug log."""

    event: str
    reason: str


Action = (
    OpenSocket
    | CloseSocket
    | DeliverToClient
    | CloseClient
    | RefuseClient
    | PauseClient
    | ResumeClient
    | StartTimer
    | CancelTimer
    | DataReady
    | CountRxDropped
    | CountTxLost
    | StateChanged
    | Ignored
)


# --- the state machine --------------------------------------------------------------------

_P = ParamSpec("_P")


def _input(
    method: Callable[Concatenate[Channel, _P], list[Action]],
) -> Callable[Concatenate[Channel, _P], list[Action]]:
    """Every input ends the same way: flow control for the client, and a scheduler poke
    if the input made the channel sendable."""

    @functools.wraps(method)
    def run(channel: Channel, /, *args: _P.args, **kwargs: _P.kwargs) -> list[Action]:
        could_send = channel.sendable() > 0
        actions = method(channel, *args, **kwargs)
        channel._update_flow_control(actions)
        if not could_send and channel.sendable() > 0:
            actions.append(DataReady())
        return actions

    return run


class Channel:
    def __init__(
        self,
        connect_id: int,
        mode: Mode,
        *,
        limits: QueueLimits,
        reconnect: ReconnectPolicy,
        max_chunk: int,
        rng: random.Random,
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if limits.send_max_bytes < 1 or limits.recv_buffer_bytes < 0:
            raise ValueError(f"bad queue limits: {limits}")
        if reconnect.open_retries < 0:
            raise ValueError(f"open_retries must be >= 0, got {reconnect.open_retries}")
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self.connect_id = connect_id
        self.mode: Mode = mode
        self._limits = limits
        self._open_retries = reconnect.open_retries
        self._max_chunk = max_chunk
        self._backoff = Backoff(reconnect.initial, reconnect.max, reconnect.jitter, rng)

        self._state = ChannelState.CLOSED
        self._module_ready = False
        self._reopen_pending = False
        self._client = False
        self._paused = False
        # Client bytes not yet handed out by next_chunk(), oldest first.
        self._queue = bytearray()
        # Size of the chunk handed out and not yet confirmed (0: none in flight).
        self._in_flight = 0
        # On-demand only. The connection (or the retrying to open it) belongs to a client
        # that is gone; the first `_orphan_bytes` of the queue are its bytes still to send.
        # A client attached meanwhile waits for its own connection; its bytes queue behind.
        self._orphaned = False
        self._orphan_bytes = 0
        # Persistent only: received bytes waiting for a client.
        self._recv_buffer = bytearray()

    def __repr__(self) -> str:
        return (
            f"<Channel {self.connect_id} {self.mode} {self._state.name}"
            f" client={self._client} queued={self.queued_bytes}>"
        )

    # --- read-only view (metrics, scheduler, tests) ---

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def module_is_ready(self) -> bool:
        return self._module_ready

    @property
    def reopen_pending(self) -> bool:
        """CLOSED and waiting for the 'reopen' timer."""
        return self._reopen_pending

    @property
    def client_attached(self) -> bool:
        return self._client

    @property
    def queued_bytes(self) -> int:
        """Client bytes accepted and not yet confirmed sent (queued plus in flight)."""
        return len(self._queue) + self._in_flight

    @property
    def recv_buffered_bytes(self) -> int:
        return len(self._recv_buffer)

    # --- scheduler interface ---

    def set_max_chunk(self, max_chunk: int) -> None:
        """The module's largest send (its profile's; known once the module is identified)."""
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self._max_chunk = max_chunk

    def sendable(self) -> int:
        """Bytes that may go out now: OPEN, no chunk in flight, and only the current
        connection's bytes (not those of a client waiting for its own connection)."""
        if self._state is not ChannelState.OPEN or self._in_flight:
            return 0
        return self._orphan_bytes if self._orphaned else len(self._queue)

    def next_chunk(self) -> bytes:
        """Take up to ``max_chunk`` sendable bytes as the chunk in flight. Everything
        queued is coalesced: one full send costs far less serial time than many small."""
        size = min(self._max_chunk, self.sendable())
        if size == 0:
            raise RuntimeError(f"{self!r}: next_chunk() with nothing sendable")
        chunk = bytes(self._queue[:size])
        del self._queue[:size]
        self._in_flight = size
        if self._orphaned:
            self._orphan_bytes -= size
        return chunk

    # --- module events ---

    @_input
    def module_ready(self) -> list[Action]:
        if self._module_ready:
            return [Ignored("module_ready", "module already ready")]
        self._module_ready = True
        actions: list[Action] = []
        if self._can_open_now() and self._wants_connection():
            self._open("module ready", actions)
        return actions

    @_input
    def module_lost(self, reason: str) -> list[Action]:
        """Module rebooted or the serial line is gone: every operation in flight is void."""
        actions: list[Action] = []
        self._module_ready = False
        self._set_state(ChannelState.CLOSED, reason, actions)
        self._cancel_reopen(actions)
        # Nothing unconfirmed can be confirmed any more, and a waiting client's connection
        # will not come soon: close whoever is attached.
        lost = self.queued_bytes
        self._queue.clear()
        self._in_flight = 0
        self._orphaned = False
        self._orphan_bytes = 0
        if self._client:
            self._close_client(reason, actions)
        if lost:
            actions.append(CountTxLost(lost, reason))
        self._backoff.reset()
        return actions

    # --- client events ---

    @_input
    def client_connected(self) -> list[Action]:
        if self._client:
            return [RefuseClient(f"connectID {self.connect_id} already has a client")]
        self._client = True
        self._paused = False
        actions: list[Action] = []
        if self.mode == "persistent":
            if self._recv_buffer:
                actions.append(DeliverToClient(bytes(self._recv_buffer)))
                self._recv_buffer.clear()
        elif not self._orphaned and self._can_open_now():
            self._open("client connected", actions)
        # Otherwise the client waits: for the module, or for the previous client's
        # connection to finish.
        return actions

    @_input
    def client_data(self, data: bytes) -> list[Action]:
        if not self._client:
            # The glue should not send these; if it does, they are still accounted for.
            return [CountTxLost(len(data), "data from a client that is not attached")]
        self._queue += data
        return []

    @_input
    def client_closed(self) -> list[Action]:
        """The TCP client went away (EOF or disconnect)."""
        if not self._client:
            return [Ignored("client_closed", "no client attached")]
        self._client = False
        self._paused = False
        actions: list[Action] = []
        if self.mode == "persistent":
            return actions  # its queued bytes still go out on the persistent connection
        if self._orphaned:
            # It was waiting for its own connection, which never started: nothing of it
            # was sent, and the connection in progress is not its to use.
            lost = len(self._queue) - self._orphan_bytes
            del self._queue[self._orphan_bytes :]
            if lost:
                actions.append(CountTxLost(lost, "client left before its connection opened"))
            return actions
        # The owner left: flush what it wrote, then close.
        self._orphaned = True
        self._orphan_bytes = len(self._queue)
        if self._state is ChannelState.OPEN:
            self._close_if_flushed("client left", actions)
        elif self._state is ChannelState.CLOSED and not self._orphan_bytes:
            self._session_over(actions)
        # OPENING: decided by the open result. CLOSED with bytes: the retry timer or the
        # module becoming ready opens the connection to flush them.
        return actions

    # --- socket results and URCs ---

    @_input
    def open_result(self, err: int) -> list[Action]:
        """``+QSSLOPEN: 1,<id>,<err>``: 0 is success."""
        if self._state is not ChannelState.OPENING:
            return [Ignored(f"open_result({err})", f"not opening ({self._state.name})")]
        if err != 0:
            return self._open_failed(f"open failed: error {err}")
        actions: list[Action] = []
        self._set_state(ChannelState.OPEN, "opened", actions)
        self._backoff.reset()
        if self._orphaned:
            self._close_if_flushed("client left while opening", actions)
        return actions

    @_input
    def open_error(self, reason: str) -> list[Action]:
        """The open command failed without a result code (ERROR, timeout, ...)."""
        if self._state is not ChannelState.OPENING:
            return [Ignored("open_error", f"not opening ({self._state.name})")]
        return self._open_failed(f"open failed: {reason}")

    @_input
    def send_done(self, n: int) -> list[Action]:
        """``+QSSLSEND: 1,<id>,0`` for the chunk in flight, of ``n`` bytes."""
        if not self._in_flight:
            return [Ignored("send_done", "no chunk in flight")]
        if n != self._in_flight:
            raise ValueError(f"{self!r}: send_done({n}) for a chunk of {self._in_flight}")
        self._in_flight = 0
        actions: list[Action] = []
        if self._orphaned:
            self._close_if_flushed("flushed after client left", actions)
        return actions

    @_input
    def send_failed(self, reason: str) -> list[Action]:
        """The chunk in flight failed (ERROR, err != 0, timeout). How much of it reached the
        TLS stream is unknown, so the stream is broken: close the client and the socket."""
        if not self._in_flight:
            return [Ignored("send_failed", "no chunk in flight")]
        actions: list[Action] = []
        reason = f"send failed: {reason}"
        self._abandon_stream(reason, actions)
        self._set_state(ChannelState.CLOSING, reason, actions)
        actions.append(CloseSocket())
        return actions

    @_input
    def close_done(self) -> list[Action]:
        """AT+QSSLCLOSE finished, successfully or not: the socket is closed either way."""
        if self._state is not ChannelState.CLOSING:
            return [Ignored("close_done", f"not closing ({self._state.name})")]
        actions: list[Action] = []
        self._set_state(ChannelState.CLOSED, "closed", actions)
        self._after_connection_ended(actions)
        return actions

    @_input
    def remote_closed(self) -> list[Action]:
        """``+QSSLURC: "closed"``: the module closed the socket itself (no CloseSocket)."""
        if self._state is not ChannelState.OPEN:
            # CLOSING: our close is racing it and close_done() follows. OPENING: the open
            # result decides; a stale URC must not end a new connection.
            return [Ignored("remote_closed", f"not open ({self._state.name})")]
        actions: list[Action] = []
        self._set_state(ChannelState.CLOSED, "remote closed", actions)
        self._abandon_stream("remote closed", actions)
        self._after_connection_ended(actions)
        return actions

    @_input
    def recv(self, data: bytes) -> list[Action]:
        """``+QSSLURC: "recv"``: bytes from the server, in the order the module reports."""
        if not data:
            return []
        if self._state is not ChannelState.OPEN:
            # A connection this channel has given up (closing after a failed send) or
            # never had (the module kept it across a serial hang-up): its bytes belong to
            # no client, least of all to one waiting for a connection of its own.
            return [CountRxDropped(len(data), f"socket not open ({self._state.name.lower()})")]
        if self._client and not self._orphaned:
            return [DeliverToClient(data)]
        if self.mode == "on-demand":
            # Its client is gone (or a waiting client's connection is not this one).
            return [CountRxDropped(len(data), "no client for this connection")]
        room = self._limits.recv_buffer_bytes - len(self._recv_buffer)
        self._recv_buffer += data[:room]
        if len(data) > room:
            return [CountRxDropped(len(data) - room, "receive buffer full, no client")]
        return []

    @_input
    def timer_fired(self, name: str) -> list[Action]:
        if name != REOPEN_TIMER or not self._reopen_pending:
            return [Ignored(f"timer_fired({name!r})", "no such timer running")]
        self._reopen_pending = False
        actions: list[Action] = []
        if self._can_open_now() and self._wants_connection():
            self._open("retrying after backoff", actions)
        return actions

    # --- internals ---

    def _set_state(self, new: ChannelState, reason: str, actions: list[Action]) -> None:
        if new is not self._state:
            actions.append(StateChanged(self._state, new, reason))
            self._state = new

    def _can_open_now(self) -> bool:
        return (
            self._module_ready and self._state is ChannelState.CLOSED and not self._reopen_pending
        )

    def _wants_connection(self) -> bool:
        if self.mode == "persistent":
            return True
        if self._orphaned:
            return self._orphan_bytes > 0
        return self._client

    def _open(self, reason: str, actions: list[Action]) -> None:
        self._set_state(ChannelState.OPENING, reason, actions)
        actions.append(OpenSocket())

    def _schedule_reopen(self, actions: list[Action]) -> None:
        self._reopen_pending = True
        actions.append(StartTimer(REOPEN_TIMER, self._backoff.next_delay()))

    def _cancel_reopen(self, actions: list[Action]) -> None:
        if self._reopen_pending:
            self._reopen_pending = False
            actions.append(CancelTimer(REOPEN_TIMER))

    def _close_client(self, reason: str, actions: list[Action]) -> None:
        actions.append(CloseClient(reason))
        self._client = False
        self._paused = False

    def _close_if_flushed(self, reason: str, actions: list[Action]) -> None:
        """On-demand, owner gone: once its bytes are all confirmed, close the socket."""
        if self._state is ChannelState.OPEN and not self._orphan_bytes and not self._in_flight:
            self._set_state(ChannelState.CLOSING, reason, actions)
            actions.append(CloseSocket())

    def _abandon_stream(self, reason: str, actions: list[Action]) -> None:
        """The connection's byte stream is broken: whatever of it is unconfirmed never will
        be. Close the client that owns it; count the bytes. A waiting client (on-demand)
        keeps its bytes for its own connection."""
        if self._orphaned:
            lost = self._orphan_bytes + self._in_flight
            del self._queue[: self._orphan_bytes]
        else:
            lost = len(self._queue) + self._in_flight
            self._queue.clear()
            if self._client:
                self._close_client(reason, actions)
        self._in_flight = 0
        if lost:
            actions.append(CountTxLost(lost, reason))
        if self.mode == "on-demand":
            # Whatever remains of this connection (CLOSING) belongs to nobody.
            self._orphaned = True
            self._orphan_bytes = 0

    def _open_failed(self, reason: str) -> list[Action]:
        actions: list[Action] = []
        self._set_state(ChannelState.CLOSED, reason, actions)
        if self.mode == "persistent":
            self._schedule_reopen(actions)  # forever; a waiting client keeps waiting
        elif not self._wants_connection():
            self._session_over(actions)
        elif self._backoff.attempts < self._open_retries:
            self._schedule_reopen(actions)
        else:
            attempts = self._backoff.attempts + 1
            self._abandon_stream(f"{reason} (gave up after {attempts} attempts)", actions)
            self._session_over(actions)
        return actions

    def _after_connection_ended(self, actions: list[Action]) -> None:
        """CLOSED after a connection that was open."""
        if self.mode == "persistent":
            self._schedule_reopen(actions)
        else:
            self._session_over(actions)

    def _session_over(self, actions: list[Action]) -> None:
        """On-demand: the current client's connection is finished (CLOSED for good). A
        client waiting meanwhile gets its own, with a fresh retry budget."""
        self._orphaned = False
        self._orphan_bytes = 0
        self._cancel_reopen(actions)
        self._backoff.reset()
        if self._client and self._can_open_now():
            self._open("next client", actions)

    def _update_flow_control(self, actions: list[Action]) -> None:
        """Pause the client at the high-water mark, resume it at half of it."""
        if not self._client:
            return
        if not self._paused and self.queued_bytes >= self._limits.send_max_bytes:
            self._paused = True
            actions.append(PauseClient())
        elif self._paused and self.queued_bytes <= self._limits.send_max_bytes // 2:
            self._paused = False
            actions.append(ResumeClient())
