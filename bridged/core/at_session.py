"""The AT session as a pure state machine: one command in flight, its phases, and resync.

No reactor, no clock reads, no I/O. The owner feeds it

- :meth:`ATSession.feed` — bytes from the serial line with the time they arrived,
- :meth:`ATSession.submit` — a command to run,
- :meth:`ATSession.timer_fired` — the time, when the deadline it asked for has come,
- :meth:`ATSession.connection_made` / :meth:`connection_lost` / :meth:`fail_all`,

and carries out the actions each returns, in order: :class:`Write` bytes, :class:`SetTimer`
(one deadline, absolute; ``None`` cancels it), then the notifications — :class:`Completed`,
:class:`Failed`, :class:`Notify` (URCs, protocol errors, lines nobody asked for),
:class:`Observed` (command outcome for metrics) and :class:`Unresponsive`. Effects come
before notifications, so a notification's handler that calls back into the session can
never be overtaken by a stale write of the same batch.

What the module says is matched against tables (after Zephyr's ``modem_chat``), not an
if-chain: :data:`PHASE_RULES` says, for each phase of the command in flight, what each kind
of line does — complete, fail, collect, ignore, or abort (cancel, fail, resync).

Rules this machine keeps (issue 11):

- only ``>``, ``ERROR`` or ``+CME ERROR`` end the wait for a prompt; anything else there
  aborts the command;
- resync cannot be fooled by a late or stray answer: each probe is a query whose
  information line identifies it (probes rotate between two queries, so the late answer of
  the previous probe is not taken for the current one's), and a final result nobody can
  own is logged and discarded;
- the quiet period before probing is measured on lines that are not URCs, and is bounded,
  so resync ends under continuous URC traffic while URCs keep reaching their sockets;
- after a data-phase timeout of a fixed-length text send, or any ``>`` seen when no data
  is wanted, it stays silent for the module's data-mode timeout before the first probe, so
  no probe byte can become payload;
- a send's wait for its result after the data follows its own ``result_timeout``;
- a wait does not run down while the module's other output (recv URCs) holds the line:
  it is extended by the line time of those bytes (``line_rate``), up to ``busy_max``;
- :meth:`fail_all` leaves the session resynchronising whenever a command may be on the wire.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, IntEnum

from twisted.logger import Logger

from bridged.core.at_codec import (
    ESC,
    URC_TYPES,
    ATDecoder,
    BootSign,
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

    HIGH = 0  # module init, close
    NORMAL = 1  # opens, sends
    LOW = 2  # health polls, passthrough


class ATError(Exception):
    """Base of everything a command can fail with."""


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
        self.phase = phase


class ProtocolViolation(ATError):
    """The module said something its state does not allow (an OK instead of ``>``, say)."""


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
    ``counted`` marks a fixed-length text send: the module takes every byte, Esc and any
    probe included, as payload until the length is reached, so after trouble the session
    must stay silent instead of cancelling.
    """

    payload: bytes
    terminator: bytes = b""
    redact: bool = False
    counted: bool = False


def info_prefix(line: str) -> str | None:
    """``AT+CSQ`` → ``+CSQ:``: how the information lines of its answer begin."""
    name = command_name(line)
    return name[2:] + ":" if name.upper().startswith("AT+") else None


def command_name(line: str) -> str:
    """``AT+QSSLSEND=1,0,5`` → ``AT+QSSLSEND``: a label for metrics and messages."""
    for i, ch in enumerate(line):
        if ch in "=?":
            return line[:i]
    return line


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

    @property
    def name(self) -> str:
        return command_name(self.line)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Write:
    data: bytes


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

# --------------------------------------------------------------------------- tables


class Phase(Enum):
    DOWN = "down"  # no serial connection
    IDLE = "idle"
    GAP = "gap"  # guard time between two commands
    RESPONSE = "response"  # command written, waiting for the final result
    PROMPT = "prompt"  # waiting for '>'
    PROMPT_DELAY = "prompt-delay"  # got '>', waiting before writing the payload
    AFTER_DATA = "after-data"  # payload written, waiting for the final result
    QUIET = "resync-quiet"  # resync: waiting for a quiet line
    SILENT = "resync-silent"  # resync: module may be in data mode; say nothing
    PROBING = "resync-probing"  # resync: probe written, waiting for its answer


RESYNC_PHASES = frozenset({Phase.QUIET, Phase.SILENT, Phase.PROBING})
COMMAND_PHASES = frozenset({Phase.RESPONSE, Phase.PROMPT, Phase.PROMPT_DELAY, Phase.AFTER_DATA})
# Waits for the module (not our own prompt delay): a busy line extends them.
WAIT_PHASES = frozenset({Phase.RESPONSE, Phase.PROMPT, Phase.AFTER_DATA})


class Kind(Enum):
    """What kind of line the module said, as far as the session cares."""

    OK = "ok"
    ERROR = "error"
    PROMPT = "prompt"
    INFO = "info"
    ECHO = "echo"


class Rule(Enum):
    COMPLETE = "complete"  # the command succeeded
    FAIL = "fail"  # the command failed with the module's error
    COLLECT = "collect"  # an information line of the response
    IGNORE = "ignore"
    ABORT = "abort"  # protocol error: cancel, fail the command, resync


# The response table: for each phase of a command in flight, what each kind of line does.
# A kind missing from a phase's row is a protocol error there (ABORT).
PHASE_RULES: dict[Phase, dict[Kind, Rule]] = {
    Phase.RESPONSE: {
        Kind.OK: Rule.COMPLETE,
        Kind.ERROR: Rule.FAIL,
        Kind.INFO: Rule.COLLECT,
        Kind.ECHO: Rule.IGNORE,
    },
    # The note allows only '>' or an error here.
    Phase.PROMPT: {Kind.PROMPT: Rule.COMPLETE, Kind.ERROR: Rule.FAIL, Kind.ECHO: Rule.IGNORE},
    # Between '>' and our payload: an error means the module left data mode by itself.
    Phase.PROMPT_DELAY: {Kind.ERROR: Rule.FAIL},
    Phase.AFTER_DATA: {
        Kind.OK: Rule.COMPLETE,
        Kind.ERROR: Rule.FAIL,
        Kind.INFO: Rule.COLLECT,
    },
}

# The unsolicited table: event types that are never a command's response, wherever they
# fall. They are passed on at once.
UNSOLICITED_TYPES: tuple[type, ...] = (*URC_TYPES, ProtocolError)


@dataclass(frozen=True, slots=True)
class Probe:
    """A resync probe: a query whose information line says the answer is the probe's."""

    command: str
    answer: re.Pattern[str]


# Two queries, used in turn: the late answer of the previous probe does not match the
# current one. Passthrough refuses both, so no other command's late answer can match.
PROBES: tuple[Probe, ...] = (
    Probe("AT+CMEE?", re.compile(r"\+CMEE: ?\d+")),
    Probe("AT+QSCLK?", re.compile(r"\+QSCLK: ?\d+")),
)


def _kind(event: Event) -> Kind:
    if isinstance(event, FinalResult):
        return Kind.OK if event.ok else Kind.ERROR
    if isinstance(event, Prompt):
        return Kind.PROMPT
    if isinstance(event, Echo):
        return Kind.ECHO
    return Kind.INFO


# --------------------------------------------------------------------------- session


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


class ATSession:
    """The one AT conversation with the module, as a pure state machine."""

    def __init__(self, timing: SessionTiming | None = None, max_line: int = 4096) -> None:
        self.timing = timing or SessionTiming()
        self.decoder = ATDecoder(max_line=max_line)
        self.phase = Phase.DOWN
        self.current: Command | None = None
        self.deadline: float | None = None
        self._queues: dict[Priority, deque[Command]] = {p: deque() for p in Priority}
        self._effects: list[Action] = []
        self._notes: list[Action] = []
        self._probe_index = 0
        self._probe_seen_answer = False
        self._resync_tries = 0
        self._resync_was_silent = False
        self._quiet_bound = 0.0
        self.resyncs = 0
        self.discarded_finals = 0
        self.unresponsive = False  # every probe of the last round unanswered
        self._silent_until = 0.0  # the module may be in data mode until then
        self.answering = True  # False from a timeout until the module answers again
        self._wait_cap = 0.0  # the latest the current wait may be extended to (busy line)

    # ------------------------------------------------------------------ queries

    @property
    def connected(self) -> bool:
        return self.phase is not Phase.DOWN

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values()) + (self.current is not None)

    @property
    def resyncing(self) -> bool:
        return self.phase in RESYNC_PHASES

    @property
    def busy(self) -> bool:
        return self.current is not None or self.phase not in (Phase.IDLE, Phase.DOWN)

    # ------------------------------------------------------------------ inputs

    def submit(self, command: Command, now: float) -> list[Action]:
        """Queue a command (the owner checked it is connected and the line is valid)."""
        encode_command(command.line)
        if command.urgent and self.phase in (Phase.QUIET, Phase.PROBING):
            self._start(command, now)
            return self._flush()
        self._queues[command.priority].append(command)
        self._kick(now)
        return self._flush()

    def connection_made(self, now: float) -> list[Action]:
        """A (new) serial connection: forget partial input. The owner's first command is
        its probe (initialisation retries ``AT``), so no resync is needed here."""
        self.decoder.reset()
        self.unresponsive = False
        if now < self._silent_until:
            # A new port does not take the module out of data mode: the silence that
            # began on the old one runs its course first.
            self.phase = Phase.SILENT
            self._resync_was_silent = True
            self._set_deadline(self._silent_until)
            return self._flush()
        self.phase = Phase.IDLE
        self._kick(now)
        return self._flush()

    def connection_lost(self, reason: ATError) -> list[Action]:
        """The port is gone: everything pending fails; nothing more is written."""
        self.phase = Phase.DOWN
        self._set_deadline(None)
        self._fail_everything(reason)
        return self._flush()

    def fail_all(self, reason: ATError, now: float) -> list[Action]:
        """Fail every queued and in-flight command (module rebooted, engine stopping).

        A command that may still be answered leaves the session resynchronising, so its
        answer cannot land on the next command.
        """
        on_wire = self.phase in COMMAND_PHASES
        current = self.current
        data = current.data if current is not None else None
        in_data = self.phase in (Phase.PROMPT, Phase.PROMPT_DELAY, Phase.AFTER_DATA)
        # A '>' still awaited may come until the command's own timeout: the silence
        # runs from then, as it would have after that timeout.
        prompt_due = (
            current.started + current.timeout
            if current is not None and self.phase is Phase.PROMPT
            else now
        )
        self._fail_everything(reason)
        if self.phase is Phase.DOWN:
            return self._flush()
        if on_wire:
            silent = in_data and data is not None and data.counted
            if in_data and not silent:
                self._write(ESC)
            self._start_resync(
                now, silent=silent, why="commands failed", silent_from=max(now, prompt_due)
            )
        elif not self.resyncing:
            self._start_resync(now, silent=False, why="commands failed")
        return self._flush()

    def resync(self, now: float) -> list[Action]:
        """Resync now (after a boot sign, say), unless a command is on the wire."""
        if self.phase in (Phase.IDLE, Phase.GAP):
            self._start_resync(now, silent=False, why="requested")
        return self._flush()

    def feed(self, data: bytes, now: float) -> list[Action]:
        waiting = self.current if self.phase in WAIT_PHASES else None
        phase = self.phase
        for event in self.decoder.feed(data):
            self._event(event, now)
        if (
            waiting is not None
            and self.current is waiting
            and self.phase is phase
            and self.deadline is not None
            and self.timing.line_rate > 0
        ):
            # Still waiting: these bytes were not its answer, and the module could not
            # send the answer while they held the line.
            busy = len(data) / self.timing.line_rate
            extended = min(self.deadline + busy, self._wait_cap)
            if extended > self.deadline:
                self._set_deadline(extended)
        return self._flush()

    def timer_fired(self, now: float) -> list[Action]:
        if self.deadline is None or now < self.deadline - 1e-9:
            return []  # stale: the deadline moved since the timer was armed
        self.deadline = None
        phase = self.phase
        if phase is Phase.GAP:
            self.phase = Phase.IDLE
            self._kick(now)
        elif phase in COMMAND_PHASES:
            self._command_deadline(now)
        elif phase is Phase.QUIET:
            self._probe(now)
        elif phase is Phase.SILENT:
            self._resync_tries = 0
            self._probe(now)
        elif phase is Phase.PROBING:
            self._probe_timed_out(now)
        return self._flush()

    # ------------------------------------------------------------------ events

    def _event(self, event: Event, now: float) -> None:
        if isinstance(event, UNSOLICITED_TYPES):
            if isinstance(event, ProtocolError):
                log.warn(
                    "serial protocol error ({kind}): {detail}", kind=event.kind, detail=event.detail
                )
            # A boot sign too: the owner decides (a banner read late as the port opens is
            # no reboot); it calls fail_all, which leaves the session resynchronising.
            self._notify(event)
            if isinstance(event, BootSign):
                self._booted(now)
            return
        kind = _kind(event)
        phase = self.phase
        if phase in RESYNC_PHASES:
            self._resync_event(event, kind, now)
            return
        if phase in COMMAND_PHASES:
            self._command_event(event, kind, now)
            return
        # Idle (or in the guard gap): nobody asked.
        if kind is Kind.PROMPT:
            log.warn("'>' with no data to send: the module waits for data; staying silent")
            self._start_resync(now, silent=True, why="stray '>'")
        elif kind in (Kind.OK, Kind.ERROR):
            self._discard_final(event)
        elif kind is Kind.INFO:
            log.info("unsolicited line from module: {line}", line=_event_text(event))
            self._notify(event)

    def _command_event(self, event: Event, kind: Kind, now: float) -> None:
        cmd = self.current
        assert cmd is not None
        rule = PHASE_RULES[self.phase].get(kind, Rule.ABORT)
        if rule is Rule.IGNORE:
            return
        if rule is Rule.COLLECT:
            assert isinstance(event, InfoLine)
            if cmd.info_prefix is not None and not event.text.startswith(cmd.info_prefix):
                if self.phase is Phase.AFTER_DATA:
                    # The payload is out: the module owes this command its result, and
                    # failing it would call data sent that was not. Noise is dropped.
                    log.info(
                        "line ignored in {name}'s answer: {line!r}", name=cmd.name, line=event.text
                    )
                    return
                self._abort(cmd, now, f"foreign line {event.text!r} in its answer")
                return
            cmd.lines.append(event.text)
            return
        if rule is Rule.ABORT:
            why = f"{_event_text(event)!r} while waiting for {self._waiting()}"
            self._abort(cmd, now, why, prompt_seen=kind is Kind.PROMPT)
            return
        if self.phase is Phase.PROMPT and rule is Rule.COMPLETE:
            self.phase = Phase.PROMPT_DELAY
            self._set_deadline(now + self.timing.prompt_delay)
            return
        assert isinstance(event, FinalResult)
        self._finish(cmd, event, now)

    def _waiting(self) -> str:
        return {
            Phase.RESPONSE: "the final result",
            Phase.PROMPT: "'>'",
            Phase.PROMPT_DELAY: "the data phase",
            Phase.AFTER_DATA: "the result after data",
        }.get(self.phase, self.phase.value)

    def _booted(self, now: float) -> None:
        """A module that boots is in command mode: a silence for its data mode is over."""
        self._silent_until = 0.0
        if self.phase is Phase.SILENT:
            self._start_resync(now, silent=False, why="module booted")

    # ------------------------------------------------------------------ commands

    def _kick(self, now: float) -> None:
        if self.phase is not Phase.IDLE or self.current is not None:
            return
        for priority in Priority:
            if self._queues[priority]:
                self._start(self._queues[priority].popleft(), now)
                return

    def _start(self, cmd: Command, now: float) -> None:
        self.current = cmd
        cmd.started = now
        cmd.lines.clear()
        log.debug("AT> {line}", line=cmd.line)
        self._write(encode_command(cmd.line))
        self.phase = Phase.RESPONSE if cmd.data is None else Phase.PROMPT
        self._set_deadline(now + cmd.timeout)
        self._wait_cap = now + cmd.timeout + self.timing.busy_max

    def _write_payload(self, now: float) -> None:
        cmd = self.current
        assert cmd is not None and cmd.data is not None
        data = cmd.data
        if data.redact:
            log.debug("AT> <{n} bytes redacted>", n=len(data.payload))
        else:
            log.debug("AT> <{n} payload bytes>", n=len(data.payload))
        self._write(data.payload + data.terminator)
        self.phase = Phase.AFTER_DATA
        wait = cmd.result_timeout if cmd.result_timeout is not None else cmd.timeout
        self._set_deadline(now + wait)
        self._wait_cap = now + wait + self.timing.busy_max

    def _command_deadline(self, now: float) -> None:
        if self.phase is Phase.PROMPT_DELAY:
            self._write_payload(now)
            return
        cmd = self.current
        assert cmd is not None
        phase = {
            Phase.RESPONSE: "response",
            Phase.PROMPT: "'>' prompt",
            Phase.AFTER_DATA: "response after data",
        }[self.phase]
        wait = cmd.result_timeout if self.phase is Phase.AFTER_DATA else cmd.timeout
        wait = cmd.timeout if wait is None else wait
        log.warn(
            "{name} timed out waiting for {phase} after {t:g} s; resynchronising",
            name=cmd.name,
            phase=phase,
            t=wait,
        )
        in_data = self.phase in (Phase.PROMPT, Phase.AFTER_DATA)
        self.current = None
        self.answering = False
        self._observe(cmd, "timeout", now)
        self._leave_data_mode(cmd, in_data, now, why=f"{cmd.name} timed out")
        self._fail(cmd, CommandTimeout(cmd.line, wait, phase))

    def _abort(self, cmd: Command, now: float, why: str, prompt_seen: bool = False) -> None:
        log.warn("{name}: protocol error: {why}; cancelling", name=cmd.name, why=why)
        in_data = cmd.data is not None
        self.current = None
        self._observe(cmd, "aborted", now)
        if prompt_seen:
            # The module waits for data we will not send: stay silent until it gives up.
            self._start_resync(now, silent=True, why=f"{cmd.name} aborted")
        else:
            self._leave_data_mode(cmd, in_data, now, why=f"{cmd.name} aborted")
        self._fail(cmd, ProtocolViolation(f"{cmd.name}: {why}"))

    def _leave_data_mode(self, cmd: Command, in_data: bool, now: float, why: str) -> None:
        """After a command went wrong: make sure nothing we say next becomes payload."""
        if in_data and cmd.data is not None and cmd.data.counted:
            # Esc and probes would be counted as payload: wait for data mode to time out.
            self._start_resync(now, silent=True, why=why)
            return
        if in_data:
            self._write(ESC)  # cancels a Ctrl+Z-terminated or hex data phase
        self._start_resync(now, silent=False, why=why)

    def _finish(self, cmd: Command, final: FinalResult, now: float) -> None:
        self.current = None
        self.answering = True
        self._observe(cmd, "ok" if final.ok else "error", now)
        log.debug(
            "AT< {final} ({name}, {ms:.0f} ms)",
            final=final.text,
            name=cmd.name,
            ms=(now - cmd.started) * 1000,
        )
        self._gap(now)
        if final.ok:
            self._note(Completed(cmd, Response(cmd.line, list(cmd.lines), final)))
        else:
            self._fail(cmd, CommandError(cmd.line, final, list(cmd.lines)))

    def _gap(self, now: float) -> None:
        # A short gap between commands: some firmware drops a line sent right after OK.
        if self.timing.guard_time > 0:
            self.phase = Phase.GAP
            self._set_deadline(now + self.timing.guard_time)
        else:
            self.phase = Phase.IDLE
            self._set_deadline(None)
            self._kick(now)

    def _fail_everything(self, reason: ATError) -> None:
        pending = [c for q in self._queues.values() for c in q]
        for q in self._queues.values():
            q.clear()
        if self.current is not None:
            pending.insert(0, self.current)
            self.current = None
            if self.phase in COMMAND_PHASES:
                self.phase = Phase.IDLE
                self._set_deadline(None)
        for cmd in pending:
            self._fail(cmd, reason)

    # ------------------------------------------------------------------ resync

    def _start_resync(
        self, now: float, *, silent: bool, why: str, silent_from: float | None = None
    ) -> None:
        self.resyncs += 1
        self._resync_tries = 0
        self._resync_was_silent = silent
        if silent and self.timing.data_mode_quiet > 0:
            log.warn(
                "{why}: the module may be in data mode; silent for {t:g} s before probing",
                why=why,
                t=self.timing.data_mode_quiet,
            )
            self.phase = Phase.SILENT
            start = now if silent_from is None else max(now, silent_from)
            self._silent_until = max(self._silent_until, start + self.timing.data_mode_quiet)
            self._set_deadline(self._silent_until)
            return
        self.phase = Phase.QUIET
        self._quiet_bound = now + self.timing.quiet_max
        self._set_deadline(now + self.timing.quiet_period)

    def _resync_event(self, event: Event, kind: Kind, now: float) -> None:
        if kind is Kind.PROMPT:
            # The module wants data: any probe before its data mode ends would be payload.
            # A '>' inside the silence starts it over (the data mode began only now).
            self._start_resync(now, silent=True, why="'>' during resync")
            return
        if self.phase is Phase.QUIET:
            # A late answer or its tail: swallowed, and the quiet starts over, within bound.
            if kind in (Kind.OK, Kind.ERROR):
                self._discard_final(event, expected=True)
            self._set_deadline(min(now + self.timing.quiet_period, self._quiet_bound))
            return
        if self.phase is Phase.SILENT:
            if kind in (Kind.OK, Kind.ERROR):
                self._discard_final(event, expected=True)
            return
        # PROBING: only the probe's own answer ends the resync.
        probe = PROBES[self._probe_index]
        if kind is Kind.INFO and isinstance(event, InfoLine):
            if probe.answer.fullmatch(event.text):
                self._probe_seen_answer = True
            else:
                log.debug("line during resync discarded: {line}", line=event.text)
                self._probe_seen_answer = False
            return
        if kind is Kind.ECHO:
            return
        if kind is Kind.OK and self._probe_seen_answer:
            self._resynced(now)
            return
        self._probe_seen_answer = False
        self._discard_final(event, expected=True)

    def _probe(self, now: float) -> None:
        self._resync_tries += 1
        self._probe_index = (self._probe_index + 1) % len(PROBES)
        self._probe_seen_answer = False
        self.phase = Phase.PROBING
        self._write(encode_command(PROBES[self._probe_index].command))
        self._set_deadline(now + self.timing.resync_timeout)

    def _probe_timed_out(self, now: float) -> None:
        if self._resync_tries < self.timing.resync_attempts:
            self._probe(now)
            return
        if not self._resync_was_silent and self.timing.data_mode_quiet > 0:
            # No answer at all: maybe data mode eats our probes. Fall silent once.
            self._start_resync(now, silent=True, why="no answer to the probe")
            return
        if not self.unresponsive:
            log.error("module does not answer after {n} probes", n=self.timing.resync_attempts)
        self.unresponsive = True
        self.answering = False
        # Nothing queued waits on a module that does not answer: memory stays bounded
        # and callers learn now (the owner's ladder takes over).
        queued = [c for q in self._queues.values() for c in q]
        for q in self._queues.values():
            q.clear()
        for cmd in queued:
            self._fail(cmd, CommandTimeout(cmd.line, cmd.timeout, "answer: module unresponsive"))
        self._note(Unresponsive())
        # Keep probing, more slowly: the owner decides whether to reopen or reset; queued
        # commands wait, none is written to a module that does not answer.
        self._resync_tries = 0
        self._resync_was_silent = True
        self.phase = Phase.QUIET
        self._quiet_bound = now + self.timing.quiet_max
        self._set_deadline(now + self.timing.quiet_max)

    def _resynced(self, now: float) -> None:
        if self.unresponsive:
            log.info("module answers again")
        self.unresponsive = False
        self.answering = True
        self._note(Resynced())
        self._gap(now)

    def _discard_final(self, event: Event, expected: bool = False) -> None:
        self.discarded_finals += 1
        if expected:
            log.debug("answer nobody can own discarded: {line}", line=_event_text(event))
        else:
            log.info("answer nobody can own discarded: {line}", line=_event_text(event))

    # ------------------------------------------------------------------ outputs

    def _write(self, data: bytes) -> None:
        self._effects.append(Write(data))

    def _set_deadline(self, at: float | None) -> None:
        self.deadline = at
        self._effects.append(SetTimer(at))

    def _note(self, action: Action) -> None:
        self._notes.append(action)

    def _notify(self, event: Event) -> None:
        self._notes.append(Notify(event))

    def _fail(self, cmd: Command, error: ATError) -> None:
        self._notes.append(Failed(cmd, error))

    def _observe(self, cmd: Command, result: str, now: float) -> None:
        self._notes.append(Observed(cmd.name, result, now - cmd.started))

    def _flush(self) -> list[Action]:
        # Only the last deadline of a batch matters.
        effects: list[Action] = []
        last_timer: SetTimer | None = None
        for action in self._effects:
            if isinstance(action, SetTimer):
                last_timer = action
            else:
                effects.append(action)
        if last_timer is not None:
            effects.append(last_timer)
        actions = effects + self._notes
        self._effects = []
        self._notes = []
        return actions


def _event_text(event: Event) -> str:
    if isinstance(event, FinalResult):
        return event.text
    if isinstance(event, InfoLine | Echo):
        return event.text
    if isinstance(event, Prompt):
        return ">"
    return repr(event)


CommandObserver = Callable[[str, str, float], None]
