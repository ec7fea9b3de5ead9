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

from bridged.core.at_codec import (
    ESC,
    BootSign,
    Event,
    FinalResult,
    InfoLine,
    ProtocolError,
    encode_command,
)
from bridged.core.at_session_core import SessionCore
from bridged.core.at_session_rules import (
    COMMAND_PHASES,
    PHASE_RULES,
    PROBES,
    RESYNC_PHASES,
    UNSOLICITED_TYPES,
    WAIT_PHASES,
    Kind,
    Phase,
    Probe,
    Rule,
    event_text,
    kind_of,
)
from bridged.core.at_session_types import (
    Action,
    ATError,
    Command,
    CommandError,
    CommandObserver,
    CommandTimeout,
    Completed,
    DataPhase,
    Failed,
    Notify,
    Observed,
    Priority,
    ProtocolViolation,
    Response,
    Resynced,
    SerialLost,
    SessionTiming,
    SetTimer,
    Unresponsive,
    Write,
    command_name,
    info_prefix,
)

__all__ = [
    "COMMAND_PHASES",
    "PHASE_RULES",
    "PROBES",
    "RESYNC_PHASES",
    "UNSOLICITED_TYPES",
    "WAIT_PHASES",
    "ATError",
    "ATSession",
    "Action",
    "Command",
    "CommandError",
    "CommandObserver",
    "CommandTimeout",
    "Completed",
    "DataPhase",
    "Failed",
    "Kind",
    "Notify",
    "Observed",
    "Phase",
    "Priority",
    "Probe",
    "ProtocolViolation",
    "Response",
    "Resynced",
    "Rule",
    "SerialLost",
    "SessionTiming",
    "SetTimer",
    "Unresponsive",
    "Write",
    "command_name",
    "info_prefix",
]


class ATSession(SessionCore):
    """The one AT conversation with the module, as a pure state machine."""

    # ------------------------------------------------------------------ inputs

    def submit(self, command: Command, now: float) -> list[Action]:
        """Queue a command (the owner checked it is connected); a malformed line is
        refused here (ValueError), and the encoded line kept for when it is written."""
        command.encoded = encode_command(command.line)
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
        self._feeding, self._wrote_during_read = True, False
        try:
            for event in self.decoder.feed(data):
                self._event(event, now)
        finally:
            self._feeding = self._wrote_during_read = False
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
                self.log.warn(
                    "serial protocol error ({kind}): {detail}", kind=event.kind, detail=event.detail
                )
            # A boot sign too: the owner decides (a banner read late as the port opens is
            # no reboot); it calls fail_all, which leaves the session resynchronising.
            self._notify(event)
            if isinstance(event, BootSign):
                self._booted(now)
            return
        kind = kind_of(event)
        phase = self.phase
        if phase in RESYNC_PHASES:
            self._resync_event(event, kind, now)
            return
        if phase in COMMAND_PHASES:
            if self._wrote_during_read and kind in (Kind.OK, Kind.ERROR):
                # Read before the command went out (a duplicated or stray frame behind
                # the previous answer): it cannot be this command's.
                self._discard_final(event)
                return
            self._command_event(event, kind, now)
            return
        # Idle (or in the guard gap): nobody asked.
        if kind is Kind.PROMPT:
            self.log.warn("'>' with no data to send: the module waits for data; staying silent")
            self._start_resync(now, silent=True, why="stray '>'")
        elif kind in (Kind.OK, Kind.ERROR):
            self._discard_final(event)
        elif kind is Kind.INFO:
            self.log.info("unsolicited line from module: {line}", line=event_text(event))
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
                    self.log.info(
                        "line ignored in {name}'s answer: {line!r}", name=cmd.name, line=event.text
                    )
                    return
                self._abort(cmd, now, f"foreign line {event.text!r} in its answer")
                return
            cmd.lines.append(event.text)
            return
        if rule is Rule.ABORT:
            why = f"{event_text(event)!r} while waiting for {self._waiting()}"
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
        self.log.warn(
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
        self.log.warn("{name}: protocol error: {why}; cancelling", name=cmd.name, why=why)
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

    # ------------------------------------------------------------------ resync

    def _start_resync(
        self, now: float, *, silent: bool, why: str, silent_from: float | None = None
    ) -> None:
        self._resync_tries = 0
        self._resync_was_silent = silent
        if silent and self.timing.data_mode_quiet > 0:
            self.log.warn(
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
                self.log.debug("line during resync discarded: {line}", line=event.text)
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
            self.log.error("module does not answer after {n} probes", n=self.timing.resync_attempts)
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
            self.log.info("module answers again")
        self.unresponsive = False
        self.answering = True
        self._note(Resynced())
        self._gap(now)

    def _discard_final(self, event: Event, expected: bool = False) -> None:
        self.discarded_finals += 1
        if expected:
            self.log.debug("answer nobody can own discarded: {line}", line=event_text(event))
        else:
            self.log.info("answer nobody can own discarded: {line}", line=event_text(event))
