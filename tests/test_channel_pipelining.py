"""The channel and the scheduler with pipelined sends (issue 15): several chunks of a socket
await their ``+QSSLSEND`` result at once; results confirm them in order; a failure takes
every unconfirmed byte with it (counted, the client closed); a refused chunk goes back
whole. Table-driven, then a stateful model on a virtual clock against a module that takes
a given number of sends before their results (or refuses more than one)."""

# ruff: noqa: E501  (one table row per line reads best)

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from bridged.core.channel import (
    Action,
    Channel,
    ChannelState,
    CloseClient,
    CloseSocket,
    CountTxLost,
    CountTxSent,
    Ignored,
    Mode,
    QueueLimits,
    ReconnectPolicy,
)
from bridged.core.scheduler import Refusal, Scheduler, Settled

CHUNK = 100


def open_channel(mode: Mode = "persistent", window: int = 3) -> Channel:
    channel = Channel(
        0,
        mode,
        limits=QueueLimits(send_max_bytes=100_000),
        reconnect=ReconnectPolicy(jitter=0.0),
        max_chunk=CHUNK,
        rng=random.Random(0),
        max_unconfirmed=window,
    )
    channel.module_ready()
    channel.client_connected()
    channel.open_result(0)
    assert channel.state is ChannelState.OPEN
    return channel


@dataclass
class Play:
    """Runs a row's steps; keeps the chunks in flight and the accounting."""

    channel: Channel
    in_flight: deque[bytes] = field(default_factory=deque)
    written: int = 0
    sent: int = 0
    lost: int = 0
    closed_client: bool = False
    closed_socket: bool = False
    ignored: int = 0
    stream: bytearray = field(default_factory=bytearray)  # what the module took, in order

    def account(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, CountTxSent):
                self.sent += a.n
            elif isinstance(a, CountTxLost):
                self.lost += a.n
            elif isinstance(a, CloseClient):
                self.closed_client = True
            elif isinstance(a, CloseSocket):
                self.closed_socket = True
            elif isinstance(a, Ignored):
                self.ignored += 1

    def step(self, step: str) -> None:
        c = self.channel
        verb, _, arg = step.partition(" ")
        if verb == "write":
            data = bytes((self.written + i) % 251 for i in range(int(arg)))
            self.written += len(data)
            self.account(c.client_data(data))
        elif verb == "take":
            for _ in range(int(arg or 1)):
                chunk = c.next_chunk()
                self.in_flight.append(chunk)
        elif verb == "ok":  # the oldest result: 0
            chunk = self.in_flight.popleft()
            actions = c.send_done(len(chunk), c.epoch)
            if CountTxSent(len(chunk)) in actions:
                self.stream += chunk
            self.account(actions)
        elif verb == "fail":  # the oldest result: an error (or its timeout)
            self.in_flight.popleft()
            self.account(c.send_failed("+QSSLSEND: 1,0,-2", c.epoch))
        elif verb == "refuse":  # ERROR before '>' to the newest
            chunk = self.in_flight.pop()
            self.account(c.send_refused(chunk, c.epoch))
        elif verb == "window":
            c.set_max_unconfirmed(int(arg))
        elif verb == "leave":
            self.account(c.client_closed())
        elif verb == "remote-close":
            self.account(c.remote_closed())
        else:
            raise AssertionError(step)


@dataclass(frozen=True)
class Row:
    name: str
    window: int
    steps: tuple[str, ...]
    sendable: int  # bytes sendable at the end
    unconfirmed: int  # chunks awaiting their result
    sent: int
    lost: int
    client_closed: bool
    mode: Mode = "persistent"


ROWS = [
    Row("window 1: the next chunk waits for the result", 1, ("write 300", "take"), 0, 1, 0, 0, False),
    Row("window 1: the result frees the line for it", 1, ("write 300", "take", "ok"), 200, 0, 100, 0, False),
    Row("window 3: three chunks before any result", 3, ("write 500", "take 3"), 0, 3, 0, 0, False),
    Row("window 3: each result frees a place", 3, ("write 500", "take 3", "ok"), 200, 2, 100, 0, False),
    Row("results confirm in order", 3, ("write 250", "take 3", "ok", "ok", "ok"), 0, 0, 250, 0, False),
    Row("a failed result takes every unconfirmed byte", 3, ("write 500", "take 3", "fail"), 0, 0, 0, 500, True),
    Row("a failure after a success counts only the rest", 3, ("write 500", "take 3", "ok", "fail"), 0, 0, 100, 400, True),
    Row("results after a failure change nothing", 3, ("write 500", "take 3", "fail", "ok", "ok"), 0, 0, 0, 500, True),
    Row("a remote close with chunks unconfirmed", 3, ("write 500", "take 2", "remote-close"), 0, 0, 0, 500, True),
    Row("a refused chunk goes back, nothing counted", 3, ("write 500", "take 2", "refuse"), 400, 1, 0, 0, False),
    Row("a refused chunk is sent again first", 3, ("write 500", "take 2", "refuse", "take", "ok", "ok"), 300, 0, 200, 0, False),
    Row("a refusal after a failure changes nothing", 3, ("write 500", "take 2", "fail", "refuse"), 0, 0, 0, 500, True),
    Row("the window falls to 1 with chunks unconfirmed", 3, ("write 500", "take 2", "refuse", "window 1"), 0, 1, 0, 0, False),
    Row("... and the chunk goes once the result is in", 3, ("write 500", "take 2", "refuse", "window 1", "ok"), 400, 0, 100, 0, False),
    Row("on-demand: a departed client's chunks still go", 3, ("write 250", "take 2", "leave", "take", "ok", "ok", "ok"), 0, 0, 250, 0, False, "on-demand"),
    Row("on-demand: a refused chunk of a departed client goes back", 3, ("write 250", "take 2", "leave", "refuse", "ok"), 150, 0, 100, 0, False, "on-demand"),
]  # fmt: skip


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_pipelined_sends(row: Row) -> None:
    play = Play(open_channel(row.mode, row.window))
    for step in row.steps:
        play.step(step)
    c = play.channel
    assert (c.sendable(), c.unconfirmed_sends) == (row.sendable, row.unconfirmed)
    assert (play.sent, play.lost, play.closed_client) == (row.sent, row.lost, row.client_closed)
    # Every byte written is confirmed, counted lost, or still queued: never dropped.
    assert play.written == play.sent + play.lost + c.queued_bytes
    # What the module confirmed is the client's stream from its start, in order, once.
    assert bytes(play.stream) == bytes(i % 251 for i in range(play.sent))


def test_a_result_for_a_chunk_of_another_size_is_a_programming_error() -> None:
    play = Play(open_channel(window=2))
    play.step("write 150")
    play.step("take 2")
    with pytest.raises(ValueError, match="send_done"):
        play.channel.send_done(50)  # the oldest chunk is 100 bytes
    with pytest.raises(ValueError, match="send_refused"):
        play.channel.send_refused(bytes(100))  # the newest is 50


# --- stateful: channel + scheduler + a module on a virtual clock -------------------------------

RTT = 1.0  # a send's result comes this long after its OK
RESULT_TIMEOUT = 5.0  # the host gives up on a result after this long (send failed)


class PipelinedSends(RuleBasedStateMachine):
    """One socket's channel and the scheduler, as the send pump drives them, against a
    module that takes ``module_window`` sends before their results (1: it refuses a
    second). The client writes a counting sequence, so the module's stream shows holes,
    duplicates and reordering."""

    @initialize(
        profile_window=st.sampled_from([1, 2, 4]),
        module_window=st.sampled_from([1, 2, 4]),
        mode=st.sampled_from(["persistent", "on-demand"]),
    )
    def setup(self, profile_window: int, module_window: int, mode: Mode) -> None:
        self.now = 0.0
        self.channel = open_channel(mode, window=1)
        self.scheduler: Scheduler[Channel] = Scheduler([self.channel], profile_window)
        self.profile_window, self.module_window = profile_window, module_window
        self.epoch = self.channel.epoch
        # The module: sends it took on this connection, oldest first, each with the time
        # its result is due (or None: the result never comes).
        self.pending: deque[tuple[bytes, float | None, float]] = deque()
        self.stream = bytearray()  # confirmed bytes, in order
        self.taken = bytearray()  # every byte the module took, in order
        self.written = self.sent = self.lost = 0
        self.refusals = self.fallbacks = self.restored = 0
        self.broken = False  # the stream ended (a failure): the client was closed

    def account(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, CountTxSent):
                self.sent += a.n
            elif isinstance(a, CountTxLost):
                self.lost += a.n
            elif isinstance(a, CloseClient):
                self.broken = True

    @precondition(lambda self: not self.broken and self.channel.client_attached)
    @rule(n=st.integers(1, 250))
    def client_writes(self, n: int) -> None:
        data = bytes((self.written + i) % 251 for i in range(n))
        self.written += n
        self.account(self.channel.client_data(data))

    @rule()
    def pump_settles(self) -> None:
        """Before its turn the pump asks for the verdict on a refused pipelined send."""
        verdict = self.scheduler.settle()
        if verdict is Settled.FELL_BACK:
            # Only once the refused socket's earlier sends were confirmed, stream intact.
            assert not self.broken and not self.pending
            self.fallbacks += 1
        elif verdict is Settled.RESTORED:
            assert self.broken  # its connection ended: the ERROR may have been that
            self.restored += 1

    @precondition(lambda self: not self.broken)
    @rule()
    def pump_sends(self) -> None:
        """The pump's turn: pick, send; the module takes it or refuses it before '>'."""
        self.pump_settles()
        channel = self.scheduler.pick()
        if channel is None:
            return
        assert channel.unconfirmed_sends < self.scheduler.window
        chunk = channel.next_chunk()
        if len(self.pending) >= self.module_window:
            self.refusals += 1
            # Only pipelined sends overrun the module; the chunk goes back.
            assert self.scheduler.refused() is Refusal.RETRY
            self.account(channel.send_refused(chunk, self.epoch))
        else:
            self.taken += chunk
            self.pending.append((chunk, self.now + RTT, self.now))
        self.scheduler.done()

    @precondition(lambda self: not self.broken and self.pending)
    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.0]))
    def time_passes(self, dt: float) -> None:
        """Results come in order when due; one overdue past the timeout fails the send."""
        self.now += dt
        while self.pending and not self.broken:
            chunk, due, sent_at = self.pending[0]
            if due is not None and due <= self.now:
                self.pending.popleft()
                self.stream += chunk
                self.account(self.channel.send_done(len(chunk), self.epoch))
            elif sent_at + RESULT_TIMEOUT <= self.now:
                self.pending.popleft()
                self.account(self.channel.send_failed("no +QSSLSEND result", self.epoch))
            else:
                break

    @precondition(lambda self: not self.broken and self.pending)
    @rule()
    def oldest_result_fails(self) -> None:
        self.pending.popleft()
        self.account(self.channel.send_failed("+QSSLSEND: 1,0,-2", self.epoch))

    @precondition(lambda self: not self.broken and self.pending)
    @rule()
    def a_result_never_comes(self) -> None:
        chunk, _, sent_at = self.pending[0]
        self.pending[0] = (chunk, None, sent_at)

    @precondition(lambda self: self.broken)
    @rule()
    def late_results_after_the_failure(self) -> None:
        """Results of the broken stream's other sends still arrive: they change nothing."""
        while self.pending:
            chunk, _, _ = self.pending.popleft()
            (ignored,) = self.channel.send_done(len(chunk), self.epoch)
            assert isinstance(ignored, Ignored)

    @invariant()
    def nothing_is_dropped_duplicated_or_reordered(self) -> None:
        c = self.channel
        assert self.written == self.sent + self.lost + c.queued_bytes
        # The module took the client's stream in order, each byte once (refused chunks
        # were not taken and went out later).
        assert bytes(self.taken) == bytes(i % 251 for i in range(len(self.taken)))
        assert bytes(self.stream) == bytes(self.taken[: len(self.stream)])
        assert self.sent == len(self.stream)
        if self.broken:  # the client was closed and its unconfirmed bytes counted
            assert c.queued_bytes == 0 and not c.client_attached

    @invariant()
    def the_window_holds(self) -> None:
        assert self.channel.unconfirmed_sends <= max(self.profile_window, 1)
        # A module that takes fewer refuses once; the window is 1 from then on, for good
        # (logged once) when the earlier sends are confirmed.
        assert self.refusals <= int(self.profile_window > self.module_window)
        assert self.fallbacks + self.restored <= self.refusals
        if self.refusals and not self.restored:
            assert self.scheduler.window == 1
        if not self.refusals or self.restored:
            assert self.scheduler.window == self.profile_window


TestPipelinedSends = PipelinedSends.TestCase
TestPipelinedSends.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
