"""The channel state machine: one example test per transition, then a stateful model that
drives random orders of client, module and timer events and checks the invariants."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from bridged.core.channel import (
    HANDOVER_TIMER,
    IDLE_TIMER,
    REOPEN_TIMER,
    Action,
    AttachHeldClient,
    CancelTimer,
    Channel,
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

CLOSED, OPENING, OPEN, CLOSING = (
    ChannelState.CLOSED,
    ChannelState.OPENING,
    ChannelState.OPEN,
    ChannelState.CLOSING,
)


def make(
    mode: Mode,
    *,
    send_max: int = 1000,
    recv_buffer: int = 100,
    retries: int = 2,
    max_chunk: int = 730,
) -> Channel:
    """A channel without jitter, so reopen delays are exact: 1, 2, 4, 8, 8, ..."""
    return Channel(
        3,
        mode,
        limits=QueueLimits(send_max_bytes=send_max, recv_buffer_bytes=recv_buffer),
        reconnect=ReconnectPolicy(initial=1.0, max=8.0, jitter=0.0, open_retries=retries),
        max_chunk=max_chunk,
        rng=random.Random(0),
    )


def effects(actions: list[Action]) -> list[Action]:
    """The actions without the StateChanged log entries and the CountTxSent accounting
    (tested on their own)."""
    return [a for a in actions if not isinstance(a, StateChanged | CountTxSent)]


def open_with_client(mode: Mode, **kwargs: int) -> Channel:
    channel = make(mode, **kwargs)
    channel.module_ready()
    channel.client_connected()
    channel.open_result(0)
    assert channel.state is OPEN and channel.client_attached
    return channel


def send_all(channel: Channel) -> bytes:
    """Play scheduler and module: send and confirm every sendable chunk."""
    sent = bytearray()
    while channel.sendable():
        chunk = channel.next_chunk()
        sent += chunk
        channel.send_done(len(chunk))
    return bytes(sent)


# --- states and construction --------------------------------------------------------------


def test_state_numbers_are_the_exported_metric_values() -> None:
    assert [int(state) for state in (CLOSED, OPENING, OPEN, CLOSING)] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "sometimes"}, {"send_max": 0}, {"retries": -1}, {"max_chunk": 0}],
)
def test_nonsense_settings_are_refused(kwargs: dict[str, object]) -> None:
    mode = kwargs.pop("mode", "on-demand")
    with pytest.raises(ValueError):
        make(mode, **kwargs)  # type: ignore[arg-type]


def test_a_new_channel_is_closed_and_waits_for_the_module() -> None:
    channel = make("persistent")
    assert (channel.state, channel.module_is_ready, channel.client_attached) == (
        CLOSED,
        False,
        False,
    )
    assert channel.sendable() == 0 and channel.queued_bytes == 0


# --- the transition table -----------------------------------------------------------------


def situation(mode: Mode, name: str) -> Channel:
    """A channel with a client (except where no client fits) in the named situation."""
    channel = make(mode)
    if name == "module not ready":
        return channel
    channel.module_ready()
    if name == "idle":
        return channel
    channel.client_connected()
    if name == "opening":
        return channel
    if name == "backoff":
        channel.open_result(-2)
        return channel
    channel.open_result(0)
    if name == "open":
        return channel
    assert name == "closing"
    if mode == "on-demand":
        channel.client_closed()
    else:
        channel.client_data(b"x")
        channel.next_chunk()
        channel.send_failed("ERROR")
    assert channel.state is CLOSING
    return channel


def ignored(event: str, reason: str) -> list[Action]:
    return [Ignored(event, reason)]


Event = Callable[[Channel], list[Action]]


def opened(channel: Channel) -> list[Action]:
    return channel.open_result(0)


def open_failed(channel: Channel) -> list[Action]:
    return channel.open_result(-2)


def module_lost(channel: Channel) -> list[Action]:
    return channel.module_lost("module lost")


def reopen_fires(channel: Channel) -> list[Action]:
    return channel.timer_fired(REOPEN_TIMER)


connected, left = Channel.client_connected, Channel.client_closed
remote_closed, close_done, module_ready = (
    Channel.remote_closed,
    Channel.close_done,
    Channel.module_ready,
)
RETRY_IN_1S = StartTimer(REOPEN_TIMER, 1.0)

# fmt: off
TRANSITIONS: list[tuple[Mode, str, Event, ChannelState, list[Action]]] = [
    # mode,       situation,      event,         new state, effects (StateChanged aside)
    ("on-demand",  "idle",         connected,     OPENING, [OpenSocket()]),
    ("on-demand",  "module not ready", connected, CLOSED,  []),
    ("on-demand",  "opening",      opened,        OPEN,    []),
    ("on-demand",  "opening",      open_failed,   CLOSED,  [RETRY_IN_1S]),
    ("on-demand",  "opening",      remote_closed, OPENING,
        ignored("remote_closed", "not open (OPENING)")),
    ("on-demand",  "backoff",      reopen_fires,  OPENING, [OpenSocket()]),
    ("on-demand",  "backoff",      left,          CLOSED,  [CancelTimer(REOPEN_TIMER)]),
    ("on-demand",  "open",         left,          CLOSING, [CloseSocket()]),
    ("on-demand",  "open",         remote_closed, CLOSED,  [CloseClient("remote closed")]),
    ("on-demand",  "open",         module_lost,   CLOSED,  [CloseClient("module lost")]),
    ("on-demand",  "closing",      close_done,    CLOSED,  []),
    ("on-demand",  "closing",      remote_closed, CLOSING,
        ignored("remote_closed", "not open (CLOSING)")),
    ("persistent", "module not ready", module_ready, OPENING, [OpenSocket()]),
    ("persistent", "opening",      opened,        OPEN,    []),
    ("persistent", "opening",      open_failed,   CLOSED,  [RETRY_IN_1S]),
    ("persistent", "backoff",      reopen_fires,  OPENING, [OpenSocket()]),
    ("persistent", "backoff",      module_lost,   CLOSED,
        [CancelTimer(REOPEN_TIMER), CloseClient("module lost")]),
    ("persistent", "open",         left,          OPEN,    []),
    ("persistent", "open",         remote_closed, CLOSED,
        [CloseClient("remote closed"), RETRY_IN_1S]),
    ("persistent", "open",         module_lost,   CLOSED,  [CloseClient("module lost")]),
    ("persistent", "closing",      close_done,    CLOSED,  [RETRY_IN_1S]),
]
# fmt: on


@pytest.mark.parametrize(
    ("mode", "where", "event", "new_state", "expected"),
    TRANSITIONS,
    ids=[f"{mode} {where}: {event.__name__}" for mode, where, event, *_ in TRANSITIONS],
)
def test_transition(
    mode: Mode, where: str, event: Event, new_state: ChannelState, expected: list[Action]
) -> None:
    channel = situation(mode, where)
    old_state = channel.state
    actions = event(channel)
    assert effects(actions) == expected
    assert channel.state is new_state
    changes = [action for action in actions if isinstance(action, StateChanged)]
    if new_state is old_state:
        assert changes == []
    else:
        assert [(c.old, c.new) for c in changes] == [(old_state, new_state)]


# --- on-demand: opening -------------------------------------------------------------------


def test_on_demand_client_before_module_ready_waits_for_it() -> None:
    channel = make("on-demand")
    assert channel.client_connected() == []
    assert channel.state is CLOSED and channel.client_attached
    assert effects(channel.module_ready()) == [OpenSocket()]


def test_second_client_is_refused_and_changes_nothing() -> None:
    channel = open_with_client("on-demand")
    channel.client_data(b"abc")
    assert channel.client_connected() == [RefuseClient("connectID 3 already has a client")]
    assert channel.state is OPEN and channel.queued_bytes == 3


def test_bytes_written_while_opening_are_kept_and_sent_once_open() -> None:
    channel = make("on-demand")
    channel.module_ready()
    channel.client_connected()
    assert channel.client_data(b"hello ") == []
    assert channel.client_data(b"world") == []
    assert channel.sendable() == 0  # not open yet
    assert channel.open_result(0) == [StateChanged(OPENING, OPEN, "opened"), DataReady()]
    assert send_all(channel) == b"hello world"


def error_then_close(channel: Channel, reason: str) -> list[Action]:
    """An open that failed without a result: the module may still open it, so the channel
    closes it first and handles the failure once closed."""
    first = channel.open_error(reason)
    assert effects(first) == [CloseSocket()] and channel.state is CLOSING
    return channel.close_done()


@pytest.mark.parametrize(
    ("fail", "reason"),
    [
        (lambda ch: ch.open_result(-7), "open failed: error -7"),
        (lambda ch: error_then_close(ch, "command timeout"), "open failed: command timeout"),
    ],
)
def test_on_demand_open_failure_retries_with_backoff_then_closes_the_client(
    fail: Callable[[Channel], list[Action]], reason: str
) -> None:
    channel = make("on-demand", retries=2)
    channel.module_ready()
    channel.client_connected()
    channel.client_data(b"request")
    assert effects(fail(channel)) == [StartTimer(REOPEN_TIMER, 1.0)]
    assert channel.reopen_pending
    assert effects(channel.timer_fired(REOPEN_TIMER)) == [OpenSocket()]
    assert effects(fail(channel)) == [StartTimer(REOPEN_TIMER, 2.0)]
    assert effects(channel.timer_fired(REOPEN_TIMER)) == [OpenSocket()]
    gave_up = f"{reason} (gave up after 3 attempts)"
    assert effects(fail(channel)) == [CloseClient(gave_up), CountTxLost(7, gave_up)]
    assert (channel.state, channel.client_attached, channel.reopen_pending) == (
        CLOSED,
        False,
        False,
    )


def test_on_demand_successful_open_resets_the_retry_budget() -> None:
    channel = make("on-demand", retries=1)
    channel.module_ready()
    channel.client_connected()
    channel.open_result(-2)
    channel.timer_fired(REOPEN_TIMER)
    channel.open_result(0)
    channel.client_closed()
    channel.close_done()
    channel.client_connected()
    assert effects(channel.open_result(-2)) == [StartTimer(REOPEN_TIMER, 1.0)]


# --- sending ------------------------------------------------------------------------------


def test_small_writes_are_coalesced_into_full_chunks() -> None:
    channel = open_with_client("on-demand", send_max=10_000)
    for _ in range(10):
        channel.client_data(b"x" * 100)
    assert channel.sendable() == 1000
    assert len(channel.next_chunk()) == 730  # one 730-byte send, not seven 100-byte ones
    assert channel.sendable() == 0  # one chunk in flight at a time
    assert channel.send_done(730) == [CountTxSent(730), DataReady()]
    assert len(channel.next_chunk()) == 270


def test_chunks_keep_the_byte_order_across_writes() -> None:
    channel = open_with_client("on-demand", max_chunk=4)
    for piece in (b"ab", b"cde", b"f", b"ghij"):
        channel.client_data(piece)
    chunks = []
    while channel.sendable():
        chunks.append(channel.next_chunk())
        channel.send_done(len(chunks[-1]))
    assert chunks == [b"abcd", b"efgh", b"ij"]


def test_data_ready_only_when_the_channel_becomes_sendable() -> None:
    channel = open_with_client("on-demand")
    assert channel.client_data(b"a") == [DataReady()]
    assert channel.client_data(b"b") == []  # already sendable: the scheduler knows
    channel.next_chunk()
    assert channel.client_data(b"c") == []  # chunk in flight: send_done will tell
    assert channel.send_done(2) == [CountTxSent(2), DataReady()]


def test_client_is_paused_at_the_limit_and_resumed_at_half() -> None:
    channel = open_with_client("on-demand", send_max=1000, max_chunk=300)
    assert channel.client_data(b"x" * 999) == [DataReady()]
    assert channel.client_data(b"x") == [PauseClient()]
    channel.next_chunk()
    assert effects(channel.send_done(300)) == [DataReady()]  # 700 unconfirmed: still paused
    channel.next_chunk()
    assert effects(channel.send_done(300)) == [ResumeClient(), DataReady()]  # 400 <= 500


def test_send_failure_closes_client_and_socket_and_counts_the_lost_bytes() -> None:
    channel = open_with_client("on-demand", max_chunk=10)
    channel.client_data(b"x" * 25)
    channel.next_chunk()
    assert channel.send_failed("ERROR") == [
        CloseClient("send failed: ERROR"),
        CountTxLost(25, "send failed: ERROR"),
        StateChanged(OPEN, CLOSING, "send failed: ERROR"),
        CloseSocket(),
    ]
    assert channel.queued_bytes == 0
    assert channel.close_done() == [StateChanged(CLOSING, CLOSED, "closed")]


def test_send_done_must_confirm_the_chunk_in_flight() -> None:
    channel = open_with_client("on-demand")
    channel.client_data(b"abc")
    channel.next_chunk()
    with pytest.raises(ValueError):
        channel.send_done(2)


def test_next_chunk_without_sendable_bytes_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError):
        open_with_client("on-demand").next_chunk()


# --- on-demand: the client leaves ---------------------------------------------------------


def test_on_demand_what_a_departed_client_wrote_is_still_sent_then_the_socket_closes() -> None:
    channel = open_with_client("on-demand", max_chunk=6)
    channel.client_data(b"last words")
    first = channel.next_chunk()
    assert channel.client_closed() == []  # keep flushing
    assert effects(channel.send_done(len(first))) == [DataReady()]
    second = channel.next_chunk()
    assert first + second == b"last words"
    assert channel.send_done(len(second)) == [
        CountTxSent(len(second)),
        StateChanged(OPEN, CLOSING, "flushed after client left"),
        CloseSocket(),
    ]


def test_on_demand_client_leaving_during_its_last_send_closes_after_the_result() -> None:
    channel = open_with_client("on-demand")
    channel.client_data(b"last")
    channel.next_chunk()
    assert channel.client_closed() == []  # the chunk may still fail: wait for it
    assert effects(channel.send_done(4)) == [CloseSocket()]


def test_on_demand_client_leaving_while_opening_closes_once_open() -> None:
    channel = make("on-demand")
    channel.module_ready()
    channel.client_connected()
    assert channel.client_closed() == []
    assert effects(channel.open_result(0)) == [CloseSocket()]


def test_on_demand_departed_client_bytes_are_counted_when_the_flush_fails() -> None:
    channel = make("on-demand", retries=0)
    channel.module_ready()
    channel.client_connected()
    channel.client_data(b"abc")
    channel.client_closed()
    assert effects(channel.open_result(-2)) == [
        CountTxLost(3, "open failed: error -2 (gave up after 1 attempts)")
    ]


def test_on_demand_received_bytes_after_the_client_left_are_counted() -> None:
    channel = open_with_client("on-demand")
    channel.client_data(b"x")
    channel.client_closed()
    assert channel.recv(b"late") == [CountRxDropped(4, "no client for this connection")]


def test_received_bytes_for_a_socket_not_open_reach_no_client() -> None:
    """Closing after a failed send, or closed while the module kept the connection (serial
    hang-up): those bytes are no client's, not even the next one's."""
    channel = open_with_client("persistent")
    channel.client_data(b"x")
    channel.next_chunk()
    channel.send_failed("ERROR")
    channel.client_connected()
    assert channel.recv(b"old") == [CountRxDropped(3, "socket not open (closing)")]
    channel.module_lost("serial hang-up")
    assert channel.recv(b"older") == [CountRxDropped(5, "socket not open (closed)")]
    assert channel.recv_buffered_bytes == 0


def test_on_demand_next_client_waits_for_its_own_connection() -> None:
    """A client that connects while the previous one's bytes are still being flushed must
    neither see that connection's data nor send on it."""
    channel = open_with_client("on-demand")
    channel.client_data(b"old")
    channel.client_closed()
    assert channel.client_connected() == []  # attached, waiting
    channel.client_data(b"new")
    assert channel.next_chunk() == b"old"
    assert channel.recv(b"reply to old") == [CountRxDropped(12, "no client for this connection")]
    assert effects(channel.send_done(3)) == [CloseSocket()]
    assert channel.sendable() == 0
    assert channel.close_done() == [
        StateChanged(CLOSING, CLOSED, "closed"),
        StateChanged(CLOSED, OPENING, "next client"),
        OpenSocket(),
    ]
    channel.open_result(0)
    assert channel.recv(b"reply to new") == [DeliverToClient(b"reply to new")]
    assert send_all(channel) == b"new"


def test_on_demand_waiting_client_leaving_loses_only_its_own_bytes() -> None:
    channel = open_with_client("on-demand")
    channel.client_data(b"old")
    channel.client_closed()
    channel.client_connected()
    channel.client_data(b"new!")
    assert channel.client_closed() == [CountTxLost(4, "client left before its connection opened")]
    assert send_all(channel) == b"old"


def test_on_demand_waiting_client_gets_its_connection_even_if_the_flush_gives_up() -> None:
    channel = make("on-demand", retries=0)
    channel.module_ready()
    channel.client_connected()
    channel.client_data(b"old")
    channel.client_closed()
    channel.client_connected()
    actions = channel.open_result(-2)
    assert effects(actions) == [
        CountTxLost(3, "open failed: error -2 (gave up after 1 attempts)"),
        OpenSocket(),
    ]
    assert channel.client_attached


# --- remote close -------------------------------------------------------------------------


def test_on_demand_remote_close_gives_the_client_eof_without_closing_the_socket() -> None:
    channel = open_with_client("on-demand")
    assert channel.recv(b"bye") == [DeliverToClient(b"bye")]
    assert channel.remote_closed() == [
        StateChanged(OPEN, CLOSED, "remote closed"),
        CloseClient("remote closed"),
    ]
    assert channel.state is CLOSED and not channel.reopen_pending


def test_remote_close_counts_the_bytes_it_left_unconfirmed() -> None:
    channel = open_with_client("on-demand", max_chunk=2)
    channel.client_data(b"abcde")
    channel.next_chunk()
    assert effects(channel.remote_closed()) == [
        CloseClient("remote closed"),
        CountTxLost(5, "remote closed"),
    ]
    assert channel.send_failed("ERROR") == [Ignored("send_failed", "no chunk in flight")]


# --- persistent ---------------------------------------------------------------------------


def test_persistent_retries_forever_with_capped_delays_and_keeps_the_client() -> None:
    channel = make("persistent", retries=0)
    channel.module_ready()
    channel.client_connected()
    delays = []
    for _ in range(6):
        (timer,) = effects(channel.open_result(-2))
        assert isinstance(timer, StartTimer)
        delays.append(timer.delay)
        channel.timer_fired(REOPEN_TIMER)
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert channel.client_attached


def test_persistent_buffers_received_bytes_until_a_client_comes() -> None:
    channel = make("persistent", recv_buffer=10)
    channel.module_ready()
    channel.open_result(0)
    assert channel.recv(b"12345") == []
    assert channel.recv(b"67890") == []
    assert channel.recv_buffered_bytes == 10
    assert channel.client_connected() == [DeliverToClient(b"1234567890")]
    assert channel.recv_buffered_bytes == 0
    assert channel.recv(b"more") == [DeliverToClient(b"more")]


def test_persistent_client_leaving_keeps_the_connection_and_sends_its_bytes() -> None:
    channel = open_with_client("persistent")
    channel.client_data(b"fire and forget")
    assert channel.client_closed() == []
    assert channel.state is OPEN
    assert send_all(channel) == b"fire and forget"
    assert channel.state is OPEN


def test_persistent_new_client_is_paused_at_once_if_the_queue_is_full() -> None:
    channel = make("persistent", send_max=10)
    channel.module_ready()
    channel.client_connected()
    channel.client_data(b"x" * 10)
    channel.client_closed()
    assert channel.client_connected() == [PauseClient()]


def test_persistent_send_failure_reopens_after_the_close() -> None:
    channel = open_with_client("persistent")
    channel.client_data(b"x")
    channel.next_chunk()
    assert effects(channel.send_failed("+QSSLSEND error -2")) == [
        CloseClient("send failed: +QSSLSEND error -2"),
        CountTxLost(1, "send failed: +QSSLSEND error -2"),
        CloseSocket(),
    ]
    assert effects(channel.close_done()) == [StartTimer(REOPEN_TIMER, 1.0)]


# --- the module ---------------------------------------------------------------------------


def test_module_lost_voids_everything_and_closes_the_client() -> None:
    channel = make("persistent")
    channel.module_ready()
    channel.open_result(-2)  # waiting for the reopen timer
    channel.client_connected()
    channel.client_data(b"pending")
    assert channel.state is CLOSED  # so no StateChanged below
    assert channel.module_lost("module rebooted") == [
        CancelTimer(REOPEN_TIMER),
        CloseClient("module rebooted"),
        CountTxLost(7, "module rebooted"),
    ]
    assert channel.timer_fired(REOPEN_TIMER) == [
        Ignored("timer_fired('reopen')", "no such timer running")
    ]


def test_persistent_reopens_after_module_lost_and_ready() -> None:
    channel = open_with_client("persistent")
    channel.module_lost("serial gone")
    assert channel.open_result(0) == [Ignored("open_result(0)", "not opening (CLOSED)")]
    assert effects(channel.module_ready()) == [OpenSocket()]


def test_on_demand_after_module_lost_and_ready_is_closed_without_client() -> None:
    channel = open_with_client("on-demand")
    assert effects(channel.module_lost("module rebooted")) == [CloseClient("module rebooted")]
    assert channel.module_ready() == []
    assert (channel.state, channel.client_attached) == (CLOSED, False)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (lambda ch: ch.send_done(1), Ignored("send_done", "no chunk in flight")),
        (lambda ch: ch.close_done(), Ignored("close_done", "not closing (OPEN)")),
        (lambda ch: ch.open_error("late"), Ignored("open_error", "not opening (OPEN)")),
        (
            lambda ch: ch.timer_fired("other"),
            Ignored("timer_fired('other')", "no such timer running"),
        ),
        (lambda ch: ch.module_ready(), Ignored("module_ready", "module already ready")),
    ],
)
def test_stale_inputs_change_nothing(
    event: Callable[[Channel], list[Action]], expected: Ignored
) -> None:
    channel = open_with_client("on-demand")
    assert event(channel) == [expected]
    assert (channel.state, channel.client_attached) == (OPEN, True)


def test_data_from_a_client_that_is_no_longer_attached_is_counted() -> None:
    channel = make("on-demand")
    assert channel.client_data(b"ghost") == [
        CountTxLost(5, "data from a client that is not attached")
    ]


# --- the stateful model -------------------------------------------------------------------

MAX_WRITE = 300


class ChannelModel(RuleBasedStateMachine):
    """A fake module, a fake scheduler and a sequence of TCP clients around one Channel.

    Client n writes only the byte value n, so every chunk shows whose bytes it carries.
    The server's bytes are a counting sequence, so order and duplicates show.
    """

    @initialize(
        mode=st.sampled_from(["on-demand", "persistent"]),
        # A few telling values rather than ranges: hypothesis favours tiny numbers, and a
        # limit of 1 pauses every client at once, which hides most interleavings.
        send_max=st.sampled_from([1, 150, 700, 5000]),
        recv_buffer=st.sampled_from([0, 100, 1000]),
        retries=st.integers(0, 3),
        max_chunk=st.sampled_from([1, 5, 730]),
        jitter=st.sampled_from([0.0, 0.5]),
        seed=st.integers(0, 2**32 - 1),
        start_ready=st.booleans(),
        handover=st.sampled_from([0.0, 2.0]),
    )
    def setup(
        self,
        mode: Mode,
        send_max: int,
        recv_buffer: int,
        retries: int,
        max_chunk: int,
        jitter: float,
        seed: int,
        start_ready: bool,
        handover: float,
    ) -> None:
        self.mode = mode
        self.handover = handover
        self.send_max = send_max
        self.recv_buffer = recv_buffer
        self.max_delay = 8.0
        self.channel = Channel(
            0,
            mode,
            limits=QueueLimits(send_max, recv_buffer),
            reconnect=ReconnectPolicy(1.0, self.max_delay, jitter, retries),
            max_chunk=max_chunk,
            rng=random.Random(seed),
            timeouts=Timeouts(idle=0.0, half_close=60.0, handover_wait=handover),
        )
        self.state = CLOSED
        # The module as it sees things.
        self.module_ready = False
        self.conn = "closed"  # closed | opening | open | closing
        self.conn_id = 0
        self.chunk: bytes | None = None  # a send in flight (the scheduler's busy flag)
        self.chunk_live = False  # False once the channel voided it
        self.chunk_epoch = 0
        self.epoch = 0  # of the connection the module works on
        # Results of operations the channel voided, with their epochs: they may arrive at
        # any time later, and must change nothing.
        self.stale: list[tuple[str, int]] = []
        self.retries = retries
        self.retries_in_row = 0  # opens by the reopen timer since the last fresh open
        self.timers: set[str] = set()
        # Clients.
        self.client_count = 0
        self.client: int | None = None  # the attached one
        self.client_eof = False
        self.incoming: int | None = None  # a new client taking a half-closed one's place
        self.held: int | None = None  # a client waiting for the attached one to leave
        self.paused = False
        self.writes_after_pause = 0
        self.written: dict[int, int] = defaultdict(int)
        self.confirmed: dict[int, int] = defaultdict(int)
        self.last_conn_before: dict[int, int] = {}  # client -> last connection opened before it
        self.total_written = self.total_confirmed = self.total_lost = 0
        self.last_tag_sent = 0
        self.conns_of_client: dict[int, set[int]] = defaultdict(set)
        self.clients_of_conn: dict[int, set[int]] = defaultdict(set)
        # Server bytes.
        self.received = bytearray()
        self.delivered = bytearray()
        self.rx_dropped = 0
        if start_ready:
            self.module_becomes_ready()

    # --- applying the channel's actions, checking each ---

    def apply(
        self, actions: list[Action], *, may_ignore: bool = False, retry: bool = False
    ) -> list[Action]:
        """Check the actions against the model and play them; `retry`: a timer fired."""
        attached_now = False
        for action in actions:
            match action:
                case StateChanged(old, new, _):
                    assert old is self.state and new is not old
                    self.state = new
                case OpenSocket(epoch=epoch):
                    assert self.module_ready and self.conn == "closed"  # never two opens
                    assert epoch > self.epoch  # every connection has an epoch of its own
                    self.epoch = epoch
                    self.conn = "opening"
                    self.conn_id += 1
                    self.retries_in_row = self.retries_in_row + 1 if retry else 0
                    if self.mode == "on-demand":
                        assert self.retries_in_row <= self.retries
                case CloseSocket(epoch=epoch):
                    # Only a connection that is (or may be) open: never after "closed".
                    # A chunk still in flight on it is void: its result must be ignored.
                    assert self.conn == "open" and epoch == self.epoch
                    self.chunk_live = False
                    self.conn = "closing"
                case DeliverToClient(data):
                    assert self.client is not None and data
                    self.delivered += data
                    if self.mode == "on-demand":
                        # Only from a connection opened for this client, after it came.
                        assert self.conn_id > self.last_conn_before[self.client]
                        self.clients_of_conn[self.conn_id].add(self.client)
                case CloseClient():
                    assert self.client is not None
                    self.client, self.incoming = self.incoming, None
                    self.client_eof = False
                    self.paused = False
                case HoldClient():
                    assert self.client is not None and self.held is None
                    self.client_count += 1
                    self.held = self.client_count
                case AttachHeldClient():
                    assert self.client is None and self.held is not None
                    self.client, self.held = self.held, None
                    attached_now = True
                    self.client_eof = False
                    self.paused = False
                    self.last_conn_before[self.client] = self.conn_id
                case PauseClient():
                    assert self.client is not None and not self.paused
                    self.paused = True
                    # A held client was not read until now: no read is under way.
                    self.writes_after_pause = 1 if attached_now else 0
                case ResumeClient():
                    assert self.client is not None and self.paused
                    self.paused = False
                case StartTimer(name, delay):
                    if name == REOPEN_TIMER:
                        assert name not in self.timers
                        assert 0 < delay <= self.max_delay
                    elif name == IDLE_TIMER:
                        assert self.client_eof and self.conn == "open" and delay == 60.0
                    else:
                        assert name == HANDOVER_TIMER and name not in self.timers
                    self.timers.add(name)
                case CancelTimer(name):
                    assert name in self.timers
                    self.timers.discard(name)
                case CountTxLost(n, _):
                    assert n > 0
                    self.total_lost += n
                case CountRxDropped(n, _):
                    assert n > 0
                    self.rx_dropped += n
                case CountTxSent(n):
                    assert n > 0
                case StreamBroken(label, _):
                    assert label in ("recv_buffer_full", "damaged_data", "idle_timeout")
                case DataReady():
                    assert self.channel.sendable() > 0
                case RefuseClient():
                    # Only a held client, when its wait is over.
                    assert self.held is not None and HANDOVER_TIMER not in self.timers
                    self.held = None
                case Ignored():
                    assert may_ignore and actions == [action]
        return actions

    # --- the module ---

    @precondition(lambda self: not self.module_ready)
    @rule()
    def module_becomes_ready(self) -> None:
        self.module_ready = True
        self.apply(self.channel.module_ready())

    @precondition(lambda self: self.module_ready)
    @rule(ready_again=st.booleans())
    def module_lost(self, ready_again: bool) -> None:
        """Invariant 5: after module lost and ready, persistent opens again; on-demand is
        closed with no client. (One rule for both, so the module is not lost too often.)"""
        held = self.held
        self.lose_module()
        if not ready_again:
            return
        self.module_becomes_ready()
        if self.mode == "persistent" or held is not None:
            assert self.state is OPENING  # a held client took the place and is served
        else:
            assert self.state is CLOSED
            assert not self.channel.client_attached and self.channel.queued_bytes == 0

    def lose_module(self) -> None:
        self.module_ready = False
        pending = {"opening": "open", "closing": "close"}.get(self.conn)
        self.stale += [(pending, self.epoch)] if pending else []
        if self.chunk is not None:
            self.stale.append(("send", self.chunk_epoch))
            self.chunk = None  # the engine fails it; the scheduler is free
        self.chunk_live = False
        self.conn = "closed"
        self.apply(self.channel.module_lost("module rebooted"))
        assert not (self.timers - {HANDOVER_TIMER}) and self.state is CLOSED

    @precondition(lambda self: self.stale)
    @rule(ok=st.booleans(), which=st.integers(0, 10))
    def stale_result_arrives(self, ok: bool, which: int) -> None:
        """A result of an operation voided by module_lost arrives, however late: even
        after the module is ready again and the next connection is under way."""
        channel = self.channel
        kind, epoch = self.stale.pop(which % len(self.stale))
        results: dict[str, Callable[[], list[Action]]] = {
            "open": lambda: (
                channel.open_result(0, epoch) if ok else channel.open_error("timeout", epoch)
            ),
            "close": lambda: channel.close_done(epoch),
            "send": lambda: (
                channel.send_done(1, epoch) if ok else channel.send_failed("ERROR", epoch)
            ),
        }
        late = results[kind]
        (ignored,) = self.apply(late(), may_ignore=True)
        assert isinstance(ignored, Ignored)

    @precondition(lambda self: self.conn == "opening")
    @rule(err=st.sampled_from([0, 0, -2, -7, -6, None]))
    def open_result(self, err: int | None) -> None:
        """``+QSSLOPEN: 1,0,<err>``, or (None) the command failed without a result code.
        Without a result, or with -6 (state error), the module may hold the socket open:
        the channel must close it before trying again."""
        may_be_open = err is None or err == -6
        self.conn = "open" if err == 0 or may_be_open else "closed"
        if err is None:
            actions = self.apply(self.channel.open_error("ERROR", self.epoch))
        else:
            actions = self.apply(self.channel.open_result(err, self.epoch))
        if may_be_open:
            assert CloseSocket() in actions and self.conn == "closing"

    @precondition(lambda self: self.conn == "closing")
    @rule()
    def close_completes(self) -> None:
        self.conn = "closed"
        self.apply(self.channel.close_done(self.epoch))

    @precondition(lambda self: self.conn != "closed")
    @rule()
    def remote_closes(self) -> None:
        if self.conn == "open":
            self.conn = "closed"
            self.chunk_live = False
            actions = self.apply(self.channel.remote_closed())
            assert StateChanged(OPEN, CLOSED, "remote closed") in actions
        else:
            # Closing: our close is racing it, close_done() still follows. Opening: a
            # late URC of an earlier connection; the open result decides.
            (ignored,) = self.apply(self.channel.remote_closed(), may_ignore=True)
            assert isinstance(ignored, Ignored)

    @precondition(lambda self: self.conn in ("open", "closing"))
    @rule(size=st.integers(1, 700))
    def server_sends(self, size: int) -> None:
        """A recv URC; while our close is under way the module may still report data."""
        start = len(self.received)
        data = bytes((start + i) % 251 for i in range(size))
        self.received += data
        self.apply(self.channel.recv(data))

    # --- the scheduler and the sends ---

    @precondition(lambda self: self.chunk is None and self.channel.sendable() > 0)
    @rule()
    def scheduler_takes_a_chunk(self) -> None:
        assert self.state is OPEN and self.conn == "open"  # never send when not open
        chunk = self.channel.next_chunk()
        assert chunk
        self.chunk_epoch = self.channel.epoch
        assert self.chunk_epoch == self.epoch
        for tag in sorted(set(chunk)):
            assert tag >= self.last_tag_sent  # no client's bytes overtake an earlier one's
            self.last_tag_sent = tag
            self.conns_of_client[tag].add(self.conn_id)
            if self.mode == "on-demand":
                self.clients_of_conn[self.conn_id].add(tag)
        self.chunk = chunk
        self.chunk_live = True

    @precondition(lambda self: self.chunk is not None)
    @rule(ok=st.booleans())
    def send_result(self, ok: bool) -> None:
        """The chunk in flight is confirmed or fails; after the channel voided it (remote
        close), its result must be ignored."""
        assert self.chunk is not None
        chunk, self.chunk = self.chunk, None
        live, self.chunk_live = self.chunk_live, False
        epoch = self.chunk_epoch
        if not ok:
            actions = self.apply(self.channel.send_failed("ERROR", epoch), may_ignore=not live)
            assert (CloseSocket() in actions) == live
            return
        actions = self.apply(self.channel.send_done(len(chunk), epoch), may_ignore=not live)
        assert (actions[:1] == [Ignored("send_done", "no chunk in flight")]) != live
        if live:
            self.total_confirmed += len(chunk)
            for tag in chunk:
                self.confirmed[tag] += 1

    # --- timers ---

    @precondition(lambda self: REOPEN_TIMER in self.timers)
    @rule()
    def reopen_timer_fires(self) -> None:
        self.timers.discard(REOPEN_TIMER)
        self.apply(self.channel.timer_fired(REOPEN_TIMER), retry=True)

    @precondition(lambda self: self.timers - {REOPEN_TIMER})
    @rule(data=st.data())
    def other_timer_fires(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.timers - {REOPEN_TIMER})))
        self.timers.discard(name)
        actions = self.apply(self.channel.timer_fired(name))
        if name == IDLE_TIMER:
            assert StreamBroken("idle_timeout", "no traffic for 60 s") in actions

    @precondition(lambda self: self.conn == "open")
    @rule()
    def received_data_is_damaged(self) -> None:
        """A recv URC for this socket arrives damaged: the client never reads past the
        hole; the connection ends (closed by us)."""
        client, held = self.client, self.held
        actions = self.apply(self.channel.recv_damaged("bad_hex"))
        assert StreamBroken("damaged_data", "bad_hex") in actions
        assert self.conn == "closing"
        if client is not None and self.mode == "persistent":
            assert self.client in (None, held)  # it never reads past the hole
        # On-demand, a client waiting for its own connection keeps waiting; nothing more
        # of the damaged connection reaches anyone (it is closing).

    # --- clients ---

    @rule()
    def client_connects(self) -> None:
        if self.client is not None and self.client_eof:
            # A half-closed client yields its place to the newcomer.
            self.client_count += 1
            self.incoming = self.client_count
            self.last_conn_before[self.incoming] = self.conn_id
            actions = self.apply(self.channel.client_connected())
            assert self.client == self.client_count and self.incoming is None
            assert isinstance(actions[0], CloseClient)
            if self.paused and actions[-1] == PauseClient():
                self.writes_after_pause = 1
            return
        if self.client is not None:
            actions = self.channel.client_connected()
            if self.held is None and HANDOVER_TIMER not in self.timers and self.handover:
                self.apply(actions)
                assert HANDOVER_TIMER in self.timers
            else:
                assert len(actions) == 1 and isinstance(actions[0], RefuseClient)
            return
        self.client_count += 1
        self.client = self.client_count
        self.last_conn_before[self.client] = self.conn_id
        self.paused = False
        self.apply(self.channel.client_connected())
        if self.paused:
            self.writes_after_pause = 1  # paused before its first read: no read under way

    @precondition(
        lambda self: (
            self.client is not None
            and not self.client_eof
            and (not self.paused or self.writes_after_pause == 0)
        )
    )
    @rule(size=st.integers(1, MAX_WRITE))
    def client_writes(self, size: int) -> None:
        assert self.client is not None
        if self.paused:
            self.writes_after_pause += 1  # one read may already be under way when paused
        self.written[self.client] += size
        self.total_written += size
        self.apply(self.channel.client_data(bytes([self.client]) * size))

    @precondition(lambda self: self.client is not None)
    @rule()
    def client_disconnects(self) -> None:
        self.client = None
        self.client_eof = False
        self.paused = False
        self.apply(self.channel.client_closed())

    @precondition(lambda self: self.client is not None and not self.client_eof)
    @rule()
    def client_half_closes(self) -> None:
        """shutdown(SHUT_WR): it sends nothing more but stays attached and reads."""
        client = self.client
        assert client is not None
        if not self.written[client]:
            # Nothing asked: indistinguishable from a closed socket, so it counts as gone.
            actions = self.apply(self.channel.client_eof())
            assert CloseClient("client closed without sending anything") in actions
            return
        self.client_eof = True
        held = self.held
        self.apply(self.channel.client_eof())
        assert self.client == (client if held is None else held)

    @precondition(lambda self: self.held is not None)
    @rule()
    def held_client_gives_up(self) -> None:
        self.held = None
        self.apply(self.channel.held_client_left())

    @precondition(lambda self: self.client is not None)
    @rule(size=st.integers(1, MAX_WRITE), reply=st.integers(0, 50))
    def client_hands_over_to_the_next(self, size: int, reply: int) -> None:
        """Leave and let the next client connect and write at once, maybe with the server's
        reply to the first arriving just then: the overlap of one client's flush with the
        next one's start is where mix-ups would hide."""
        self.client_disconnects()
        self.client_connects()
        if not self.paused and self.client is not None:
            self.client_writes(size)
        if reply and self.conn == "open":
            self.server_sends(reply)

    # --- invariants ---

    @invariant()
    def every_client_byte_is_confirmed_queued_or_counted_lost(self) -> None:
        """Invariant 1: nothing is dropped silently."""
        channel = self.channel
        assert self.total_written == self.total_confirmed + channel.queued_bytes + self.total_lost
        if self.client is not None:
            # The attached client was never closed: none of its bytes may be lost.
            unconfirmed = self.written[self.client] - self.confirmed[self.client]
            assert unconfirmed <= channel.queued_bytes

    @invariant()
    def received_bytes_arrive_in_order_exactly_once(self) -> None:
        """Invariant 2, plus: in on-demand mode a client only sees its own connection."""
        accounted = len(self.delivered) + self.rx_dropped + self.channel.recv_buffered_bytes
        assert accounted == len(self.received)
        remaining = iter(self.received)
        assert all(byte in remaining for byte in self.delivered)  # an ordered subsequence
        for conn, clients in self.clients_of_conn.items():
            assert len(clients) <= 1, f"connection {conn} served clients {clients}"

    @invariant()
    def a_client_stream_never_spans_two_connections(self) -> None:
        for client, conns in self.conns_of_client.items():
            assert len(conns) <= 1, f"client {client} sent on connections {conns}"

    @invariant()
    def memory_is_bounded(self) -> None:
        """Invariant 3: paused at the limit; at most one more write once paused."""
        assert self.channel.queued_bytes < self.send_max + 2 * MAX_WRITE
        assert self.channel.recv_buffered_bytes <= self.recv_buffer

    @invariant()
    def the_channel_agrees_with_the_module(self) -> None:
        channel = self.channel
        expected = {"closed": CLOSED, "opening": OPENING, "open": OPEN, "closing": CLOSING}
        assert channel.state is self.state is expected[self.conn]
        assert channel.client_attached == (self.client is not None)
        assert channel.reopen_pending == (REOPEN_TIMER in self.timers)
        assert channel.client_held == (self.held is not None) == (HANDOVER_TIMER in self.timers)
        assert channel.epoch == self.epoch
        if self.chunk is not None and self.chunk_live:
            assert channel.sendable() == 0  # one chunk in flight per channel

    @invariant()
    def nothing_is_stuck(self) -> None:
        """Liveness: with the module ready, bytes to send or a client always mean the
        channel is busy or has a retry timer running; a paused client gets resumed."""
        channel = self.channel
        wants = channel.queued_bytes > 0 or channel.client_attached or self.mode == "persistent"
        if self.module_ready and wants:
            assert channel.state is not CLOSED or channel.reopen_pending
        if self.paused:
            assert channel.queued_bytes > self.send_max // 2

    # --- a module that does what it is asked ---

    def cooperative_step(self) -> bool:
        """The next thing a healthy module and scheduler would do; False if nothing is left."""
        if not self.module_ready:
            self.module_becomes_ready()
        elif self.chunk is not None:
            self.send_result(ok=True)
        elif self.conn == "opening":
            self.open_result(0)
        elif self.conn == "closing":
            self.close_completes()
        elif self.channel.sendable():
            self.scheduler_takes_a_chunk()
        elif REOPEN_TIMER in self.timers:
            self.reopen_timer_fires()
        else:
            return False
        return True

    @rule()
    def things_go_well(self) -> None:
        """Without this, most runs would spend their steps on clients and never get a
        connection open."""
        self.cooperative_step()

    def teardown(self) -> None:
        """A cooperative module from here on: everything queued must be confirmed or
        lost, and the client still attached must have all its bytes confirmed."""
        if not hasattr(self, "channel"):
            return
        steps = 0
        while self.cooperative_step():
            steps += 1
            assert steps < 1_000_000, "the channel never settles"
        assert self.channel.queued_bytes == 0
        self.every_client_byte_is_confirmed_queued_or_counted_lost()
        self.received_bytes_arrive_in_order_exactly_once()
        self.a_client_stream_never_spans_two_connections()
        self.the_channel_agrees_with_the_module()
        self.nothing_is_stuck()
        if self.client is not None:
            assert self.confirmed[self.client] == self.written[self.client]


ChannelModel.TestCase.settings = settings(max_examples=300, stateful_step_count=50, deadline=None)
TestChannelModel = ChannelModel.TestCase
