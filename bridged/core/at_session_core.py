"""The AT session's state and how it runs commands: the queues, the one command in flight,
the deadline, and the batch of actions an input returns (effects before notifications).

:class:`SessionCore` starts, writes and finishes commands;
:class:`bridged.core.at_session.ATSession` adds the inputs, what the module's lines do,
timeouts, aborts and resync.
"""

from __future__ import annotations

from collections import deque

from bridged.core.at_codec import ATDecoder, Event, FinalResult, encode_command
from bridged.core.at_session_rules import COMMAND_PHASES, RESYNC_PHASES, Phase
from bridged.core.at_session_types import (
    Action,
    ATError,
    Command,
    CommandError,
    Completed,
    Failed,
    Notify,
    Observed,
    Priority,
    Response,
    SessionTiming,
    SetTimer,
    Write,
)
from bridged.core.log_sink import DEBUG, DISCARD_LOG, LogSink


class SessionCore:
    """The session's state, its command queue and its output batch."""

    def __init__(
        self,
        timing: SessionTiming | None = None,
        max_line: int = 4096,
        log: LogSink = DISCARD_LOG,
    ) -> None:
        self.timing = timing or SessionTiming()
        # The shell passes Logger(namespace="bridged.at"); tests may leave the default.
        self.log = log
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
        self.discarded_finals = 0
        self.unresponsive = False  # every probe of the last round unanswered
        self._silent_until = 0.0  # the module may be in data mode until then
        self.answering = True  # False from a timeout until the module answers again
        # Causality: every byte of one read arrived before anything written while that
        # read is handled, so a result later in the same read cannot answer it.
        self._feeding = False
        self._wrote_during_read = False
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

    # ------------------------------------------------------------------ commands

    def _kick(self, now: float) -> None:
        if self.phase is not Phase.IDLE or self.current is not None:
            return
        for queue in self._queues.values():  # in priority order
            if queue:
                self._start(queue.popleft(), now)
                return

    def _start(self, cmd: Command, now: float) -> None:
        self.current = cmd
        cmd.started = now
        cmd.lines.clear()
        if DEBUG.on:
            self.log.debug("AT> {line}", line=cmd.line)
        self._write(cmd.encoded or encode_command(cmd.line))
        self.phase = Phase.RESPONSE if cmd.data is None else Phase.PROMPT
        self._set_deadline(now + cmd.timeout)
        self._wait_cap = now + cmd.timeout + self.timing.busy_max

    def _write_payload(self, now: float) -> None:
        cmd = self.current
        assert cmd is not None and cmd.data is not None
        data = cmd.data
        if not DEBUG.on:
            pass
        elif data.redact:
            self.log.debug("AT> <{n} bytes redacted>", n=len(data.payload))
        else:
            self.log.debug("AT> <{n} payload bytes>", n=len(data.payload))
        self._write(data.payload + data.terminator, data.answer)
        self.phase = Phase.AFTER_DATA
        wait = cmd.result_timeout if cmd.result_timeout is not None else cmd.timeout
        self._set_deadline(now + wait)
        self._wait_cap = now + wait + self.timing.busy_max

    def _finish(self, cmd: Command, final: FinalResult, now: float) -> None:
        prompted = self.phase in (Phase.PROMPT_DELAY, Phase.AFTER_DATA)
        self.current = None
        self.answering = True
        self._observe(cmd, "ok" if final.ok else "error", now)
        if DEBUG.on:
            self.log.debug(
                "AT< {final} ({name}, {ms:.0f} ms)",
                final=final.text,
                name=cmd.name,
                ms=(now - cmd.started) * 1000,
            )
        self._gap(now)
        if final.ok:
            self._note(Completed(cmd, Response(cmd.line, list(cmd.lines), final)))
        else:
            self._fail(cmd, CommandError(cmd.line, final, list(cmd.lines), prompted))

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

    # ------------------------------------------------------------------ outputs

    def _write(self, data: bytes, answer: int = 0) -> None:
        if self._feeding:
            self._wrote_during_read = True
        self._effects.append(Write(data, answer))

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
