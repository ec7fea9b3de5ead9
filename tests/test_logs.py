"""Logging: only bridged's namespaces below warning; the AT trace never shows payloads."""

from __future__ import annotations

import io

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    globalLogPublisher,
)

from bridged.core.at_codec import (
    BootSign,
    ClosedUrc,
    CloseResult,
    FinalResult,
    OpenResult,
    RecvUrc,
    SendResult,
)
from bridged.core.log_sink import DEBUG
from bridged.ops.logs import LineObserver, OwnOrFaultPredicate, trace_urcs, urc_summary
from bridged.shell.at_engine import ATEngine
from bridged.shell.qssl import QsslClient


@pytest.mark.parametrize(
    ("namespace", "level", "shown"),
    [
        ("bridged.socket", LogLevel.info, True),
        ("bridged", LogLevel.debug, True),
        ("bridgedx", LogLevel.info, False),
        ("log_legacy", LogLevel.info, False),
        ("twisted.internet.endpoints.OneShotFactory", LogLevel.info, False),
        ("twisted.internet.defer", LogLevel.critical, True),  # Unhandled error in Deferred
        ("py.warnings", LogLevel.warn, True),
    ],
)
def test_only_own_namespaces_below_warning(namespace: str, level: LogLevel, shown: bool) -> None:
    stream = io.StringIO()
    publisher = LogPublisher()
    publisher.addObserver(
        FilteringLogObserver(LineObserver(stream, journald=False), [OwnOrFaultPredicate()])
    )
    Logger(namespace=namespace, observer=publisher).emit(level, "something happened")
    assert ("something happened" in stream.getvalue()) is shown


@pytest.mark.parametrize(
    ("event", "shown"),
    [
        (RecvUrc(2, b"secret"), '+QSSLURC: "recv",2 <6 payload bytes>'),
        (ClosedUrc(1), '+QSSLURC: "closed",1'),
        (OpenResult(0, -3), "+QSSLOPEN: 0,-3"),
        (SendResult(5, 0), "+QSSLSEND: 5,0"),
        (CloseResult(0, 0), "+QSSLCLOSE: 0,0"),
        (BootSign("+CPIN: READY"), "+CPIN: READY"),
        (FinalResult(ok=True), None),  # the engine logs final results itself
    ],
)
def test_urc_trace_summarises(event: object, shown: str | None) -> None:
    assert urc_summary(event) == shown


@pytest.mark.parametrize("debug", [True, False])
def test_the_urc_trace_costs_nothing_when_debug_is_off(debug: bool) -> None:
    """setup_logging turns DEBUG off above level debug: the trace then neither builds
    its summary nor emits an event for the filter to drop (every URC passes here)."""
    events: list[dict[str, object]] = []
    globalLogPublisher.addObserver(events.append)
    DEBUG.on = debug
    try:
        clock = Clock()
        engine = ATEngine(clock)
        engine.makeConnection(StringTransport())
        QsslClient(engine, clock)  # the module's URCs are QSSL's
        trace_urcs(engine)
        engine.dataReceived(b'\r\n+QSSLURC: "closed",1,1\r\n')
    finally:
        DEBUG.on = True
        globalLogPublisher.removeObserver(events.append)
    traced = [e for e in events if e.get("log_format") == "AT< {urc}"]
    assert len(traced) == (1 if debug else 0)
