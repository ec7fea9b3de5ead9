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
  Up to ``max_unconfirmed`` chunks may await their results (pipelined sends); results
  confirm them in order, a failure takes them all, a refused one goes back whole.
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
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from bridged.core.channel_core import ChannelCore
from bridged.core.channel_types import (
    HANDOVER_TIMER,
    IDLE_TIMER,
    REOPEN_TIMER,
    SEND_STALL_TIMER,
    Action,
    AttachHeldClient,
    CancelTimer,
    ChannelState,
    CloseClient,
    CloseSocket,
    CountRxDropped,
    CountTxLost,
    CountTxSent,
    DataReady,
    DeliverToClient,
    HoldClient,
    Ignored,
    Mode,
    OpenSocket,
    PauseClient,
    QueueLimits,
    ReconnectPolicy,
    RefuseClient,
    ResumeClient,
    StartTimer,
    StateChanged,
    StreamBroken,
    Timeouts,
)

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

# The module's code for "state error": the socket is still in use there (an earlier open
# that we gave up on finished after all). Close it before trying again.
STATE_ERROR = -6


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


class Channel(ChannelCore):
    """One SSL socket as a pure state machine (see the module docstring)."""

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
        """``+QSSLSEND: 1,<id>,0`` for the oldest chunk in flight, of ``n`` bytes."""
        if not self._in_flight or self._stale(epoch):
            return [Ignored("send_done", "no chunk in flight")]
        if n != self._in_flight[0]:
            raise ValueError(f"{self!r}: send_done({n}) for a chunk of {self._in_flight[0]}")
        self._in_flight.popleft()
        self._in_flight_bytes -= n
        self._traffic = True
        # A client that left before has its bytes flushed (orphaned): their confirmation
        # is no progress for a client waiting for its own connection.
        self._tx_progress = not self._orphaned
        actions: list[Action] = [CountTxSent(n)]
        if self._orphaned:
            self._close_if_flushed("flushed after client left", actions)
        return actions

    @_input
    def send_failed(self, reason: str, epoch: int | None = None) -> list[Action]:
        """A chunk in flight failed (ERROR, err != 0, timeout). How much of it reached the
        TLS stream is unknown, so the stream is broken: close the client and the socket.
        Every chunk in flight goes with it (counted lost): later results would confirm
        bytes after a hole."""
        if not self._in_flight or self._stale(epoch):
            return [Ignored("send_failed", "no chunk in flight")]
        actions: list[Action] = []
        reason = f"send failed: {reason}"
        self._abandon_stream(reason, actions)
        self._close_socket(reason, actions)
        return actions

    @_input
    def send_refused(self, chunk: bytes, epoch: int | None = None) -> list[Action]:
        """The module refused the newest chunk in flight before taking any of it (a
        pipelined send beyond what it takes): it goes back to the head of the queue, to be
        sent again when the window allows, neither lost nor twice."""
        if not self._in_flight or self._stale(epoch):
            return [Ignored("send_refused", "no chunk in flight")]  # counted with its stream
        if len(chunk) != self._in_flight[-1]:
            raise ValueError(f"{self!r}: send_refused({len(chunk)}), newest {self._in_flight[-1]}")
        self._in_flight.pop()
        self._in_flight_bytes -= len(chunk)
        self._queue[0:0] = chunk
        if self._orphaned:
            self._orphan_bytes += len(chunk)
        return []

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
