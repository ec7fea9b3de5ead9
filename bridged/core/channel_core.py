"""The channel's state and the steps its inputs are made of.

:class:`ChannelCore` holds one channel's state (connection, epoch, client, send queue,
persistent receive buffer, timers) with its read-only view, the scheduler interface, and the
internal steps (open, close, attach, abandon a stream, reopen with backoff, idle, send-stall
and flow control). :class:`bridged.core.channel.Channel` adds the inputs, each a method that
returns the actions; see there for the states, the modes and the invariants.
"""

from __future__ import annotations

import random
from collections import deque

from bridged.core.backoff import Backoff
from bridged.core.channel_types import (
    IDLE_TIMER,
    MODES,
    REOPEN_TIMER,
    SEND_STALL_TIMER,
    Action,
    CancelTimer,
    ChannelState,
    CloseClient,
    CloseSocket,
    CountRxDropped,
    CountTxLost,
    DeliverToClient,
    Mode,
    OpenSocket,
    PauseClient,
    QueueLimits,
    ReconnectPolicy,
    ResumeClient,
    StartTimer,
    StateChanged,
    Timeouts,
)

# The default: no waiting for a place (a second client is refused at once).
NO_HANDOVER = Timeouts(handover_wait=0.0)


class ChannelCore:
    def __init__(
        self,
        connect_id: int,
        mode: Mode,
        *,
        limits: QueueLimits,
        reconnect: ReconnectPolicy,
        max_chunk: int,
        rng: random.Random,
        timeouts: Timeouts = NO_HANDOVER,
        max_unconfirmed: int = 1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if limits.send_max_bytes < 1 or limits.recv_buffer_bytes < 0:
            raise ValueError(f"bad queue limits: {limits}")
        if reconnect.open_retries < 0:
            raise ValueError(f"open_retries must be >= 0, got {reconnect.open_retries}")
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        if max_unconfirmed < 1:
            raise ValueError(f"max_unconfirmed must be >= 1, got {max_unconfirmed}")
        if min(timeouts.idle, timeouts.half_close, timeouts.handover_wait, timeouts.send_stall) < 0:
            raise ValueError(f"bad timeouts: {timeouts}")
        self.connect_id = connect_id
        self.mode: Mode = mode
        self._limits = limits
        self._timeouts = timeouts
        self._open_retries = reconnect.open_retries
        self._max_chunk = max_chunk
        self._max_unconfirmed = max_unconfirmed
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
        # Sizes of the chunks handed out and not yet confirmed, oldest first (their
        # +QSSLSEND results come in this order); their sum in _in_flight_bytes.
        self._in_flight: deque[int] = deque()
        self._in_flight_bytes = 0
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
        return len(self._queue) + self._in_flight_bytes

    @property
    def stream_open(self) -> bool:
        """The current connection is open: its stream goes on."""
        return self._state is ChannelState.OPEN

    @property
    def unconfirmed_sends(self) -> int:
        """Chunks handed out whose ``+QSSLSEND`` result has not come."""
        return len(self._in_flight)

    @property
    def recv_buffered_bytes(self) -> int:
        return len(self._recv_buffer)

    # --- scheduler interface ---

    def set_max_chunk(self, max_chunk: int) -> None:
        """The module's largest send (its profile's; known once the module is identified)."""
        if max_chunk < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self._max_chunk = max_chunk

    def set_max_unconfirmed(self, n: int) -> None:
        """Chunks that may await their ``+QSSLSEND`` result at once (the send window: the
        module profile's ``max_unconfirmed_sends``, or 1 once the module refused more)."""
        if n < 1:
            raise ValueError(f"max_unconfirmed must be >= 1, got {n}")
        self._max_unconfirmed = n

    def sendable(self) -> int:
        """Bytes that may go out now: OPEN, fewer chunks awaiting their result than the
        window allows, and only the current connection's bytes (not those of a client
        waiting for its own connection)."""
        if self._state is not ChannelState.OPEN or len(self._in_flight) >= self._max_unconfirmed:
            return 0
        return self._orphan_bytes if self._orphaned else len(self._queue)

    def next_chunk(self) -> bytes:
        """Take up to ``max_chunk`` sendable bytes as a chunk in flight (of ``epoch``).
        Everything queued is coalesced: one full send costs far less serial time than many
        small. Chunks in flight are confirmed (or fail) in the order they were taken."""
        size = min(self._max_chunk, self.sendable())
        if size == 0:
            raise RuntimeError(f"{self!r}: next_chunk() with nothing sendable")
        chunk = bytes(self._queue[:size])
        del self._queue[:size]
        self._in_flight.append(size)
        self._in_flight_bytes += size
        if self._orphaned:
            self._orphan_bytes -= size
        return chunk

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
            lost = self._orphan_bytes + self._in_flight_bytes
            del self._queue[: self._orphan_bytes]
        else:
            lost = len(self._queue) + self._in_flight_bytes
            self._queue.clear()
            if self._client:
                self._close_client(reason, actions)
        self._clear_in_flight()
        if lost:
            actions.append(CountTxLost(lost, reason))
        if self.mode == "on-demand":
            # Whatever remains of this connection (CLOSING) belongs to nobody.
            self._orphaned = True
            self._orphan_bytes = 0

    def _drop_stream(self, reason: str, actions: list[Action]) -> int:
        """Forget every byte either way and close the attached client; return the client
        bytes that can no longer be sent (the caller counts them lost)."""
        lost = self.queued_bytes
        self._queue.clear()
        self._clear_in_flight()
        self._orphaned = False
        self._orphan_bytes = 0
        self._clear_recv_buffer(reason, actions)
        if self._client:
            self._close_client(reason, actions)
        return lost

    def _clear_in_flight(self) -> None:
        self._in_flight.clear()
        self._in_flight_bytes = 0

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
        idle = self._timeouts.idle if self._timeouts.idle > 0 else 0.0
        if self._client and self._client_eof:
            half = self._timeouts.half_close
            if half > 0 and (not idle or half < idle):
                return half
        return idle

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
