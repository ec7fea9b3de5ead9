"""The AT engine over a real pty, with the module's side scripted by the test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task
from twisted.internet.serialport import SerialPort
from twisted.logger import formatEvent, globalLogPublisher

from bridged.core.at_codec import CTRL_Z, ESC, ClosedUrc, Event, RecvUrc
from bridged.core.serial_trace import MODULE, parse_trace
from bridged.shell.at_engine import (
    ATEngine,
    CommandError,
    CommandTimeout,
    DataPhase,
    Priority,
    Response,
    SerialLost,
)
from bridged.shell.serial_tap import SerialTraceOptions, tap
from tests.support.scripted_pty import ScriptedPty
from tests.support.waiting import wait_until
from tests.test_at_codec import recv_hex


def sleep(seconds: float) -> defer.Deferred[None]:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def pty() -> Iterator[ScriptedPty]:
    p = ScriptedPty()
    yield p
    p.close()


@pytest.fixture
def engine(pty: ScriptedPty) -> Iterator[ATEngine]:
    e = ATEngine(
        reactor,
        prompt_delay=0.05,
        guard_time=0.005,
        quiet_period=0.1,
        resync_timeout=0.3,
        resync_attempts=3,
    )
    port = SerialPort(e, pty.path, reactor, baudrate=115200)
    yield e
    if e.connected:
        port.loseConnection()


@pytest_twisted.inlineCallbacks
def test_command_returns_its_info_lines(engine: ATEngine, pty: ScriptedPty):
    d = engine.command("AT+CSQ")
    yield pty.wait_for(b"AT+CSQ\r")
    pty.send(b"AT+CSQ\r\r\n+CSQ: 23,99\r\n\r\nOK\r\n")  # echo on: tolerated
    response: Response = yield d
    assert response.lines == ["+CSQ: 23,99"]


@pytest_twisted.inlineCallbacks
def test_error_fails_only_that_command(engine: ATEngine, pty: ScriptedPty):
    first = engine.command("AT+QSSLCLOSE=1,0")
    second = engine.command("AT")
    yield pty.wait_for(b"AT+QSSLCLOSE=1,0\r")
    pty.send(b"\r\n+CME ERROR: 50\r\n")
    with pytest.raises(CommandError, match="CME ERROR: 50"):
        yield first
    yield pty.wait_for(b"AT\r", timeout=2)
    pty.send(b"\r\nOK\r\n")
    yield second


@pytest_twisted.inlineCallbacks
def test_one_command_in_flight_and_priority_order(engine: ATEngine, pty: ScriptedPty):
    a = engine.command("AT+A", priority=Priority.LOW)
    b = engine.command("AT+B", priority=Priority.LOW)
    c = engine.command("AT+C", priority=Priority.HIGH)
    yield pty.wait_for(b"AT+A\r")
    yield sleep(0.05)
    assert pty.take() == b"AT+A\r", "nothing else may be written while A is in flight"
    pty.send(b"\r\nOK\r\n")
    yield a
    yield pty.wait_for(b"AT+C\r")  # HIGH overtakes the queued LOW command
    pty.send(b"\r\nOK\r\n")
    yield c
    yield pty.wait_for(b"AT+B\r")
    pty.send(b"\r\nOK\r\n")
    yield b


@pytest_twisted.inlineCallbacks
def test_urcs_inside_a_response_go_to_listeners(engine: ATEngine, pty: ScriptedPty):
    seen: list[Event] = []
    engine.event_observers.append(seen.append)
    d = engine.command("AT+QSSLCFG=1,0")
    yield pty.wait_for(b"AT+QSSLCFG=1,0\r")
    pty.send(
        b'\r\n+QSSLCFG: 1,0,"seclevel",2\r\n'
        b'\r\n+QSSLURC: "recv",1,0,3,"414243"\r\n'
        b'\r\n+QSSLURC: "closed",1,2\r\n'
        b'\r\n+QSSLCFG: 1,0,"sslversion",4\r\n\r\nOK\r\n'
    )
    response = yield d
    assert response.lines == ['+QSSLCFG: 1,0,"seclevel",2', '+QSSLCFG: 1,0,"sslversion",4']
    assert seen == [RecvUrc(0, b"ABC"), ClosedUrc(2)]


@pytest_twisted.inlineCallbacks
def test_data_phase_waits_for_prompt_and_prompt_delay(engine: ATEngine, pty: ScriptedPty):
    d = engine.command('AT+QSSLCFG=1,0,"cacert"', data=DataPhase(b"PEM", CTRL_Z, redact=True))
    yield pty.wait_for(b'"cacert"\r')
    pty.take()
    pty.send(b"\r\n> ")
    prompt_at = reactor.seconds()
    yield pty.wait_for(b"PEM" + CTRL_Z)
    assert reactor.seconds() - prompt_at >= 0.05, "payload written before the prompt delay"
    pty.send(b'\r\n+QSSLCFG: 1,0,"cacert",3\r\n\r\nOK\r\n')
    response = yield d
    assert response.lines == ['+QSSLCFG: 1,0,"cacert",3']


@pytest_twisted.inlineCallbacks
def test_late_response_after_timeout_is_not_taken_for_the_next_command(
    engine: ATEngine, pty: ScriptedPty
):
    slow = engine.command("AT+SLOW", timeout=0.2)
    following = engine.command("AT+NEXT")
    yield pty.wait_for(b"AT+SLOW\r")
    with pytest.raises(CommandTimeout):
        yield slow
    assert not engine.healthy
    pty.send(b"\r\n+SLOW: late\r\n\r\nERROR\r\n")  # the slow command's answer, late
    yield pty.wait_for(b"AT+QSCLK?\r", timeout=2)  # resync's probe
    pty.take()
    pty.send(b"\r\n+QSCLK: 0\r\n\r\nOK\r\n")
    yield pty.wait_for(b"AT+NEXT\r", timeout=2)
    pty.send(b"\r\n+NEXT: 1\r\n\r\nOK\r\n")
    response = yield following
    assert response.lines == ["+NEXT: 1"]
    assert engine.healthy


@pytest_twisted.inlineCallbacks
def test_timeout_in_data_mode_sends_esc(engine: ATEngine, pty: ScriptedPty):
    d = engine.command("AT+QSSLSEND=1,0,3", timeout=0.3, data=DataPhase(b"abc"))
    yield pty.wait_for(b"AT+QSSLSEND=1,0,3\r")
    pty.send(b"\r\n> ")
    yield pty.wait_for(b"abc")
    with pytest.raises(CommandTimeout):
        yield d
    yield pty.wait_for(ESC, timeout=1)  # leave data mode before resync


@pytest_twisted.inlineCallbacks
def test_unresponsive_module_is_reported(engine: ATEngine, pty: ScriptedPty):
    unresponsive: list[bool] = []
    engine.unresponsive_observers.append(lambda: unresponsive.append(True))
    d = engine.command("AT", timeout=0.1)
    with pytest.raises(CommandTimeout):
        yield d
    deadline = reactor.seconds() + 5
    while not unresponsive and reactor.seconds() < deadline:
        yield sleep(0.05)
    assert unresponsive == [True]
    written = pty.take()
    assert written.count(b"AT\r") == 1  # the command
    assert written.count(b"AT+QSCLK?\r") + written.count(b"AT+CMEE?\r") == 3  # the probes


@pytest_twisted.inlineCallbacks
def test_serial_loss_fails_every_pending_command(engine: ATEngine, pty: ScriptedPty):
    first = engine.command("AT+A")
    second = engine.command("AT+B")
    yield pty.wait_for(b"AT+A\r")
    os_close_master(pty)
    for d in (first, second):
        with pytest.raises(SerialLost):
            yield d
    with pytest.raises(SerialLost):
        yield engine.command("AT")


def os_close_master(pty: ScriptedPty) -> None:
    import os

    pty._reader.stopReading()
    os.close(pty.master)
    pty.master = -1


@pytest_twisted.inlineCallbacks
def test_failing_all_commands_during_resync_does_not_wedge_the_engine(
    engine: ATEngine, pty: ScriptedPty
):
    with pytest.raises(CommandTimeout):
        yield engine.command("AT+SLOW", timeout=0.1)
    engine.fail_all(SerialLost("module restarting"))  # the modem gives up on the module
    later = engine.command("AT+NEXT")
    yield pty.wait_for(b"AT+QSCLK?\r", timeout=2)  # the resync carries on
    pty.send(b"\r\n+QSCLK: 0\r\n\r\nOK\r\n")
    yield pty.wait_for(b"AT+NEXT\r", timeout=2)
    pty.send(b"\r\nOK\r\n")
    yield later
    assert engine.healthy


@pytest_twisted.inlineCallbacks
def test_the_sessions_log_lines_keep_their_namespace(engine: ATEngine, pty: ScriptedPty):
    """The engine hands the pure session a logger in bridged.at: what it logs there is
    what operators always saw, namespace included."""
    seen: list[tuple[str, str]] = []

    def observe(event: dict[str, object]) -> None:
        seen.append((str(event.get("log_namespace")), formatEvent(event)))

    globalLogPublisher.addObserver(observe)
    try:
        d = engine.command("AT+CSQ")
        yield pty.wait_for(b"AT+CSQ\r")
        pty.send(b"\r\n+CSQ: 23,99\r\n\r\nOK\r\n")
        yield d
        pty.send(b"\r\nOK\r\n")  # an answer nobody asked for
        yield defer.ensureDeferred(
            wait_until(
                lambda: ("bridged.at", "answer nobody can own discarded: OK") in seen,
                what="the session's log line in bridged.at",
            )
        )
    finally:
        globalLogPublisher.removeObserver(observe)
    assert ("bridged.at", "AT> AT+CSQ") in seen


# ---------------------------------------------------------------- read pacing (issue 14)


def paced_port(
    engine: ATEngine, pty: ScriptedPty, baud: int, protocol: object = None
) -> SerialPort:
    """The engine on the pty with its line rate known, so recv URCs pace its reads."""
    engine.timing = replace(engine.timing, line_rate=baud / 10)
    return SerialPort(protocol or engine, pty.path, reactor, baudrate=baud)


@pytest_twisted.inlineCallbacks
def test_a_hang_up_while_reading_is_paused_is_noticed(pty: ScriptedPty):
    """At 9600 baud a 650-byte hex URC takes 1.4 s: the engine stops reading the port
    meanwhile; the pty hanging up then is still a lost serial connection, at the latest
    when the pause ends."""
    engine = ATEngine(reactor)
    lost: list[object] = []
    engine.lost_observers.append(lost.append)
    port = paced_port(engine, pty, 9600)
    pty.send(b'\r\n+QSSLURC: "recv",1,0,650,"' + b"00" * 50)
    yield defer.ensureDeferred(
        wait_until(lambda: port not in reactor.getReaders(), what="reading paused")
    )
    os_close_master(pty)
    yield defer.ensureDeferred(wait_until(lambda: lost, timeout=5, what="serial loss noticed"))
    assert not engine.connected
    with pytest.raises(SerialLost):
        yield engine.command("AT")


@pytest_twisted.inlineCallbacks
def test_the_trace_sees_every_byte_in_order_while_reads_are_paced(pty: ScriptedPty, tmp_path: Path):
    engine = ATEngine(reactor)
    urcs: list[bytes] = []
    engine.event_observers.append(lambda e: urcs.append(e.data) if isinstance(e, RecvUrc) else None)
    options = SerialTraceOptions(tmp_path / "serial.trace")
    port = paced_port(engine, pty, 921600, tap(engine, options))
    payloads = [os.urandom(650) for _ in range(6)]
    wire = b"".join(recv_hex(cid, data) for cid, data in enumerate(payloads)) + b"\r\nOK\r\n"
    pieces = [wire[at : at + 128] for at in range(0, len(wire), 128)]
    for piece in pieces:  # as a UART delivers: a few bytes at a time, at the line rate
        pty.send(piece)
        yield sleep(len(piece) / 92160)
    yield defer.ensureDeferred(wait_until(lambda: len(urcs) == 6, what="six recv URCs"))
    assert urcs == payloads
    assert engine.reads < len(pieces) / 2
    port.loseConnection()
    yield defer.ensureDeferred(wait_until(lambda: not engine.connected, what="port closed"))
    with open(options.path, encoding="utf-8") as trace:
        entries = list(parse_trace(trace))
    assert b"".join(e.data for e in entries if e.direction == MODULE) == wire
