"""Issue 12 (and issue 17's idle timeout) through the pure parts: the channel on a virtual
clock, the codec's damage attribution, the listener's bound on closing clients.

Each test names the problem it reproduces; each failed on the code before the fix."""

from __future__ import annotations

import random

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from bridged.core.at_codec import (
    ATDecoder,
    DataFormat,
    InfoLine,
    ProtocolError,
    RecvUrc,
)
from bridged.core.channel import (
    HANDOVER_TIMER,
    IDLE_TIMER,
    REOPEN_TIMER,
    SEND_STALL_TIMER,
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
    DeliverToClient,
    HoldClient,
    Ignored,
    Mode,
    OpenSocket,
    QueueLimits,
    ReconnectPolicy,
    RefuseClient,
    StartTimer,
    StreamBroken,
    Timeouts,
)
from bridged.core.module_profile import BC26
from bridged.shell.listener import ClientConnection

CLOSED, OPENING, OPEN, CLOSING = (
    ChannelState.CLOSED,
    ChannelState.OPENING,
    ChannelState.OPEN,
    ChannelState.CLOSING,
)

#: The default module's (BC26) sockets: a decoder's damage touches all of them.
ALL_SOCKETS = BC26.connect_ids


def make(mode: Mode, *, recv_buffer: int = 100, **timeouts: float) -> Channel:
    return Channel(
        2,
        mode,
        limits=QueueLimits(send_max_bytes=10_000, recv_buffer_bytes=recv_buffer),
        reconnect=ReconnectPolicy(initial=1.0, max=8.0, jitter=0.0, open_retries=2),
        max_chunk=730,
        rng=random.Random(0),
        timeouts=Timeouts(**timeouts),
    )


def of(kind: type, actions: list[Action]) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def opened(channel: Channel, *, client: bool = True) -> Channel:
    channel.module_ready()
    if client:
        channel.client_connected()
    channel.open_result(0, channel.epoch)
    assert channel.state is OPEN
    return channel


# --- epochs -------------------------------------------------------------------------------


def test_every_connection_has_its_own_epoch_and_stale_results_are_ignored() -> None:
    channel = make("persistent")
    (first,) = of(OpenSocket, channel.module_ready())
    channel.open_result(0, first.epoch)
    channel.client_connected()
    channel.client_data(b"old")
    chunk = channel.next_chunk()
    old_epoch = channel.epoch
    channel.module_lost("module rebooted")
    (second,) = of(OpenSocket, channel.module_ready())
    assert second.epoch > first.epoch
    # The old connection's results arrive late, after the new open went out.
    assert channel.send_done(len(chunk), old_epoch)[0] == Ignored("send_done", "no chunk in flight")
    assert isinstance(channel.open_result(0, old_epoch)[0], Ignored)
    assert channel.state is OPENING  # the stale success did not open the new connection
    channel.open_result(0, second.epoch)
    channel.client_connected()
    channel.client_data(b"new")
    channel.next_chunk()
    assert isinstance(channel.send_failed("ERROR", old_epoch)[0], Ignored)
    assert channel.state is OPEN and channel.client_attached


# --- 1: reload retires a socket through its channel ----------------------------------------


def test_problem1_a_retired_socket_never_sends_its_queue_elsewhere() -> None:
    channel = opened(make("on-demand"))
    channel.client_data(b"x" * 2000)
    chunk = channel.next_chunk()
    actions = channel.retire("socket reconfigured")
    assert CloseClient("socket reconfigured") in actions
    assert CountTxLost(2000, "socket reconfigured") in actions  # counted, never sent
    assert of(CloseSocket, actions) and channel.state is CLOSING
    assert channel.sendable() == 0 and channel.queued_bytes == 0
    # The send in flight and anything later change nothing; nothing ever opens again.
    assert isinstance(channel.send_done(len(chunk), channel.epoch)[0], Ignored)
    assert of(RefuseClient, channel.client_connected())
    channel.close_done(channel.epoch)
    assert channel.state is CLOSED
    channel.module_lost("x")
    assert channel.module_ready() == []


# --- 3: the persistent buffer never makes a hole or a splice -------------------------------


def test_problem3_persistent_buffer_overflow_closes_and_reopens_instead_of_a_hole() -> None:
    channel = opened(make("persistent", recv_buffer=10), client=False)
    assert channel.recv(b"PUBLISH#41") == []
    actions = channel.recv(b" part 2")  # would overflow: no hole may be delivered
    assert StreamBroken("recv_buffer_full", "receive buffer of 10 bytes full, no client") in (
        actions
    )
    assert sum(a.n for a in of(CountRxDropped, actions)) == 17  # everything, counted
    assert of(CloseSocket, actions) and channel.recv_buffered_bytes == 0
    actions = channel.close_done(channel.epoch)
    assert of(StartTimer, actions) == [StartTimer(REOPEN_TIMER, 1.0)]  # and reopened
    assert channel.client_connected() == []  # the next client gets no stale head


def test_problem3_persistent_buffer_is_cleared_when_its_connection_ends() -> None:
    channel = opened(make("persistent"), client=False)
    channel.recv(b"PUBLISH#41 part 1 of 2|")
    actions = channel.remote_closed()
    assert CountRxDropped(23, "buffered, then its connection ended") in actions
    channel.timer_fired(REOPEN_TIMER)
    channel.open_result(0, channel.epoch)
    channel.recv(b"CONNACK of connection 2|")
    # Only the new connection's bytes: two TLS sessions are never glued together.
    assert channel.client_connected() == [DeliverToClient(b"CONNACK of connection 2|")]


def test_problem3_persistent_buffer_is_cleared_when_the_module_is_lost() -> None:
    channel = opened(make("persistent"), client=False)
    channel.recv(b"half a message")
    assert CountRxDropped(14, "buffered, then module rebooted") in channel.module_lost(
        "module rebooted"
    )
    assert channel.recv_buffered_bytes == 0


# --- 4: damaged received data ends the stream ----------------------------------------------


def test_problem4_a_damaged_recv_closes_the_client_and_the_connection() -> None:
    channel = opened(make("on-demand"))
    channel.recv(b"first part")
    actions = channel.recv_damaged("bad_hex: non-hex digit")
    assert StreamBroken("damaged_data", "bad_hex: non-hex digit") in actions
    assert of(CloseClient, actions) and of(CloseSocket, actions)
    assert channel.state is CLOSING and not channel.client_attached
    # What the module still reports of that connection reaches nobody.
    assert of(CountRxDropped, channel.recv(b"rest"))


def test_problem4_damage_that_cannot_be_attributed_touches_every_socket() -> None:
    decoder = ATDecoder()
    cases = [
        b'\r\n+QSSLURB: "recv",1,3,2,"4142"\r\n',  # damaged prefix
        b'\r\n+QSSLURC: "reCv",1,3,2,"4142"\r\n',  # damaged keyword
        b'\r\n+QSSLURC: "recv",7,3,2,"4142"\r\n',  # a hit on the context digit
        b'\r\n+QSSLURC: "recv",1,9,2,"4142"\r\n',  # a hit on the connectID
    ]
    for line in cases:
        events = decoder.feed(line)
        errors = [e for e in events if isinstance(e, ProtocolError)]
        assert errors and errors[0].sockets == ALL_SOCKETS, (line, events)
        assert not any(isinstance(e, RecvUrc | InfoLine) for e in events), line


def test_problem4_a_text_length_error_breaks_every_stream() -> None:
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    # Length made longer than the data: the payload runs into the next URC.
    events = decoder.feed(b'\r\n+QSSLURC: "recv",1,1,9,"abc"\r\n+QSSLURC: "recv",1,4,2,"4142"\r\n')
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert errors and errors[0].sockets == ALL_SOCKETS


# --- 5: half-close -------------------------------------------------------------------------


def test_problem5_half_closed_client_still_gets_the_reply() -> None:
    channel = opened(make("on-demand", half_close=30.0))
    channel.client_data(b"GET / HTTP/1.0\r\n\r\n")
    assert channel.client_eof() == [StartTimer(IDLE_TIMER, 30.0)]
    chunk = channel.next_chunk()
    channel.send_done(len(chunk), channel.epoch)
    assert channel.state is OPEN  # not closed after the flush
    assert channel.recv(b"HTTP/1.0 200 OK")[0] == DeliverToClient(b"HTTP/1.0 200 OK")
    actions = channel.remote_closed()
    assert CloseClient("remote closed") in actions  # then EOF, like any peer


def test_problem5_half_closed_client_is_closed_after_the_idle_bound() -> None:
    channel = opened(make("on-demand", half_close=30.0))
    channel.client_data(b"request")
    channel.client_eof()
    channel.next_chunk()
    channel.send_done(7, channel.epoch)
    actions = channel.timer_fired(IDLE_TIMER)
    assert StreamBroken("idle_timeout", "no traffic for 30 s") in actions
    assert of(CloseClient, actions) and of(CloseSocket, actions)


# --- 6: a quick reconnect ------------------------------------------------------------------


def test_problem6_a_client_arriving_before_the_previous_left_waits_for_it() -> None:
    channel = opened(make("on-demand", handover_wait=2.0))
    channel.client_data(b"probe")
    assert channel.client_connected() == [HoldClient(), StartTimer(HANDOVER_TIMER, 2.0)]
    actions = channel.client_closed()  # the previous client's EOF arrives just after
    assert AttachHeldClient() in actions and channel.client_attached
    assert not of(RefuseClient, actions)


def test_problem6_a_held_client_is_refused_when_the_wait_is_over() -> None:
    channel = opened(make("on-demand", handover_wait=2.0))
    channel.client_data(b"busy")
    channel.client_connected()
    assert of(RefuseClient, channel.timer_fired(HANDOVER_TIMER))
    assert channel.client_attached and not channel.client_held


def test_problem6_a_half_closed_client_yields_to_a_new_one() -> None:
    # On the wire a client that closed its socket looks half-closed: a reconnecting app
    # must not wait behind its own previous connection.
    channel = opened(make("on-demand", handover_wait=2.0))
    channel.client_data(b"done")
    channel.client_eof()
    actions = channel.client_connected()
    assert of(CloseClient, actions) and channel.client_attached
    assert not of(HoldClient, actions) and not of(RefuseClient, actions)


# --- found by reading ----------------------------------------------------------------------


def test_open_failing_with_state_error_closes_the_socket_before_retrying() -> None:
    channel = make("persistent")
    channel.module_ready()
    actions = channel.open_result(-6, channel.epoch)
    assert of(CloseSocket, actions) and not of(StartTimer, actions)
    assert channel.state is CLOSING
    actions = channel.close_done(channel.epoch)
    assert of(StartTimer, actions) == [StartTimer(REOPEN_TIMER, 1.0)]


def test_open_without_result_is_closed_by_the_channel_before_retrying() -> None:
    channel = make("on-demand")
    channel.module_ready()
    channel.client_connected()
    actions = channel.open_error("no +QSSLOPEN result in time", channel.epoch)
    assert of(CloseSocket, actions) and channel.state is CLOSING
    assert of(StartTimer, channel.close_done(channel.epoch)) == [StartTimer(REOPEN_TIMER, 1.0)]


def test_a_damaged_closed_urc_is_damage_on_every_socket() -> None:
    decoder = ATDecoder()
    for line in (b'\r\n+QSSLURC: "cl0sed",1,4\r\n', b'\r\n+QSSLUR: "closed",1,4\r\n'):
        events = decoder.feed(line)
        assert [e.sockets for e in events if isinstance(e, ProtocolError)] == [ALL_SOCKETS]
    # ... and the channel closes: no zombie OPEN socket until the client writes.
    channel = opened(make("on-demand"))
    channel.recv_damaged('bad_urc: +QSSLURC: "cl0sed",1,4')
    assert channel.state is CLOSING and not channel.client_attached


def test_a_closed_client_that_never_reads_is_aborted_after_a_bound() -> None:
    clock = Clock()

    class Sink:
        def client_connected(self, client: ClientConnection) -> bool:
            return True

        def client_data(self, client: ClientConnection, data: bytes) -> None: ...

        def client_eof(self, client: ClientConnection) -> None: ...

        def client_closed(self, client: ClientConnection, reason: str) -> None: ...

    client = ClientConnection(Sink(), stall_limit=1000, clock=clock, close_abort_after=30.0)
    transport = StringTransport()
    aborted: list[bool] = []
    transport.abortConnection = lambda: aborted.append(True)  # type: ignore[method-assign]
    client.makeConnection(transport)
    client.write(b"x" * 5000)
    client.close()  # the client never reads: loseConnection never completes
    clock.advance(29)
    assert not aborted
    clock.advance(2)
    assert aborted == [True]


# --- issue 17: idle_timeout ----------------------------------------------------------------


def test_idle_timeout_closes_a_quiet_connection_and_traffic_restarts_it() -> None:
    channel = make("on-demand", idle=300.0)
    channel.module_ready()
    channel.client_connected()
    actions = channel.open_result(0, channel.epoch)
    assert StartTimer(IDLE_TIMER, 300.0) in actions
    assert StartTimer(IDLE_TIMER, 300.0) in channel.recv(b"traffic")
    assert StartTimer(IDLE_TIMER, 300.0) in channel.client_data(b"more")
    actions = channel.timer_fired(IDLE_TIMER)
    assert StreamBroken("idle_timeout", "no traffic for 300 s") in actions
    assert CloseClient("idle: no traffic for 300 s") in actions
    assert of(CloseSocket, actions) and channel.state is CLOSING


def test_idle_timeout_zero_means_never() -> None:
    channel = opened(make("persistent", idle=0.0))
    assert not [a for a in channel.recv(b"x") if isinstance(a, StartTimer)]
    assert isinstance(channel.timer_fired(IDLE_TIMER)[0], Ignored)


# --- a send that makes no progress (the module silent after a late '>', twice) -----------


def test_a_client_whose_bytes_wait_too_long_is_disconnected_honestly() -> None:
    """With the serial line silent (a late '>' costs the prompt wait plus the module's
    data-mode timeout; two in a row passed the soak's 30 s), a client's bytes can wait
    with nothing confirmed. Past send_stall it is disconnected, its bytes counted lost
    and the connection closed, instead of waiting on an open connection without end."""
    channel = opened(make("persistent", send_stall=25.0))
    assert StartTimer(SEND_STALL_TIMER, 25.0) in channel.client_data(b"a" * 1000)
    chunk = channel.next_chunk()
    actions = channel.send_done(len(chunk), channel.epoch)
    assert CountTxSent(730) in actions
    assert StartTimer(SEND_STALL_TIMER, 25.0) in actions  # progress: the wait starts over
    # Nothing more is confirmed (the rest waits behind the silent line).
    actions = channel.timer_fired(SEND_STALL_TIMER)
    assert [a.label for a in actions if isinstance(a, StreamBroken)] == ["send_stall"]
    assert of(CloseClient, actions) and of(CloseSocket, actions)
    assert [a.n for a in actions if isinstance(a, CountTxLost)] == [270]
    assert channel.state is CLOSING and not channel.client_attached


def test_send_stall_timer_stops_when_nothing_waits_and_zero_means_never() -> None:
    channel = opened(make("on-demand", send_stall=25.0))
    channel.client_data(b"x" * 10)
    chunk = channel.next_chunk()
    assert CancelTimer(SEND_STALL_TIMER) in channel.send_done(len(chunk), channel.epoch)
    assert isinstance(channel.timer_fired(SEND_STALL_TIMER)[0], Ignored)
    never = opened(make("persistent"))
    assert not [a for a in never.client_data(b"x") if isinstance(a, StartTimer)]


def test_a_client_waiting_for_its_connection_is_bounded_too() -> None:
    """The soak, late '>' after late '>': a client arrived while the previous connection
    was still closing (its close queued behind the silent line) and waited 30 s."""
    channel = opened(make("on-demand", send_stall=25.0, handover_wait=2.0))
    channel.client_data(b"old")
    channel.client_closed()  # the owner left; its bytes are flushed first
    assert channel.client_connected() == []  # attached, waits for its own connection
    assert StartTimer(SEND_STALL_TIMER, 25.0) in channel.client_data(b"n" * 100)
    actions = channel.timer_fired(SEND_STALL_TIMER)
    assert of(CloseClient, actions) and not of(StreamBroken, actions)
    assert [a.n for a in actions if isinstance(a, CountTxLost)] == [100]
    assert channel.sendable() == 3  # the previous client's bytes still go out


def test_the_previous_clients_confirmed_sends_do_not_extend_a_waiting_clients_bound() -> None:
    """Found by the soak (seed 3595955291): a client waited 31 s for its own connection
    while the one before it, which had left, was flushed: each of that client's
    confirmed chunks restarted the waiting client's bound, then the flush broke and its
    close queued behind a silent line. Only the waiting client's own bytes are its
    progress."""
    channel = opened(make("on-demand", send_stall=25.0, handover_wait=2.0))
    channel.client_data(b"o" * 2000)
    channel.client_closed()  # the owner left; its 2000 bytes are flushed first
    channel.client_connected()
    assert StartTimer(SEND_STALL_TIMER, 25.0) in channel.client_data(b"n" * 100)
    chunk = channel.next_chunk()
    assert chunk == b"o" * 730
    actions = channel.send_done(len(chunk), channel.epoch)
    assert CountTxSent(730) in actions
    assert not of(StartTimer, actions)  # none of the waiting client's bytes moved
    actions = channel.timer_fired(SEND_STALL_TIMER)
    assert of(CloseClient, actions)
    assert [a.n for a in actions if isinstance(a, CountTxLost)] == [100]
