"""Read pacing (issue 14): while a recv URC's rest is on the line, the engine leaves the
serial port unread for that rest's line time and reads it in one go.

Pure parts tested directly (how many bytes the decoder still awaits, how long to wait);
the engine on a virtual clock, with a serial line that delivers bytes as a UART does (a
few at a time, at the line rate), for what a user would notice: fewer reads, and no
answer read later than it arrived plus the margin.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import task
from twisted.python.failure import Failure

from bridged.core.at_codec import ATDecoder, ClosedUrc, DataFormat, Event, RecvUrc
from bridged.core.module_profile import BC26, BC660K
from bridged.core.read_pacing import (
    MAX_MARGIN,
    MIN_PAUSE,
    READ_MARGIN,
    ReadPacer,
    longest_recv_line,
    read_pause,
)
from bridged.shell.at_engine import ATEngine, Response
from bridged.shell.qssl import QsslClient
from tests.test_at_codec import recv_hex, recv_text
from tests.test_at_codec_fast_path import damaged_streams

BAUD = 921600
RATE = BAUD / 10  # bytes a second, 8N1


# ---------------------------------------------------------------- the decision


@pytest.mark.parametrize(
    ("awaiting", "line_rate", "expected"),
    [
        (0, RATE, 0.0),  # no URC in progress: read as bytes come
        (1300, 0.0, 0.0),  # line rate unknown: no pause
        (100, RATE, 0.0),  # 1.1 ms: not worth a timer
        (1300, RATE, 1300 / RATE + READ_MARGIN),
        (1300, 960.0, 1300 / 960 + READ_MARGIN),  # 9600 baud: 1.35 s
        (10**6, RATE, 1330 / RATE + READ_MARGIN),  # capped at the longest line
    ],
)
def test_read_pause(awaiting: int, line_rate: float, expected: float) -> None:
    assert read_pause(awaiting, line_rate, 1330) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("sent", "baud", "prompt_delay", "expected"),
    [
        (1460, 115200, 0.5, (1460 + 26) / 11520 + READ_MARGIN),  # a hex chunk, the note's wait
        (1460, 921600, 0.5, (1460 + 26) / 92160 + READ_MARGIN),
        (1460, 921600, 0.0, 0.0),  # the margin could cost a fifth of the line: none
        (1460, 0, 0.5, 0.0),  # line rate unknown
        (4, 921600, 0.5, 0.0),  # under 2 ms: not worth a timer
    ],
)
def test_pause_after_payload(sent: int, baud: int, prompt_delay: float, expected: float) -> None:
    pause = ReadPacer().pause_after_payload(sent, 26, baud / 10, prompt_delay)
    assert pause == pytest.approx(expected)


def test_a_pause_is_either_none_or_at_least_the_minimum() -> None:
    for awaiting in range(0, 400):
        pause = read_pause(awaiting, RATE, 1330)
        assert pause == 0.0 or pause >= MIN_PAUSE + READ_MARGIN


def test_the_margin_grows_while_reads_come_up_short_and_shrinks_back() -> None:
    pacer = ReadPacer()
    assert pacer.margin == READ_MARGIN
    for _ in range(10):  # the line hands bytes over later than their line time
        pacer.read_after_pause(awaited=1300, got=900)
    assert pacer.margin == MAX_MARGIN
    assert pacer.pause(1300, RATE, 1330) == pytest.approx(1300 / RATE + MAX_MARGIN)
    for _ in range(100):  # ... and then on time
        pacer.read_after_pause(awaited=1300, got=1400)  # (the next URC's start with it)
    assert pacer.margin == READ_MARGIN


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(0, 1400), st.integers(0, 1400))))
def test_the_margin_stays_within_its_bounds(reads: list[tuple[int, int]]) -> None:
    pacer = ReadPacer()
    for awaited, got in reads:
        pacer.read_after_pause(awaited, got)
        assert READ_MARGIN <= pacer.margin <= MAX_MARGIN


@pytest.mark.parametrize("profile", [BC26, BC660K])
def test_the_longest_recv_line_bounds_every_recv_urc_the_module_may_send(profile) -> None:
    hex_line = recv_hex(5, b"\xff" * profile.max_recv_hex).lstrip()
    text_line = recv_text(5, b"x" * profile.max_recv_text).lstrip()
    assert longest_recv_line(profile) >= max(len(hex_line), len(text_line))
    assert longest_recv_line(profile) <= max(len(hex_line), len(text_line)) + 8


# ---------------------------------------------------------------- what the decoder awaits


def _awaiting_after_each_prefix(wire: bytes, decoder: ATDecoder) -> list[int]:
    seen = []
    for at in range(len(wire)):
        decoder.feed(wire[at : at + 1])
        seen.append(decoder.awaiting)
    return seen


@pytest.mark.parametrize(
    ("fmt", "quoted"), [("hex", True), ("hex", False), ("text", True), ("text", False)]
)
def test_awaiting_counts_down_the_urc_once_its_header_is_read(fmt: str, quoted: bool) -> None:
    payload = bytes(range(256)) * 2 + b'\r\n"OK"\r\n'  # text data may hold anything
    line = (recv_hex if fmt == "hex" else recv_text)(2, payload, quoted)
    decoder = ATDecoder()
    decoder.set_recv_format(2, DataFormat.HEX if fmt == "hex" else DataFormat.TEXT)
    seen = _awaiting_after_each_prefix(line + b"\r\nOK\r\n", decoder)
    header_end = line.index(b"%d," % len(payload)) + len(b"%d," % len(payload))
    # The URC is complete at its line end (hex) or after its data and quote (text).
    complete = len(line) - (1 if fmt == "hex" else 2)
    for at, awaiting in enumerate(seen):
        consumed = at + 1
        if consumed < header_end or consumed >= complete:
            assert awaiting == 0, consumed
        elif consumed == header_end and quoted:
            # Whether a quote follows is not known yet: the quotes are not counted.
            assert awaiting == complete - consumed - 2, consumed
        else:
            assert awaiting == complete - consumed, consumed


@st.composite
def intact_streams(draw: st.DrawFn) -> bytes:
    """Recv URCs on sockets 0 (hex) and 1 (text) between answers and prompts."""
    pieces = draw(
        st.lists(
            st.one_of(
                st.binary(min_size=1, max_size=650).map(lambda p: recv_hex(0, p)),
                st.binary(min_size=1, max_size=1300).map(lambda p: recv_text(1, p)),
                st.sampled_from([b"\r\nOK\r\n", b"\r\n+CSQ: 9,0\r\n", b"\r\n> "]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    return b"".join(pieces)


def _check_awaiting(wire: bytes, sizes: list[int], intact: bool) -> None:
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    at = 0
    while at < len(wire):
        for size in sizes:
            decoder.feed(wire[at : at + size])
            at += size
            awaiting = decoder.awaiting
            assert 0 <= awaiting <= longest_recv_line(BC26)
            if intact and awaiting and at < len(wire):
                probe = ATDecoder()  # the same stream, one byte at a time from here
                probe.set_recv_format(1, DataFormat.TEXT)
                probe.feed(wire[:at])
                early = [probe.feed(wire[at + i : at + i + 1]) for i in range(awaiting - 1)]
                assert not any(early), "an event came before the awaited bytes were in"
                # ... and it comes with them, or (quotes not seen yet) two bytes later.
                late = [
                    probe.feed(wire[at + i : at + i + 1]) for i in range(awaiting - 1, awaiting + 2)
                ]
                assert any(late)


@settings(max_examples=200)
@given(wire=intact_streams(), sizes=st.lists(st.integers(1, 400), min_size=1, max_size=10))
def test_awaiting_is_what_comes_before_the_urcs_event(wire: bytes, sizes: list[int]) -> None:
    """On an intact line a pause holds nothing back: the decoder's next event comes with
    the last awaited byte or just after it (a quote not seen yet), never before."""
    _check_awaiting(wire, sizes, intact=True)


@settings(max_examples=300)
@given(wire=damaged_streams(), sizes=st.lists(st.integers(1, 400), min_size=1, max_size=10))
def test_awaiting_never_exceeds_the_longest_recv_line(wire: bytes, sizes: list[int]) -> None:
    """Whatever a damaged header says, the wait it causes is bounded."""
    _check_awaiting(wire, sizes, intact=False)


# ---------------------------------------------------------------- the engine


class UartLine:
    """Twisted's serial port as the engine sees it, on a virtual clock: what the module
    sends arrives ``chunk`` bytes at a time at the line rate; the 'reactor' (``run``)
    reads whatever has arrived while the port is read, the engine may read on request
    (``doRead``), as with the real port."""

    def __init__(
        self, clock: task.Clock, engine: ATEngine, chunk: int = 16, batch: float = 0.0
    ) -> None:
        self.clock = clock
        self.engine = engine
        self.chunk = chunk
        self.batch = batch  # > 0: bytes are handed over only every ``batch`` seconds
        self.connected = True
        self.disconnecting = False
        self.reading = True
        self.reads = 0
        self.written = bytearray()
        self._arrivals: list[tuple[float, bytes]] = []
        self._line_free = 0.0
        engine.makeConnection(self)  # type: ignore[arg-type]

    def module_sends(self, data: bytes) -> float:
        """Put ``data`` on the line after what is on it; when its last byte arrives."""
        at = max(self._line_free, self.clock.seconds())
        for start in range(0, len(data), self.chunk):
            piece = data[start : start + self.chunk]
            at += len(piece) / RATE
            handed = math.ceil(at / self.batch - 1e-9) * self.batch if self.batch else at
            self._arrivals.append((handed, piece))
        self._line_free = at
        return at

    def run(self, until: float, step: float = 0.0002) -> None:
        while self.clock.seconds() < until:
            self.clock.advance(step)  # timers first (the engine's own reads among them)
            if self.reading:
                self.doRead()

    def doRead(self) -> None:
        now = self.clock.seconds() + 1e-9
        arrived = [piece for at, piece in self._arrivals if at <= now]
        if arrived:
            self._arrivals = self._arrivals[len(arrived) :]
            self.reads += 1
            self.engine.dataReceived(b"".join(arrived))

    def pauseProducing(self) -> None:
        self.reading = False

    def resumeProducing(self) -> None:
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written += data

    def loseConnection(self) -> None:
        self.connected = False


def paced_engine(clock: task.Clock) -> tuple[ATEngine, list[Event]]:
    engine = ATEngine(clock)
    engine.timing = replace(engine.timing, line_rate=RATE)
    events: list[Event] = []
    engine.event_observers.append(events.append)
    return engine, events


@pytest.mark.parametrize("pacing", [True, False])
def test_urcs_trickling_in_take_one_read_each_instead_of_dozens(pacing: bool) -> None:
    clock = task.Clock()
    engine, events = paced_engine(clock)
    engine.read_pacing = pacing
    line = UartLine(clock, engine)
    payloads = [os.urandom(650) for _ in range(3)]
    end = line.module_sends(b"".join(recv_hex(1, p) for p in payloads))
    line.run(end + 0.005)
    assert [e.data for e in events if isinstance(e, RecvUrc)] == payloads
    if pacing:
        # Two reads until the first header is in, then one for each URC's rest (which
        # brings the next one's header with it).
        assert line.reads <= 2 + len(payloads)
    else:
        assert line.reads > 3 * 40  # a read every 0.2 ms step for 3 x 14.5 ms


def _batched_download(learn: bool) -> tuple[int, float, float]:
    """40 URCs then an answer on a line that hands bytes over every 4 ms: the reads, the
    margin at the end, and how long after it was handed over the answer was read."""
    clock = task.Clock()
    engine, events = paced_engine(clock)
    if not learn:
        engine.read_pacer.read_after_pause = lambda awaited, got: None  # type: ignore[method-assign]
    line = UartLine(clock, engine, batch=0.004)
    answered: list[float] = []
    engine.command("AT+CSQ").addCallback(lambda _r: answered.append(clock.seconds()))
    line.run(0.001)
    payloads = [os.urandom(650) for _ in range(40)]
    line.module_sends(b"".join(recv_hex(0, p) for p in payloads))
    arrived = line.module_sends(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    line.run(arrived + 0.02)
    assert [e.data for e in events if isinstance(e, RecvUrc)] == payloads
    handed = math.ceil(arrived / 0.004 - 1e-9) * 0.004
    return line.reads, engine.read_pacer.margin, answered[0] - handed


def test_on_a_line_that_hands_bytes_over_in_batches_the_margin_is_learnt() -> None:
    """Bytes handed over every 4 ms (the emulator's pacing; a USB adapter's latency
    timer): a URC's rest is often later than its line time. The pacer learns to wait a
    little longer instead of reading twice; an answer right behind the URCs is still read
    no later than the longest margin after it was handed over."""
    fixed_reads, _margin, _late = _batched_download(learn=False)
    reads, margin, late = _batched_download(learn=True)
    assert READ_MARGIN < margin <= MAX_MARGIN
    assert reads <= 0.92 * fixed_reads
    assert late <= MAX_MARGIN + 0.0004


def test_an_answer_after_a_urc_is_read_no_later_than_the_margin_after_it_arrived() -> None:
    clock = task.Clock()
    engine, events = paced_engine(clock)
    line = UartLine(clock, engine)
    answered: list[float] = []
    d = engine.command("AT+CSQ")
    d.addCallback(lambda _r: answered.append(clock.seconds()))
    line.run(0.001)
    assert bytes(line.written) == b"AT+CSQ\r"
    line.module_sends(recv_hex(3, os.urandom(650)))
    arrived = line.module_sends(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    line.run(arrived + 0.01)
    assert isinstance(events[0], RecvUrc)
    assert answered and answered[0] <= arrived + READ_MARGIN + 0.0004
    assert line.reads <= 3


def test_a_urc_whose_length_lies_holds_reading_for_at_most_the_longest_line() -> None:
    clock = task.Clock()
    engine, _events = paced_engine(clock)
    seen: list[tuple[float, Event]] = []
    engine.event_observers.append(lambda event: seen.append((clock.seconds(), event)))
    line = UartLine(clock, engine)
    # The header claims 650 bytes; the line carries 10, then a close URC.
    line.module_sends(b'\r\n+QSSLURC: "recv",1,2,650,"00112233445566778899"\r\n')
    line.module_sends(b'\r\n+QSSLURC: "closed",1,2\r\n')
    line.run(0.05)
    closed_at = next(t for t, e in seen if isinstance(e, ClosedUrc))
    assert closed_at <= longest_recv_line(BC26) / RATE + READ_MARGIN + 0.001


def test_a_command_deadline_during_a_pause_sees_what_arrived_first() -> None:
    """A damaged URC's claimed length makes the engine wait; the command's answer is on
    the line meanwhile, and its deadline falls in the wait: the engine reads the line
    before deciding, so the command gets its answer instead of a timeout."""
    clock = task.Clock()
    engine, _events = paced_engine(clock)
    line = UartLine(clock, engine)
    results: list[object] = []
    engine.command("AT+CSQ", timeout=0.004).addBoth(results.append)
    line.run(0.0004)
    line.module_sends(b'\r\n+QSSLURC: "recv",1,2,650,"0011223344"\r\n')
    line.module_sends(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n")
    line.run(0.02)
    assert len(results) == 1
    assert isinstance(results[0], Response), results[0]
    assert results[0].lines == ["+CSQ: 20,99"]


def test_losing_the_port_during_a_pause_cancels_it_and_a_new_port_is_read_at_once() -> None:
    clock = task.Clock()
    engine, events = paced_engine(clock)
    line = UartLine(clock, engine)
    line.module_sends(recv_hex(1, os.urandom(650))[:200])
    line.run(0.003)
    assert not line.reading  # paused: the URC's rest is on its way
    line.connected = False
    engine.connectionLost(Failure(ConnectionError("hang-up")))
    assert not clock.getDelayedCalls()
    fresh = UartLine(clock, engine)
    fresh.module_sends(b'\r\n+QSSLURC: "closed",1,4\r\n')
    fresh.run(clock.seconds() + 0.002)
    assert fresh.reading
    assert any(isinstance(e, ClosedUrc) for e in events)


# ---------------------------------------------------------------- after a payload


def _sends(count: int, result_gap: float, prompt_delay: float = 0.5) -> tuple[float, float]:
    """``count`` chunks sent one after the other through the QSSL layer on the virtual
    line. The module answers ``>`` to each command line, then, once the payload has
    crossed the line (it is in data mode meanwhile and sends nothing), ``OK`` and
    ``result_gap`` later the ``+QSSLSEND`` result. Returns the serial reads per send from
    each payload's write to its confirmation, and the longest a result was read after it
    arrived."""
    clock = task.Clock()
    engine, _events = paced_engine(clock)
    engine.timing = replace(engine.timing, prompt_delay=prompt_delay)
    qssl = QsslClient(engine, clock)
    line = UartLine(clock, engine)
    command = b"AT+QSSLSEND=1,0,730\r"
    reads = 0
    latest = 0.0
    for _ in range(count):
        payload = os.urandom(730)
        line.written.clear()
        _accepted, confirmed = qssl.send(0, payload, DataFormat.HEX)
        done: list[float] = []
        confirmed.addCallback(lambda _r, done=done: done.append(clock.seconds()))
        line.run(clock.seconds() + 0.0004)
        assert bytes(line.written) == command
        line.module_sends(b"\r\n> ")
        while len(line.written) == len(command):
            line.run(clock.seconds() + 0.0002)
        assert bytes(line.written[len(command) :]) == payload.hex().upper().encode()
        before = line.reads
        crossed = clock.seconds() + 2 * len(payload) / RATE  # the module has it all
        clock.callLater(crossed - clock.seconds(), line.module_sends, b"\r\nOK\r\n")
        result = b"\r\n+QSSLSEND: 1,0,0\r\n"
        arrives = crossed + (6 + len(result)) / RATE + result_gap
        clock.callLater(arrives - len(result) / RATE - clock.seconds(), line.module_sends, result)
        line.run(arrives + 0.02)
        assert done, "the send was not confirmed"
        reads += line.reads - before
        latest = max(latest, done[0] - arrives)
    return reads / count, latest


def test_ok_and_the_result_right_behind_it_are_read_in_one_go() -> None:
    """While its payload crosses the line the module is in data mode and sends nothing;
    then come ``OK`` and, a moment later, the send's result. The engine leaves the port
    unread until they should be in and reads them in one go: one wake-up a chunk fewer
    (a quarter of a bulk upload's), each result read within the longest margin."""
    reads, late = _sends(10, result_gap=0.002)
    assert reads <= 1.5  # 3 before; the margin is learnt over the first few sends
    assert late <= MAX_MARGIN + 0.0004


def test_a_result_that_takes_its_time_is_read_as_soon_as_it_comes() -> None:
    """A result behind the network's round trip: ``OK`` is read after the pause, the
    port is read again at once, and the result as it arrives (on this line, in two
    pieces: no more reads than without the pause)."""
    reads, late = _sends(5, result_gap=0.05)
    assert reads <= 3
    assert late <= 0.0004


def test_where_a_pause_would_cost_a_fast_sender_throughput_the_answer_is_read_at_once() -> None:
    """No prompt wait at 921600 baud: a send's cycle is the payload's 16 ms on the line,
    and waiting up to the longest margin for its answer would cost a pushing client
    up to a fifth of the line. The engine reads the answer as it comes there."""
    _reads, late = _sends(10, result_gap=0.002, prompt_delay=0.0)
    assert late <= 0.0004
