"""One SSL socket (connectID 0..5) as a pure state machine: inputs in, actions out.

Sans-IO, like h11: no reactor, no sockets, no clock. Every input is a method call that
returns a list of actions (frozen dataclasses below); the Twisted glue executes them in
order and decides nothing. The channel decides *what* happens to the socket, the TCP
client and the bytes in between; the glue only carries it out.

States of the SSL connection (``ChannelState``, an IntEnum: metrics export the numbers)::

                    OpenSocket                 open_result(0)
      +--------+ -----------------> +---------+ -------------> +------+
      | CLOSED |                    | OPENING |                | OPEN |
      +--------+ <----------------- +---------+                +------+
        ^    ^    open failed: StartTimer('reopen'),   |          |  |
        |    |    then OpenSocket when it fires        |          |  | CloseSocket
        |    |                      open failed with no result  |  | (all flushed, a send
        |    |                      or -6: CloseSocket first     |  |  failed, damaged data,
        |    |                                         v          |  |  idle, retired)
        |    |                                  +---------+      |  |
        |    +------------- close_done() ------ | CLOSING | <----|--+
        |                                       +---------+      |
        +------- remote_closed(): "closed" URC, no CloseSocket --+

``module_lost()`` takes any state straight to CLOSED. ``retire()`` takes the channel out of
service for good (a reload changed or removed its socket).

Epochs: every ``OpenSocket`` starts a new epoch (one per SSL connection); ``OpenSocket``,
``CloseSocket`` and each chunk taken by ``next_chunk()`` carry the epoch they belong to
(``channel.epoch`` right after ``next_chunk()``), and every result is reported with it. A
result whose epoch is not the current one, or that the channel no longer waits for, is
stale: it changes nothing and returns ``[Ignored(...)]``. So results may arrive in any
order, late, or after the module was lost and found again: the glue just forwards them.

Modes:

- ``on-demand``: a client connecting opens the socket; one SSL connection per client. When
  the client leaves, what it wrote is still sent, then the socket is closed. A client that
  connects while the previous client's connection is still flushing or closing waits
  (attached, its writes queued) until that connection is closed, then gets its own.
  Open failures are retried ``open_retries`` times with backoff, then the client is closed.
- ``persistent``: the socket is opened when the module is ready and reopened with backoff,
  forever. Clients attach to and detach from it; received bytes that arrive while no
  client is attached are buffered (bounded) for the next client, only while the same SSL
  connection lasts.

A client behaves as with a plain TCP peer:

- ``client_eof()`` (half-close): its bytes are still sent and the connection keeps
  delivering the server's bytes until the remote closes (the client gets EOF) or no
  traffic passed for ``half_close_timeout`` seconds. A client that half-closes without
  having sent anything is taken as gone (a closed socket looks the same on the wire: a
  readiness probe must not keep the next client waiting).
- A client arriving while another is attached is held (``HoldClient``) for up to
  ``handover_wait`` seconds: when the attached one leaves, it is attached
  (``AttachHeldClient``); otherwise it is refused.

What happens to bytes (the invariants the tests check):

- Every byte a client wrote is either confirmed by a successful send (``CountTxSent``) or
  its client got ``CloseClient``; bytes that can no longer be sent are reported by
  ``CountTxLost`` (also for a client that already left). Nothing is dropped silently.
- A stream never has a hole and never splices two SSL connections. When the SSL connection
  ends other than by our own orderly close, or its received data was damaged
  (``recv_damaged``), or the persistent buffer would overflow, the attached client is
  closed and the connection is closed too (``StreamBroken`` says why). A persistent
  channel reconnects underneath; the client's protocol state died with the old TLS
  session, so the app reconnects.
- Received bytes reach the client in order, exactly once; bytes that cannot be delivered
  or buffered are reported by ``CountRxDropped``.
- Flow control: ``PauseClient`` when the unconfirmed bytes reach ``send_max_bytes``,
  ``ResumeClient`` when they fall to half of it (the glue stops reading the TCP client).
- ``idle_timeout``: an open connection with no traffic either way for that long is closed
  (its client gets EOF).

The glue forwards client events only from the attached client's connection (after
``CloseClient`` or ``RefuseClient`` that TCP connection's later events must not reach the
channel), and the held client's departure as ``held_client_left()``.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Concatenate, Literal, ParamSpec

from bridged.core.backoff import Backoff

__all__ = [
    "HANDOVER_TIMER",
    "IDLE_TIMER",
    "REOPEN_TIMER",
    "SEND_STALL_TIMER",
    "Action",
    "AttachHeldClient",
    "CancelTimer",
    "Channel",
    "ChannelState",
    "CloseClient",
    "CloseSocket",
    "CountRxDropped",
    "CountTxLost",
    "CountTxSent",
    "DataReady",
    "DeliverToClient",
    "HoldClient",
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
    "StreamBroken",
    "Timeouts",
]

REOPEN_TIMER = "reopen"
IDLE_TIMER = "idle"
HANDOVER_TIMER = "handover"
SEND_STALL_TIMER = "send-stall"

Mode = Literal["on-demand", "persistent"]
_MODES: tuple[Mode, ...] = ("on-demand", "persistent")

# The module's code for "state error": the socket is still in use there (an earlier open
# that we gave up on finished after all). Close it before trying again.
STATE_ERROR = -6


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
    max: float = 60.0  # the longest wait between retries
    jitter: float = 0.2  # fraction by which a wait is randomly shortened
    open_retries: int = 3  # on-demand: retries after the first failed open (0: no retry)


@dataclass(frozen=True, slots=True)
class Timeouts:
    idle: float = 0.0  # close an open connection with no traffic for this long (0: never)
    half_close: float = 60.0  # ... once its client has half-closed (0: never)
    handover_wait: float = 2.0  # a new client waits this long for the attached one to leave
    # An attached client's bytes waiting on an open connection with no byte confirmed for
    # this long: the client is disconnected (its bytes counted lost) and the connection
    # closed, like TCP_USER_TIMEOUT, instead of keeping it waiting without end (0: never).
    send_stall: float = 0.0


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Run AT+QSSLOPEN; report ``open_result(err, epoch)`` or ``open_error(reason, epoch)``."""

    epoch: int = field(default=0, compare=False)  # read it; equality is about the action


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Run AT+QSSLCLOSE; report ``close_done(epoch)`` whatever its outcome."""

    epoch: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class DeliverToClient:
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the TCP client after writing everything delivered to it (EOF); detached now."""

    reason: str


@dataclass(frozen=True, slots=True)
class RefuseClient:
    """Close the TCP connection that just arrived (or was held); the attached client is
    unaffected."""

    reason: str


@dataclass(frozen=True, slots=True)
class HoldClient:
    """Keep the TCP connection that just arrived, not reading it, until
    ``AttachHeldClient`` or ``RefuseClient``."""


@dataclass(frozen=True, slots=True)
class AttachHeldClient:
    """The held connection is now the attached client: read it."""


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
class CountTxSent:
    """Client bytes confirmed sent by ``+QSSLSEND: 1,<id>,0`` (for the current stream)."""

    n: int


@dataclass(frozen=True, slots=True)
class StreamBroken:
    """The connection was ended by us because its stream could not go on whole.
    ``label`` is stable (a metric label): damaged_data, recv_buffer_full, idle_timeout,
    reconfigured, send_stall."""

    label: str
    detail: str


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
    | HoldClient
    | AttachHeldClient
    | PauseClient
    | ResumeClient
    | StartTimer
    | CancelTimer
    | DataReady
    | CountRxDropped
    | CountTxLost
    | CountTxSent
    | StreamBroken
    | StateChanged
    | Ignored
)


# --- the state machine --------------------------------------------------------------------

_P = ParamSpec("_P")


def _input(
    method: Callable[Concatenate[Channel, _P], list[Action]],
) -> Callable[Concatenate[Channel, _P], list[Action]]:
    """Every input ends the same way: a held client takes a free place, flow control for
    the client, the idle timer, and a scheduler poke if the input made the channel
    sendable."""

    @functools.wraps(method)
    def run(channel: Channel, /, *args: _P.args, **kwargs: _P.kwargs) -> list[Action]:
        could_send = channel.sendable() > 0
        actions = method(channel, *args, **kwargs)
        if channel._held and not channel._client:
            channel._held = False
            actions.append(CancelTimer(HANDOVER_TIMER))
            actions.append(AttachHeldClient())
            channel._attach(actions)
        channel._update_flow_control(actions)
        channel._update_idle_timer(actions)
        channel._update_send_stall_timer(actions)
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
        timeouts: Timeouts = Timeouts(handover_wait=0.0),
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if limits.send_max_bytes < 1 or limits.recv_buffer_bytes < 0:
            raise ValueError(f"bad queue limits: {limits}")
        if reconnect.open_retries < 0:
            raise ValueError(f"open_retries must be >= 0, got {reconnect.open_retries}")
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        if min(timeouts.idle, timeouts.half_close, timeouts.handover_wait, timeouts.send_stall) < 0:
            raise ValueError(f"bad timeouts: {timeouts}")
        self.connect_id = connect_id
        self.mode: Mode = mode
        self._limits = limits
        self._timeouts = timeouts
        self._open_retries = reconnect.open_retries
        self._max_chunk = max_chunk
        self._backoff = Backoff(reconnect.initial, reconnect.max, reconnect.jitter, rng)

        self._state = ChannelState.CLOSED
        self._epoch = 0  # of the current (or last) SSL connection; +1 at every OpenSocket
        self._module_ready = False
        self._reopen_pending = False
        self._retired = False
        self._client = False
        self._client_eof = False  # the attached client half-closed (shut its write side)
        self._client_wrote = False  # the attached client sent something
        self._held = False  # a client waits for the attached one to leave
        self._paused = False
        # CLOSING after an open that failed without a result, or with -6: once closed,
        # the failure is handled (retry or give up) with this reason.
        self._open_failure: str | None = None
        # Client bytes not yet handed out by next_chunk(), oldest first.
        self._queue = bytearray()
        # Size of the chunk handed out and not yet confirmed (0: none in flight).
        self._in_flight = 0
        # On-demand only. The connection (or the retrying to open it) belongs to a client
        # that is gone; the first `_orphan_bytes` of the queue are its bytes still to send.
        # A client attached meanwhile waits for its own connection; its bytes queue behind.
        self._orphaned = False
        self._orphan_bytes = 0
        # Persistent only: received bytes of the current connection waiting for a client.
        self._recv_buffer = bytearray()
        self._idle_timer_delay = 0.0  # the idle timer running (0: none)
        self._traffic = False  # bytes moved during the current input
        self._send_stall_running = False  # the send-stall timer runs
        self._tx_progress = False  # a send was confirmed during the current input

    def __repr__(self) -> str:
        return (
            f"<Channel {self.connect_id} {self.mode} {self._state.name} epoch={self._epoch}"
            f" client={self._client} queued={self.queued_bytes}>"
        )

    # --- read-only view (metrics, scheduler, status, tests) ---

    @property
    def state(self) -> ChannelState:
        return self._state

    @property
    def epoch(self) -> int:
        """The current SSL connection's epoch; the chunk just taken belongs to it."""
        return self._epoch

    @property
    def module_is_ready(self) -> bool:
        return self._module_ready

    @property
    def reopen_pending(self) -> bool:
        """CLOSED and waiting for the 'reopen' timer."""
        return self._reopen_pending

    @property
    def retired(self) -> bool:
        return self._retired

    @property
    def client_attached(self) -> bool:
        return self._client

    @property
    def client_half_closed(self) -> bool:
        return self._client and self._client_eof

    @property
    def client_held(self) -> bool:
        return self._held

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
        """Take up to ``max_chunk`` sendable bytes as the chunk in flight (of ``epoch``).
        Everything queued is coalesced: one full send costs far less serial time than many
        small."""
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

    def _drop_stream(self, reason: str, actions: list[Action]) -> int:
        """Forget every byte either way and close the attached client; return the client
        bytes that can no longer be sent (the caller counts them lost)."""
        lost = self.queued_bytes
        self._queue.clear()
        self._in_flight = 0
        self._orphaned = False
        self._orphan_bytes = 0
        self._clear_recv_buffer(reason, actions)
        if self._client:
            self._close_client(reason, actions)
        return lost

    @_input
    def module_lost(self, reason: str) -> list[Action]:
        """Module rebooted or the serial line is gone: every operation in flight is void."""
        actions: list[Action] = []
        self._module_ready = False
        self._set_state(ChannelState.CLOSED, reason, actions)
        self._open_failure = None
        self._cancel_reopen(actions)
        # Nothing unconfirmed can be confirmed any more, and a waiting client's connection
        # will not come soon: close whoever is attached.
        lost = self._drop_stream(reason, actions)
        if lost:
            actions.append(CountTxLost(lost, reason))
        self._backoff.reset()
        return actions

    @_input
    def retire(self, reason: str) -> list[Action]:
        """Take the socket out of service for good (a reload changed or removed it): its
        client is disconnected, its unsent bytes counted lost (never sent anywhere else),
        its connection closed. Nothing opens afterwards; results still in flight are
        stale."""
        if self._retired:
            return [Ignored("retire", "already retired")]
        self._retired = True
        actions: list[Action] = []
        lost = self._drop_stream(reason, actions)
        if self._held:
            self._held = False
            actions.append(CancelTimer(HANDOVER_TIMER))
            actions.append(RefuseClient(reason))
        if lost:
            actions.append(CountTxLost(lost, reason))
        self._cancel_reopen(actions)
        if self._state in (ChannelState.OPEN, ChannelState.OPENING):
            actions.append(StreamBroken("reconfigured", reason))
            self._close_socket(reason, actions)
        return actions

    # --- client events ---

    @_input
    def client_connected(self) -> list[Action]:
        if self._retired:
            return [RefuseClient(f"connectID {self.connect_id} is being reconfigured")]
        actions: list[Action] = []
        if self._client and self._client_eof:
            self._yield_half_closed_client(actions)
        if self._client:
            if self._held or self._timeouts.handover_wait <= 0:
                return [RefuseClient(f"connectID {self.connect_id} already has a client")]
            self._held = True
            return [HoldClient(), StartTimer(HANDOVER_TIMER, self._timeouts.handover_wait)]
        self._attach(actions)
        return actions

    @_input
    def held_client_left(self) -> list[Action]:
        """The held TCP connection went away before it was attached."""
        if not self._held:
            return [Ignored("held_client_left", "no client held")]
        self._held = False
        return [CancelTimer(HANDOVER_TIMER)]

    @_input
    def client_data(self, data: bytes) -> list[Action]:
        if not self._client or self._client_eof:
            # The glue should not send these; if it does, they are still accounted for.
            return [CountTxLost(len(data), "data from a client that is not attached")]
        self._queue += data
        self._client_wrote = True
        self._traffic = True
        return []

    @_input
    def client_eof(self) -> list[Action]:
        """The client shut down its write side (half-close): what it wrote is still sent,
        and it keeps receiving until the remote closes or the connection goes idle."""
        if not self._client:
            return [Ignored("client_eof", "no client attached")]
        if self._client_eof:
            return [Ignored("client_eof", "already half-closed")]
        actions: list[Action] = []
        if not self._client_wrote:
            # Nothing asked, nothing to answer: at the TCP level a client that closed its
            # socket looks the same (a readiness probe, say). Treat it as gone, so the
            # next client is not kept waiting behind it.
            self._close_client("client closed without sending anything", actions)
            self._after_client_left(actions)
            return actions
        self._client_eof = True
        if self._held:
            self._yield_half_closed_client(actions)
        return actions

    def _yield_half_closed_client(self, actions: list[Action]) -> None:
        """A half-closed client gives its place to a new one. On the wire it cannot be
        told from a client that closed its socket for good (the usual case: an app that
        reconnects at once), and only one client is served at a time."""
        self._close_client("another client connected after this one half-closed", actions)
        self._after_client_left(actions)

    @_input
    def client_closed(self) -> list[Action]:
        """The TCP client went away (EOF or disconnect)."""
        if not self._client:
            return [Ignored("client_closed", "no client attached")]
        self._client = False
        self._client_eof = False
        self._paused = False
        actions: list[Action] = []
        self._after_client_left(actions)
        return actions

    # --- socket results and URCs ---

    @_input
    def open_result(self, err: int, epoch: int | None = None) -> list[Action]:
        """``+QSSLOPEN: 1,<id>,<err>``: 0 is success."""
        if self._state is not ChannelState.OPENING or self._stale(epoch):
            return [Ignored(f"open_result({err})", self._why_stale("opening", epoch))]
        if err == STATE_ERROR:
            return self._close_then_fail(f"open failed: error {err} (state error)")
        if err != 0:
            return self._open_failed(f"open failed: error {err}")
        actions: list[Action] = []
        self._set_state(ChannelState.OPEN, "opened", actions)
        self._backoff.reset()
        if self._orphaned:
            self._close_if_flushed("client left while opening", actions)
        return actions

    @_input
    def open_error(self, reason: str, epoch: int | None = None) -> list[Action]:
        """The open command failed without a result code (ERROR, timeout, ...). The module
        may still finish that open later: it is closed before anything else is tried."""
        if self._state is not ChannelState.OPENING or self._stale(epoch):
            return [Ignored("open_error", self._why_stale("opening", epoch))]
        return self._close_then_fail(f"open failed: {reason}")

    @_input
    def send_done(self, n: int, epoch: int | None = None) -> list[Action]:
        """``+QSSLSEND: 1,<id>,0`` for the chunk in flight, of ``n`` bytes."""
        if not self._in_flight or self._stale(epoch):
            return [Ignored("send_done", "no chunk in flight")]
        if n != self._in_flight:
            raise ValueError(f"{self!r}: send_done({n}) for a chunk of {self._in_flight}")
        self._in_flight = 0
        self._traffic = True
        self._tx_progress = True
        actions: list[Action] = [CountTxSent(n)]
        if self._orphaned:
            self._close_if_flushed("flushed after client left", actions)
        return actions

    @_input
    def send_failed(self, reason: str, epoch: int | None = None) -> list[Action]:
        """The chunk in flight failed (ERROR, err != 0, timeout). How much of it reached the
        TLS stream is unknown, so the stream is broken: close the client and the socket."""
        if not self._in_flight or self._stale(epoch):
            return [Ignored("send_failed", "no chunk in flight")]
        actions: list[Action] = []
        reason = f"send failed: {reason}"
        self._abandon_stream(reason, actions)
        self._close_socket(reason, actions)
        return actions

    @_input
    def close_done(self, epoch: int | None = None) -> list[Action]:
        """AT+QSSLCLOSE finished, successfully or not: the socket is closed either way."""
        if self._state is not ChannelState.CLOSING or self._stale(epoch):
            return [Ignored("close_done", self._why_stale("closing", epoch))]
        actions: list[Action] = []
        self._set_state(ChannelState.CLOSED, "closed", actions)
        failure, self._open_failure = self._open_failure, None
        if failure is not None:
            actions += self._open_failed(failure)
        else:
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
        self._traffic = True
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
        if len(self._recv_buffer) + len(data) > self._limits.recv_buffer_bytes:
            # Delivering the head and then live data would leave a hole: start over.
            actions: list[Action] = []
            detail = f"receive buffer of {self._limits.recv_buffer_bytes} bytes full, no client"
            self._clear_recv_buffer(detail, actions)
            actions.append(CountRxDropped(len(data), detail))
            actions.append(StreamBroken("recv_buffer_full", detail))
            self._abandon_stream(detail, actions)
            self._close_socket(detail, actions)
            return actions
        self._recv_buffer += data
        return []

    @_input
    def recv_damaged(self, reason: str) -> list[Action]:
        """Received data for this socket (or data that may have been this socket's) was
        damaged on the serial line: the stream has a hole, so it ends here."""
        if self._state is not ChannelState.OPEN:
            return [Ignored("recv_damaged", f"not open ({self._state.name})")]
        actions: list[Action] = [StreamBroken("damaged_data", reason)]
        reason = f"received data damaged: {reason}"
        self._clear_recv_buffer(reason, actions)
        self._abandon_stream(reason, actions)
        self._close_socket(reason, actions)
        return actions

    @_input
    def timer_fired(self, name: str) -> list[Action]:
        actions: list[Action] = []
        if name == REOPEN_TIMER and self._reopen_pending:
            self._reopen_pending = False
            if self._can_open_now() and self._wants_connection():
                self._open("retrying after backoff", actions)
            return actions
        if name == HANDOVER_TIMER and self._held:
            self._held = False
            return [RefuseClient(f"connectID {self.connect_id} already has a client")]
        if name == SEND_STALL_TIMER and self._send_stall_running:
            self._send_stall_running = False
            detail = (
                f"{self._own_queued()} client bytes waited {self._timeouts.send_stall:g} s "
                "with none confirmed"
            )
            reason = f"send stalled: {detail}"
            if self._state is ChannelState.OPEN and not self._orphaned:
                actions.append(StreamBroken("send_stall", detail))
                self._abandon_stream(reason, actions)
                self._close_socket(reason, actions)
                return actions
            # Still waiting for its connection (opening, or the previous one closing):
            # nothing of its stream exists yet, so only the client and its bytes go.
            lost = self._own_queued()
            del self._queue[len(self._queue) - lost :]
            self._close_client(reason, actions)
            if lost:
                actions.append(CountTxLost(lost, reason))
            self._after_client_left(actions)
            return actions
        if name == IDLE_TIMER and self._idle_timer_delay and self._state is ChannelState.OPEN:
            self._idle_timer_delay = 0.0
            detail = f"no traffic for {self._idle_delay() or 0:g} s"
            actions.append(StreamBroken("idle_timeout", detail))
            self._abandon_stream(f"idle: {detail}", actions)
            self._close_socket(f"idle: {detail}", actions)
            return actions
        return [Ignored(f"timer_fired({name!r})", "no such timer running")]

    # --- internals ---

    def _stale(self, epoch: int | None) -> bool:
        return epoch is not None and epoch != self._epoch

    def _why_stale(self, expected: str, epoch: int | None) -> str:
        if self._stale(epoch):
            return f"stale: epoch {epoch}, current {self._epoch}"
        return f"not {expected} ({self._state.name})"

    def _set_state(self, new: ChannelState, reason: str, actions: list[Action]) -> None:
        if new is not self._state:
            actions.append(StateChanged(self._state, new, reason))
            self._state = new

    def _can_open_now(self) -> bool:
        return (
            self._module_ready
            and not self._retired
            and self._state is ChannelState.CLOSED
            and not self._reopen_pending
        )

    def _wants_connection(self) -> bool:
        if self.mode == "persistent":
            return True
        if self._orphaned:
            return self._orphan_bytes > 0
        return self._client

    def _open(self, reason: str, actions: list[Action]) -> None:
        self._epoch += 1
        self._set_state(ChannelState.OPENING, reason, actions)
        actions.append(OpenSocket(self._epoch))

    def _close_socket(self, reason: str, actions: list[Action]) -> None:
        self._set_state(ChannelState.CLOSING, reason, actions)
        actions.append(CloseSocket(self._epoch))

    def _close_then_fail(self, reason: str) -> list[Action]:
        actions: list[Action] = []
        self._open_failure = reason
        self._close_socket(reason, actions)
        return actions

    def _attach(self, actions: list[Action]) -> None:
        self._client = True
        self._client_eof = False
        self._client_wrote = False
        self._paused = False
        if self.mode == "persistent":
            if self._recv_buffer:
                actions.append(DeliverToClient(bytes(self._recv_buffer)))
                self._recv_buffer.clear()
        elif not self._orphaned and self._can_open_now():
            self._open("client connected", actions)
        # Otherwise the client waits: for the module, or for the previous client's
        # connection to finish.

    def _after_client_left(self, actions: list[Action]) -> None:
        if self.mode == "persistent":
            return  # its queued bytes still go out on the persistent connection
        if self._orphaned:
            # It was waiting for its own connection, which never started: nothing of it
            # was sent, and the connection in progress is not its to use.
            lost = len(self._queue) - self._orphan_bytes
            del self._queue[self._orphan_bytes :]
            if lost:
                actions.append(CountTxLost(lost, "client left before its connection opened"))
            return
        # The owner left: flush what it wrote, then close.
        self._orphaned = True
        self._orphan_bytes = len(self._queue)
        if self._state is ChannelState.OPEN:
            self._close_if_flushed("client left", actions)
        elif self._state is ChannelState.CLOSED and not self._orphan_bytes:
            self._session_over(actions)
        # OPENING: decided by the open result. CLOSED with bytes: the retry timer or the
        # module becoming ready opens the connection to flush them.

    def _schedule_reopen(self, actions: list[Action]) -> None:
        if self._retired:
            return
        self._reopen_pending = True
        actions.append(StartTimer(REOPEN_TIMER, self._backoff.next_delay()))

    def _cancel_reopen(self, actions: list[Action]) -> None:
        if self._reopen_pending:
            self._reopen_pending = False
            actions.append(CancelTimer(REOPEN_TIMER))

    def _close_client(self, reason: str, actions: list[Action]) -> None:
        actions.append(CloseClient(reason))
        self._client = False
        self._client_eof = False
        self._paused = False

    def _clear_recv_buffer(self, reason: str, actions: list[Action]) -> None:
        """The persistent buffer holds only the current connection's bytes."""
        if self._recv_buffer:
            actions.append(CountRxDropped(len(self._recv_buffer), f"buffered, then {reason}"))
            self._recv_buffer.clear()

    def _close_if_flushed(self, reason: str, actions: list[Action]) -> None:
        """On-demand, owner gone: once its bytes are all confirmed, close the socket."""
        if self._state is ChannelState.OPEN and not self._orphan_bytes and not self._in_flight:
            self._close_socket(reason, actions)

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
        if self._retired:
            return actions
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
        self._clear_recv_buffer("its connection ended", actions)
        if self._retired:
            return
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

    def _idle_delay(self) -> float:
        """The idle bound now in force (0: none)."""
        bounds = [self._timeouts.idle]
        if self._client and self._client_eof:
            bounds.append(self._timeouts.half_close)
        live = [b for b in bounds if b > 0]
        return min(live) if live else 0.0

    def _update_idle_timer(self, actions: list[Action]) -> None:
        """(Re)start the idle timer on every input with traffic while OPEN; stop it when
        not OPEN. Inputs without traffic keep it running as it was."""
        delay = self._idle_delay() if self._state is ChannelState.OPEN else 0.0
        traffic = self._traffic or any(isinstance(a, StateChanged) for a in actions)
        self._traffic = False
        if delay and (traffic or delay != self._idle_timer_delay):
            self._idle_timer_delay = delay
            actions.append(StartTimer(IDLE_TIMER, delay))
        elif not delay and self._idle_timer_delay:
            self._idle_timer_delay = 0.0
            actions.append(CancelTimer(IDLE_TIMER))

    def _own_queued(self) -> int:
        """Unconfirmed bytes of the attached client (not those of a client gone before)."""
        if not self._client:
            return 0
        if self._orphaned:
            return len(self._queue) - self._orphan_bytes
        return self.queued_bytes

    def _update_send_stall_timer(self, actions: list[Action]) -> None:
        """Runs while an attached client's bytes wait (for its connection, or on it);
        restarts at every confirmed send."""
        waiting = self._timeouts.send_stall > 0 and self._client and self._own_queued() > 0
        progress, self._tx_progress = self._tx_progress, False
        if waiting and (progress or not self._send_stall_running):
            self._send_stall_running = True
            actions.append(StartTimer(SEND_STALL_TIMER, self._timeouts.send_stall))
        elif not waiting and self._send_stall_running:
            self._send_stall_running = False
            actions.append(CancelTimer(SEND_STALL_TIMER))

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
