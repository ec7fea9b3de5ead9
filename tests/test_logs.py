"""Logging: only bridged's namespaces below warning; the AT trace never shows payloads."""

from __future__ import annotations

import io

import pytest
from twisted.logger import FilteringLogObserver, Logger, LogLevel, LogPublisher

from bridged.core.at_codec import (
    BootSign,
    ClosedUrc,
    CloseResult,
    FinalResult,
    OpenResult,
    RecvUrc,
    SendResult,
)
from bridged.ops.logs import LineObserver, OwnOrFaultPredicate, urc_summary


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
