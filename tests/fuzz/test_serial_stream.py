"""Fuzzing the serial input: whatever the module (or the line) sends, bridged's AT engine and
QSSL layer raise nothing, hold bounded memory, and still run the next command.

The streams mix the module's real vocabulary (final results, prompts, echo, every URC, recv
data in both formats, boot signs) with its corruptions (wrong lengths, unknown sockets,
non-hex digits, truncated lines, over-long lines, raw noise), cut at random points, while
commands of every kind are in flight and time passes. A fixed budget (``max_examples``)
keeps this in the default suite; ``FUZZ_EXAMPLES=5000 python -m pytest tests/fuzz`` runs
it longer.
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import defer

from bridged.core.at_codec import DataFormat
from bridged.shell.at_engine import Priority
from tests.fuzz.harness import MAX_LINE, TEXT_SOCKETS, EngineHarness

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: The decoder holds at most one line, one recv header or one recv payload, plus what
#: the last read delivered.
HELD = max(MAX_LINE, 2 * 650 + 2, 1300 + 1) + 64

PRINTABLE = bytes(0x20 + b % 0x5F for b in range(256))  # bytes.translate: any byte → ASCII
cids = st.integers(0, 9)  # 6..9 are not sockets
errs = st.sampled_from([0, -1, -2, -3, -4, -5, -6, -7, -9, 1, -99])


def _frame(line: bytes) -> bytes:
    return b"\r\n" + line + b"\r\n"


@st.composite
def recv_urc(draw: st.DrawFn) -> bytes:
    """A recv URC, right or wrong in every field."""
    cid = draw(cids)
    context = draw(st.sampled_from([1, 1, 1, 2]))
    data = draw(st.binary(max_size=700))
    declared = draw(st.sampled_from([len(data), len(data), len(data) + 1, max(len(data) - 1, 0)]))
    text = cid in TEXT_SOCKETS
    body = data if text else data.hex().upper().encode()
    if not text and draw(st.booleans()):
        body = body[:-1] + draw(st.sampled_from([b"G", b"z", b"\x00", b'"']))
    quoted = draw(st.booleans())
    if quoted:
        body = b'"' + body + (b'"' if draw(st.integers(0, 9)) else b"")
    head = b'+QSSLURC: "recv",%d,%d,%d,' % (context, cid, declared)
    tail = draw(st.sampled_from([b"\r\n", b"\r\n", b"", b"\n"]))
    return b"\r\n" + head + body + tail


@st.composite
def noise(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return _frame(b"x" * draw(st.integers(MAX_LINE - 5, MAX_LINE + 200)))
    if kind == 2:  # a header cut short, then whatever follows
        return b'\r\n+QSSLURC: "recv",1,' + draw(st.binary(max_size=30))
    return draw(st.binary(max_size=40)).replace(b"\r", b"") + b"\r\n"


fragments = st.one_of(
    st.sampled_from(
        [
            _frame(b"OK"),
            _frame(b"ERROR"),
            _frame(b"+CME ERROR: 50"),
            b"\r\n> ",
            b"\r\n>",
            _frame(b"RDY"),
            _frame(b"+CPIN: READY"),
            _frame(b"AT+QSSLSEND=1,0,5"),
            _frame(b'+QSSLCFG: 1,0,"cacert",1216'),
            _frame(b"+CSQ: 20,99"),
        ]
    ),
    st.builds(lambda c: _frame(b'+QSSLURC: "closed",1,%d' % c), cids),
    st.builds(
        lambda k, c, e: _frame(b"+QSSL%s: 1,%d,%d" % (k, c, e)),
        st.sampled_from([b"OPEN", b"SEND", b"CLOSE"]),
        cids,
        errs,
    ),
    recv_urc(),
    noise(),
)


@st.composite
def programs(draw: st.DrawFn) -> list[tuple[str, object]]:
    """Steps: feed module bytes, start an operation, or let time pass."""
    steps: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["feed", "feed", "feed", "op", "time"]))
        if kind == "feed":
            steps.append(("feed", draw(fragments)))
        elif kind == "op":
            steps.append(("op", draw(st.sampled_from(["at", "open", "send", "close", "low"]))))
        else:
            steps.append(("time", draw(st.sampled_from([0.0, 0.01, 0.3, 1.5, 4.0]))))
    return steps


def start(h: EngineHarness, op: str, rng: random.Random) -> None:
    cid = rng.randrange(6)
    fmt = DataFormat.TEXT if cid in TEXT_SOCKETS else DataFormat.HEX
    if op == "at":
        h.track(h.engine.command("AT+CSQ", timeout=1.0))
    elif op == "low":
        h.track(h.engine.command("AT+CEREG?", timeout=1.0, priority=Priority.LOW))
    elif op == "open":
        h.track(defer.Deferred.fromCoroutine(h.qssl.open(cid, "example.com", 443)))
    elif op == "close":
        h.track(defer.Deferred.fromCoroutine(h.qssl.close(cid)))
    else:
        accepted, confirmed = h.qssl.send(cid, rng.randbytes(rng.randint(1, 40)), fmt)
        h.track(accepted)
        h.track(confirmed)


@FUZZ
@given(programs(), st.lists(st.integers(1, 64), min_size=1, max_size=8), st.randoms())
def test_any_module_output_leaves_the_engine_working(
    program: list[tuple[str, object]], cuts: list[int], rng: random.Random
) -> None:
    h = EngineHarness()
    try:
        issued = 0
        for kind, arg in program:
            if kind == "feed":
                data = arg
                assert isinstance(data, bytes)
                i = 0
                while i < len(data):  # the serial port delivers any chunking
                    size = cuts[i % len(cuts)]
                    h.feed(data[i : i + size])
                    i += size
                    assert h.engine.decoder.buffered <= HELD + size
            elif kind == "op":
                assert isinstance(arg, str)
                start(h, arg, rng)
                issued += 1
            else:
                assert isinstance(arg, float)
                h.clock.advance(arg)
            assert h.engine.pending <= issued + 1
            waiting = sum(len(w) for w in h.qssl._waiters.values())
            assert waiting <= issued
        # The fuzzed bytes were the module's answers to what was issued: the cooperative
        # module answers only what comes next (answering again would be a late answer,
        # which fails the command it lands on, by design).
        h._answered = len(h.transport.writes)
        assert h.usable(), "a command after the fuzzed input did not complete"
        assert h.unexpected_failures() == []
        assert h.failures == [], h.failures[0]
        # Everything started has ended one way or another: nothing waits forever.
        h.settle(lambda: len(h.outcomes) == h.tracked, seconds=300)
        assert h.engine.pending == 0
    finally:
        h.close()


def test_endless_garbage_keeps_memory_bounded_and_the_engine_usable() -> None:
    """Two megabytes of noise with a command in flight now and then."""
    rng = random.Random(20240611)
    h = EngineHarness()
    try:
        fed = 0
        recv_head = b'\r\n+QSSLURC: "recv",1,0,650,"'
        most = 0
        while fed < 2_000_000:
            piece = rng.choice(
                [
                    rng.randbytes(rng.randint(1, 4096)),
                    rng.randbytes(rng.randint(1, 3000)).translate(PRINTABLE),
                    recv_head + rng.randbytes(rng.randint(0, 1400)),
                    b"\x00" * rng.randint(1, 2000),
                ]
            )
            h.feed(piece)
            fed += len(piece)
            most = max(most, h.engine.decoder.buffered)
            assert h.engine.decoder.buffered <= HELD + len(piece)
            if rng.random() < 0.01:
                h.track(h.engine.command("AT+CSQ", timeout=1.0))
            h.clock.advance(rng.choice([0.0, 0.0, 0.1, 1.1]))
            assert h.engine.pending <= 10  # a command every ~100 pieces; each ends in 1 s
        h.feed(b"\r\n")
        assert most > 0
        h._answered = len(h.transport.writes)  # the noise answered none of them
        assert h.usable()
        h.settle(lambda: len(h.outcomes) == h.tracked)
        assert h.engine.pending == 0
        assert h.unexpected_failures() == []
        assert h.failures == []
    finally:
        h.close()
