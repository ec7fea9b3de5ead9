"""Logging: only bridged's namespaces below warning; the AT trace never shows payloads."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogPublisher,
    formatEvent,
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
from bridged.ops import logs
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


@pytest.mark.parametrize("debug_shown", [True, False])
def test_the_urc_trace_logs_only_when_debug_lines_are_shown(
    monkeypatch: pytest.MonkeyPatch, debug_shown: bool
) -> None:
    """At level info the trace does not even build its line (a filtered-out debug call
    costs about 10 µs, once per recv URC of a download); at debug it logs as before."""
    monkeypatch.setattr(logs, "_debug_shown", debug_shown)
    engine = SimpleNamespace(event_observers=[])
    logs.trace_urcs(engine)  # type: ignore[arg-type]
    seen: list[str] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_namespace") == "bridged.at":
            seen.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        for observer in engine.event_observers:
            observer(RecvUrc(2, b"secret"))
    finally:
        globalLogPublisher.removeObserver(observe)
    assert seen == (['AT< +QSSLURC: "recv",2 <6 payload bytes>'] if debug_shown else [])
