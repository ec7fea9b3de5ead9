"""Logging set-up: twisted.logger to stderr, journald-friendly.

Under systemd (``JOURNAL_STREAM`` set) journald stamps each line itself, so we print no
timestamp and prefix the syslog priority (``<4>``) instead, which journald understands.

Only bridged's own namespaces (``bridged``, ``bridged.*``) speak below warning level.
Twisted's informational chatter (``<Factory> starting on 9464``, ``Starting factory``,
``Stopping factory``) is not an event an operator can act on, and bridged logs each of
those moments itself in its own words ("metrics on ...", "listening", "client ...
connected"); ``noisy = False`` cannot silence it all (``Port.startListening`` logs
regardless). Warnings and errors from anywhere, unhandled errors in Deferreds among them,
always pass: a fault is never hidden.
"""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    PredicateResult,
    formatEvent,
    globalLogBeginner,
)
from zope.interface import implementer

from bridged.core.at_codec import BootSign, ClosedUrc, CloseResult, OpenResult, RecvUrc, SendResult
from bridged.core.log_sink import DEBUG

if TYPE_CHECKING:
    from bridged.shell.at_engine import ATEngine

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
}
_SYSLOG_PRIORITY = {
    LogLevel.debug: 7,
    LogLevel.info: 6,
    LogLevel.warn: 4,
    LogLevel.error: 3,
    LogLevel.critical: 2,
}


@implementer(ILogObserver)
class LineObserver:
    """One line per event: ``time level [namespace] message``, or journald style."""

    def __init__(self, stream: IO[str], journald: bool) -> None:
        self.stream = stream
        self.journald = journald

    def __call__(self, event: dict[str, Any]) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}"
        level = event.get("log_level", LogLevel.info)
        namespace = event.get("log_namespace", "-")
        if self.journald:
            prefix = f"<{_SYSLOG_PRIORITY.get(level, 6)}>"
            lines = [f"{prefix}[{namespace}] {line}" for line in text.splitlines() or [""]]
        else:
            when = event.get("log_time") or time.time()
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when))
            stamp += f".{int(when * 1000) % 1000:03d}"
            lines = [f"{stamp} {level.name:<5} [{namespace}] {text}"]
        self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()


OWN_NAMESPACE = "bridged"
_MAYBE: PredicateResult = PredicateResult.maybe  # (twisted's constants are untyped)
_NO: PredicateResult = PredicateResult.no


def is_own_namespace(namespace: str) -> bool:
    return namespace == OWN_NAMESPACE or namespace.startswith(OWN_NAMESPACE + ".")


@implementer(ILogFilterPredicate)
class OwnOrFaultPredicate:
    """Lets through bridged's own events, and anyone's warnings and errors."""

    def __call__(self, event: dict[str, Any]) -> PredicateResult:
        if is_own_namespace(str(event.get("log_namespace", ""))):
            return _MAYBE
        level = event.get("log_level", LogLevel.info)
        if level in (LogLevel.debug, LogLevel.info):
            return _NO
        return _MAYBE


def setup_logging(level: str = "info", stream: IO[str] | None = None) -> None:
    """Route twisted.logger (and the std-lib warnings it captures) to stderr."""
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    DEBUG.on = LEVELS[level] is LogLevel.debug  # the hot paths skip debug lines then
    observer = FilteringLogObserver(
        LineObserver(stream or sys.stderr, journald), [OwnOrFaultPredicate(), predicate]
    )
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)


# --------------------------------------------------------------------------- AT trace

_at_log = Logger(namespace="bridged.at")
_RESULT_NAMES = {OpenResult: "+QSSLOPEN", SendResult: "+QSSLSEND", CloseResult: "+QSSLCLOSE"}


def urc_summary(event: object) -> str | None:
    """What the debug trace shows of an unsolicited line: never the payload itself."""
    if isinstance(event, RecvUrc):
        return f'+QSSLURC: "recv",{event.connect_id} <{len(event.data)} payload bytes>'
    if isinstance(event, ClosedUrc):
        return f'+QSSLURC: "closed",{event.connect_id}'
    if isinstance(event, OpenResult | SendResult | CloseResult):
        return f"{_RESULT_NAMES[type(event)]}: {event.connect_id},{event.err}"
    if isinstance(event, BootSign):
        return event.text
    return None


def trace_urcs(engine: ATEngine) -> None:
    """Debug lines for the module's unsolicited lines (the engine logs commands and
    final results itself): ``AT< +QSSLURC: "recv",0 <13 payload bytes>``."""

    def observe(event: object) -> None:
        if not DEBUG.on:
            return  # not even the summary: this runs for every URC
        summary = urc_summary(event)
        if summary is not None:
            _at_log.debug("AT< {urc}", urc=summary)

    engine.event_observers.append(observe)
