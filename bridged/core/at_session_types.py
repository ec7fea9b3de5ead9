"""The AT session's vocabulary: commands, their errors and answers, its timing, and the
actions it returns. Re-exported by :mod:`bridged.core.at_session`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum

from bridged.core.at_codec import Event, FinalResult


class Priority(IntEnum):
    """Queue order. Link-health polls must never delay a client's data."""

    HIGH = 0  # module init, close
    NORMAL = 1  # opens, sends
    LOW = 2  # health polls, passthrough


class ATError(Exception):
    """Base of everything a command can fail with."""


class CommandError(ATError):
    """The module answered ``ERROR`` or ``+CME ERROR``.

    ``prompted``: a command with a data phase got its ``>`` before the error. False means
    the module refused the command itself and took none of its data (a refused pipelined
    QSSLSEND may be sent again).
    """

    def __init__(
        self, command: str, final: FinalResult, lines: list[str], prompted: bool = False
    ) -> None:
        super().__init__(f"{command_name(command)}: module answered {final.text}")
        self.command = command
        self.final = final
        self.lines = lines
        self.prompted = prompted


class CommandTimeout(ATError):
    def __init__(self, command: str, timeout: float, phase: str) -> None:
        super().__init__(f"{command_name(command)}: no {phase} within {timeout:g} s")
        self.command = command
        self.phase = phase


class ProtocolViolation(ATError):
    """The module said something its state does not allow (an OK instead of ``>``, say)."""


class SerialLost(ATError):
    """The serial connection went away with this command pending."""


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
    ``counted`` marks a fixed-length text send: the module takes every byte, Esc and any
    probe included, as payload until the length is reached, so after trouble the session
    must stay silent instead of cancelling. ``answer``: the bytes the module sends as soon
    as it has the data (``OK``; a QSSL send's result right behind it): the shell reads
    them in one go once the data has crossed the line (:mod:`bridged.core.read_pacing`).
    """

    payload: bytes
    terminator: bytes = b""
    redact: bool = False
    counted: bool = False
    answer: int = len(b"\r\nOK\r\n")


def info_prefix(line: str) -> str | None:
    """``AT+CSQ`` → ``+CSQ:``: how the information lines of its answer begin."""
    name = command_name(line)
    return name[2:] + ":" if name.upper().startswith("AT+") else None


_NAME = re.compile(r"[^=?]*")


def command_name(line: str) -> str:
    """``AT+QSSLSEND=1,0,5`` → ``AT+QSSLSEND``: a label for metrics and messages."""
    match = _NAME.match(line)
    assert match is not None  # the pattern matches any string, if only its empty start
    return match.group()


@dataclass(eq=False)
class Command:
    """One submitted command; the owner keeps its own handle (a Deferred) keyed by it."""

    line: str
    timeout: float  # for the final result, or for '>'
    data: DataPhase | None = None
    priority: Priority = Priority.NORMAL
    result_timeout: float | None = None  # for the result after the data; default timeout
    # Information lines of the answer start with this (``+CSQ:`` for ``AT+CSQ``); a line
    # that does not is another command's answer (late, or duplicated by the line): the
    # command is aborted rather than completed with it. None: any line is accepted.
    info_prefix: str | None = None
    # Written even while a resync probes an unanswering module (AT+QRST=1 from the
    # recovery ladder): waiting for the probes' answer would never send it.
    urgent: bool = False
    lines: list[str] = field(default_factory=list)
    started: float = 0.0
    encoded: bytes = b""  # the line as written (set when the session takes it)

    @property
    def name(self) -> str:
        return command_name(self.line)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Write:
    """Bytes for the module. ``answer`` > 0: they are a data phase's payload, which the
    module answers with about that many bytes once it has them all (nothing before: it
    is in data mode)."""

    data: bytes
    answer: int = 0


@dataclass(frozen=True, slots=True)
class SetTimer:
    """The one deadline: call :meth:`ATSession.timer_fired` at ``at`` (None: no timer)."""

    at: float | None


@dataclass(frozen=True, slots=True)
class Completed:
    command: Command
    response: Response


@dataclass(frozen=True, slots=True)
class Failed:
    command: Command
    error: ATError


@dataclass(frozen=True, slots=True)
class Notify:
    """A URC, a protocol error, or a line no command asked for."""

    event: Event


@dataclass(frozen=True, slots=True)
class Observed:
    name: str
    result: str  # ok, error, timeout, aborted
    seconds: float


@dataclass(frozen=True, slots=True)
class Unresponsive:
    """Every probe of a resync went unanswered: the owner climbs its recovery ladder."""


@dataclass(frozen=True, slots=True)
class Resynced:
    """A probe was answered: the module listens again."""


Action = Write | SetTimer | Completed | Failed | Notify | Observed | Unresponsive | Resynced


@dataclass(frozen=True, slots=True)
class SessionTiming:
    prompt_delay: float = 0.5
    guard_time: float = 0.0
    resync_attempts: int = 5
    resync_timeout: float = 1.0  # per probe
    quiet_period: float = 0.2
    # Bound on the quiet wait: past it, probe anyway (the probe identifies its answer).
    quiet_max: float = 2.0
    # How long the module may stay in data mode (its "timeout" setting and slack): the
    # silence before probing when a probe could otherwise become payload.
    data_mode_quiet: float = 0.0
    # Serial line rate in bytes/s (baud / 10 for 8N1); 0: unknown. While a command waits
    # for its answer, every byte the module sends that is not the answer (recv URCs of a
    # download flood) held the line for 1/line_rate s, in which the answer could not be
    # sent: the wait is extended by that time, up to busy_max in all per wait.
    line_rate: float = 0.0
    busy_max: float = 30.0


CommandObserver = Callable[[str, str, float], None]
