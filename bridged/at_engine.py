"""The AT engine: a Twisted protocol that runs one AT command at a time over the serial line.

Modelled on txtorcon's ``TorControlProtocol``: every command is queued and gets a Deferred;
one is on the wire at a time; asynchronous events (URCs) go to listeners whenever they
arrive, even between the lines of a response, and are never taken for a response.

A command may have a data phase (certificate upload, QSSLSEND): the engine waits for the
``>`` prompt, then ``prompt_delay`` seconds (the module enters data mode up to 500 ms after
the prompt and drops what comes earlier), then writes the payload.

A timeout fails only its own command. The engine then resynchronises before the next
command — Esc if the module may be in data mode, a quiet period that swallows a late
response, then ``AT`` until ``OK`` — so a late answer is never taken for the next
command's. If resync fails, listeners hear ``engine_unresponsive`` and the owner escalates.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any

from twisted.internet import defer, error
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.at_codec import (
    CTRL_Z,
    ESC,
    URC_TYPES,
    ATDecoder,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    Prompt,
    ProtocolError,
    encode_command,
)

log = Logger(namespace="bridged.at")


class Priority(IntEnum):
    """Queue order. Link-health polls must never delay a client's data."""

    HIGH = 0  # module init, resync, close
    NORMAL = 1  # opens, sends
    LOW = 2  # health polls, passthrough


class ATError(Exception):
    """Base of everything a command's Deferred can fail with."""


class CommandError(ATError):
    """The module answered ``ERROR`` or ``+CME ERROR``."""

    def __init__(self, command: str, final: FinalResult, lines: list[str]) -> None:
        super().__init__(f"{command_name(command)}: module answered {final.text}")
        self.command = command
        self.final = final
        self.lines = lines


class CommandTimeout(ATError):
    def __init__(self, command: str, timeout: float, phase: str) -> None:
        super().__init__(f"{command_name(command)}: no {phase} within {timeout:g} s")
        self.command = command


class SerialLost(ATError):
    """The serial connection went away with this command pending."""


class EngineStopped(ATError):
    """The engine is shutting down; the command was never sent."""


@dataclass(frozen=True, slots=True)
class Response:
    """A completed command: its information lines and the final result (always OK here)."""

    command: str
    lines: list[str]
    final: FinalResult


@dataclass(frozen=True, slots=True)
class DataPhase:
    """What to write after the ``>`` prompt.

    ``terminator`` is Ctrl+Z for variable-length data (certificates), empty for
    fixed-length sends. ``redact`` keeps the bytes out of debug logs (keys, certificates).
    """

    payload: bytes
    terminator: bytes = b""
    redact: bool = False


class _Phase(Enum):
    IDLE = "idle"
    RESPONSE = "response"  # command written, waiting for the final result
    PROMPT = "prompt"  # waiting for '>'
    PROMPT_DELAY = "prompt-delay"  # got '>', waiting before writing the payload
    RESYNC = "resync"


@dataclass(eq=False)
class _Command:
    line: str
    timeout: float
    data: DataPhase | None
    priority: Priority
    deferred: defer.Deferred[Response]
    lines: list[str] = field(default_factory=list)
    started: float = 0.0


def command_name(line: str) -> str:
    """``AT+QSSLSEND=1,0,5`` → ``AT+QSSLSEND``: a label for metrics and messages."""
    for i, ch in enumerate(line):
        if ch in "=?":
            return line[:i]
    return line


CommandObserver = Callable[[str, str, float], None]  # (name, result, seconds)
EventListener = Callable[[Event], None]


class ATEngine(Protocol):
    """Speaks to the module. Create one per serial connection."""

    def __init__(
        self,
        clock: IReactorTime,
        *,
        prompt_delay: float = 0.5,
        guard_time: float = 0.0,
        resync_attempts: int = 5,
        resync_timeout: float = 1.0,
        quiet_period: float = 0.2,
        data_mode_quiet: float = 0.0,
        max_line: int = 4096,
    ) -> None:
        self.clock = clock
        self.prompt_delay = prompt_delay
        self.guard_time = guard_time
        self.resync_attempts = resync_attempts
        self.resync_timeout = resync_timeout
        self.quiet_period = quiet_period
        # A module left in fixed-length data mode (a hang-up or a lost '>' mid-send) takes
        # every AT we probe with as payload, and each byte restarts its data-mode timer:
        # before giving up, resync stays silent this long so data mode can time out.
        self.data_mode_quiet = data_mode_quiet
        self.decoder = ATDecoder(max_line=max_line)
        self.connected = False
        self.healthy = True  # False from a timeout until a resync succeeds

        self._queues: dict[Priority, deque[_Command]] = {p: deque() for p in Priority}
        self._current: _Command | None = None
        self._phase = _Phase.IDLE
        self._timer: IDelayedCall | None = None
        self._guard: IDelayedCall | None = None
        self._last_input = 0.0
        self._resync_tries = 0
        self._resync_quiet_until = 0.0
        self._resync_silent = False  # in the data-mode quiet of this resync
        self._resync_was_silent = False

        # Listeners: URCs and protocol errors; unsolicited lines; command outcomes.
        self.event_listeners: list[EventListener] = []
        self.command_observers: list[CommandObserver] = []
        self.lost_listeners: list[Callable[[Failure], None]] = []
        self.unresponsive_listeners: list[Callable[[], None]] = []
        self.bytes_in = 0
        self.bytes_out = 0

    # ------------------------------------------------------------------ public API

    def command(
        self,
        line: str,
        *,
        timeout: float = 5.0,
        data: DataPhase | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> defer.Deferred[Response]:
        """Queue one command. Fires with its :class:`Response`, or fails with an ATError."""
        encode_command(line)  # refuse a malformed line now, not when its turn comes
        d: defer.Deferred[Response] = defer.Deferred()
        if not self.connected:
            d.errback(SerialLost(f"{command_name(line)}: serial port is not open"))
            return d
        self._queues[priority].append(_Command(line, timeout, data, priority, d))
        self._kick()
        return d

    @property
    def pending(self) -> int:
        """Commands queued or in flight."""
        return sum(len(q) for q in self._queues.values()) + (self._current is not None)

    @property
    def busy(self) -> bool:
        return self._current is not None or self._phase is not _Phase.IDLE

    def fail_all(self, reason: ATError) -> None:
        """Fail every queued and in-flight command (module rebooted, engine stopping)."""
        pending = [c for q in self._queues.values() for c in q]
        for q in self._queues.values():
            q.clear()
        if self._current is not None:
            pending.insert(0, self._current)
            self._current = None
        if self._phase is not _Phase.RESYNC:  # a resync in progress keeps its timer
            self._cancel_timer()
            self._phase = _Phase.IDLE
        for cmd in pending:
            cmd.deferred.errback(reason)

    def resync(self) -> None:
        """Start a resync now (after a reboot sign, say), ahead of queued commands."""
        if self._phase is _Phase.IDLE and self._current is None:
            self._start_resync()

    # ------------------------------------------------------------------ Protocol

    def connectionMade(self) -> None:
        self.connected = True
        self.decoder.reset()

    def connectionLost(self, reason: Failure = error.ConnectionDone) -> None:  # type: ignore[assignment]
        self.connected = False
        self._cancel_timer()
        if self._guard is not None and self._guard.active():
            self._guard.cancel()
        self._guard = None
        self._phase = _Phase.IDLE
        why = reason.getErrorMessage() if isinstance(reason, Failure) else str(reason)
        # Listeners first: they learn the module is gone before its commands fail, so a
        # failure arriving afterwards is known to be stale.
        for listener in list(self.lost_listeners):
            listener(reason)
        self.fail_all(SerialLost(f"serial connection lost: {why}"))

    def dataReceived(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._last_input = self.clock.seconds()
        for event in self.decoder.feed(data):
            self._dispatch(event)

    # ------------------------------------------------------------------ internals

    def _write(self, data: bytes) -> None:
        if self.transport is None:
            return
        self.bytes_out += len(data)
        self.transport.write(data)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, (*URC_TYPES, ProtocolError)):
            if isinstance(event, ProtocolError):
                log.warn(
                    "serial protocol error ({kind}): {detail}", kind=event.kind, detail=event.detail
                )
            self._notify(event)
            return
        cmd = self._current
        if self._phase is _Phase.RESYNC:
            self._resync_event(event)
            return
        if isinstance(event, Echo):
            return  # echo is on until ATE0; it carries nothing
        if cmd is None:
            # Nothing asked: a late answer to a timed-out command, or a line we don't know.
            log.info("unsolicited line from module: {line}", line=_event_text(event))
            self._notify(event)
            return
        if isinstance(event, Prompt):
            if self._phase is _Phase.PROMPT:
                self._phase = _Phase.PROMPT_DELAY
                self._set_timer(self.prompt_delay, self._write_payload)
            else:
                log.warn("unexpected '>' during {cmd}", cmd=command_name(cmd.line))
            return
        if isinstance(event, InfoLine):
            cmd.lines.append(event.text)
            return
        assert isinstance(event, FinalResult)
        if self._phase is _Phase.PROMPT_DELAY:
            # ERROR while we wait to write: the module left data mode by itself.
            self._cancel_timer()
        self._finish(cmd, event)

    def _notify(self, event: Event) -> None:
        for listener in list(self.event_listeners):
            try:
                listener(event)
            except Exception:
                log.failure("event listener failed on {event!r}", event=event)

    def _kick(self) -> None:
        if self._current is not None or self._phase is not _Phase.IDLE or not self.connected:
            return
        if self._guard is not None and self._guard.active():
            return
        for priority in Priority:
            if self._queues[priority]:
                self._start(self._queues[priority].popleft())
                return

    def _start(self, cmd: _Command) -> None:
        self._current = cmd
        cmd.started = time.monotonic()
        log.debug("AT> {line}", line=cmd.line)
        self._write(encode_command(cmd.line))
        if cmd.data is None:
            self._phase = _Phase.RESPONSE
            self._set_timer(cmd.timeout, self._timed_out, "response")
        else:
            self._phase = _Phase.PROMPT
            self._set_timer(cmd.timeout, self._timed_out, "'>' prompt")

    def _write_payload(self) -> None:
        cmd = self._current
        assert cmd is not None and cmd.data is not None
        data = cmd.data
        if data.redact:
            log.debug("AT> <{n} bytes redacted>", n=len(data.payload))
        else:
            log.debug("AT> <{n} payload bytes>", n=len(data.payload))
        self._write(data.payload + data.terminator)
        self._phase = _Phase.RESPONSE
        self._set_timer(cmd.timeout, self._timed_out, "response after data")

    def _finish(self, cmd: _Command, final: FinalResult) -> None:
        self._cancel_timer()
        self._current = None
        self._phase = _Phase.IDLE
        self.healthy = True  # any final result: the module answers again
        elapsed = time.monotonic() - cmd.started
        name = command_name(cmd.line)
        self._observe(name, "ok" if final.ok else "error", elapsed)
        log.debug(
            "AT< {final} ({name}, {ms:.0f} ms)", final=final.text, name=name, ms=elapsed * 1000
        )
        self._schedule_next()
        if final.ok:
            cmd.deferred.callback(Response(cmd.line, cmd.lines, final))
        else:
            cmd.deferred.errback(CommandError(cmd.line, final, cmd.lines))

    def _schedule_next(self) -> None:
        # A short gap between commands: some firmware drops a line sent right after OK.
        if self.guard_time > 0:
            self._guard = self.clock.callLater(self.guard_time, self._kick)
        else:
            self._guard = None
            self.clock.callLater(0, self._kick)

    def _timed_out(self, phase: str) -> None:
        self._timer = None
        cmd = self._current
        assert cmd is not None
        in_data_mode = self._phase in (_Phase.PROMPT, _Phase.PROMPT_DELAY) or (
            cmd.data is not None and phase == "response after data"
        )
        self._current = None
        name = command_name(cmd.line)
        self._observe(name, "timeout", time.monotonic() - cmd.started)
        log.warn(
            "{name} timed out waiting for {phase} after {t:g} s; resynchronising",
            name=name,
            phase=phase,
            t=cmd.timeout,
        )
        self.healthy = False
        if in_data_mode:
            self._write(ESC)  # leave data mode without sending what we wrote
        self._start_resync()
        cmd.deferred.errback(CommandTimeout(cmd.line, cmd.timeout, phase))

    def _observe(self, name: str, result: str, seconds: float) -> None:
        for observer in list(self.command_observers):
            observer(name, result, seconds)

    # -- resync: quiet period, then AT until OK

    def _start_resync(self) -> None:
        self._phase = _Phase.RESYNC
        self._resync_tries = 0
        self._resync_silent = self._resync_was_silent = False
        self._resync_quiet_until = self.clock.seconds() + self.quiet_period
        self._set_timer(self.quiet_period, self._resync_quiet_check)

    def _resync_quiet_check(self) -> None:
        # Wait until the line has been quiet for a whole quiet period: a late answer to the
        # timed-out command is swallowed here instead of being taken for the next one's.
        # A millisecond's slack: a float just short of the period would re-arm the timer
        # for a delay that rounds to nothing, forever on a virtual clock.
        quiet_left = self.quiet_period - (self.clock.seconds() - self._last_input)
        if quiet_left > 0.001 and self._resync_tries == 0:
            self._set_timer(quiet_left, self._resync_quiet_check)
            return
        self._resync_send()

    def _resync_send(self) -> None:
        self._resync_silent = False
        self._resync_tries += 1
        if self._resync_tries > self.resync_attempts and self._go_silent():
            return
        if self._resync_tries > self.resync_attempts:
            self._timer = None
            self._phase = _Phase.IDLE
            log.error("module does not answer AT after {n} tries", n=self.resync_attempts)
            for listener in list(self.unresponsive_listeners):
                listener()
            self._kick()
            return
        self._write(encode_command("AT"))
        self._set_timer(self.resync_timeout, self._resync_send)

    def _go_silent(self) -> bool:
        """No answer to AT: maybe data mode is eating our probes. Fall silent once."""
        if self.data_mode_quiet <= 0 or self._resync_was_silent:
            return False
        self._resync_was_silent = self._resync_silent = True
        self._resync_tries = 0
        log.warn(
            "module does not answer AT; it may be waiting for data: silent for up to {t:g} s",
            t=self.data_mode_quiet,
        )
        self._set_timer(self.data_mode_quiet, self._resync_send)
        return True

    def _resync_event(self, event: Event) -> None:
        if self._resync_silent and isinstance(event, FinalResult):
            # Data mode ended (ERROR, typically): the module listens again.
            self._resync_send()
            return
        if isinstance(event, FinalResult) and event.ok and self._resync_tries > 0:
            self._cancel_timer()
            self._phase = _Phase.IDLE
            if not self.healthy:
                log.info("module answers AT again")
            self.healthy = True
            self._schedule_next()
        # Anything else during resync is the tail of what timed out: dropped on purpose.

    def _set_timer(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(delay, fn, *args)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _event_text(event: Event) -> str:
    if isinstance(event, FinalResult):
        return event.text
    if isinstance(event, InfoLine | Echo):
        return event.text
    return repr(event)


__all__ = [
    "CTRL_Z",
    "ATEngine",
    "ATError",
    "CommandError",
    "CommandTimeout",
    "DataPhase",
    "EngineStopped",
    "Priority",
    "Response",
    "SerialLost",
    "command_name",
]
