"""``bridged replay TRACE``: a serial trace (:mod:`bridged.core.serial_trace`) fed back through
the daemon's own AT session on a virtual clock, printing the events, the commands they
answered and every protocol error: a field problem reproduced on any laptop.

The module side goes to :class:`bridged.core.at_session.ATSession` (and so through its codec)
exactly as the daemon fed it: same chunks, same order, the trace's times. The host side
is what the daemon's session wrote; replay makes the session write it again, so the
session itself decides which command each answer completes, which answers nobody owns,
when a command is aborted and when a resync probe is answered — the rules are defined
once, there. Nothing waits: the session's deadlines are the host's evidence. Its timing
is all zeros, and a deadline fires when the host's next write shows that the daemon's
timer fired (a payload after ``>``, a probe, the next command after a timeout); a
command that never gets that far is left pending, as it was when the trace ended.

Each host write (the records of one ``write`` share a timestamp) is one of: a command
line, submitted as the daemon submitted it (urgent during a resync, as ``AT+QRST=1``); a
payload after ``>`` (with ``trace_payload: false`` or a redacted upload, the trace's
length stands in for the bytes: the session only counts them); or something the session
writes by itself — a probe, Esc — which must be what the session writes when its timer
fires. A host write the session would not make is reported (``??``).

What the daemon's owner does around the session is done here too: ``port opened`` /
``port closed`` are the connection, a boot sign fails every command (the modem does), and
a ``"dataformat"`` setting tells the codec how the socket's recv data is coded.
``+QSSLOPEN`` / ``+QSSLSEND`` / ``+QSSLCLOSE`` results are paired with the completed
command of that kind for that socket, oldest first, as :mod:`bridged.shell.qssl` pairs them
with its waiters.

Which module spoke (its contextID, sockets and recv limits, for the codec) is read off the
trace's own QSSL commands, as the recorder reads it
(:func:`bridged.core.serial_trace.module_of_command`); ``--model`` names it instead, for a
trace with no such command (one that begins mid-run).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridged.core.at_codec import (
    CTRL_Z,
    ESC,
    BootSign,
    ClosedUrc,
    CloseResult,
    DataFormat,
    Event,
    InfoLine,
    OpenResult,
    ProtocolError,
    RecvUrc,
    SendResult,
)
from bridged.core.at_session import (
    PROBES,
    RESYNC_PHASES,
    Action,
    ATError,
    ATSession,
    Command,
    CommandError,
    CommandTimeout,
    Completed,
    DataPhase,
    Failed,
    Notify,
    Observed,
    Phase,
    ProtocolViolation,
    Resynced,
    SerialLost,
    SessionTiming,
    Unresponsive,
    Write,
    info_prefix,
)
from bridged.core.module_profile import BUILTIN_PROFILES, ModuleProfile
from bridged.core.serial_trace import (
    HOST,
    MODULE,
    NOTE,
    TraceEntry,
    TraceFormatError,
    escape,
    module_of_command,
    parse_trace,
)

_DATAFORMAT = re.compile(
    r'AT\+QSSLCFG=\s*\d+\s*,\s*(\d+)\s*,\s*"dataformat"\s*,\s*(\d)\s*,\s*(\d)', re.IGNORECASE
)
_ASYNC = re.compile(r"AT\+QSSL(OPEN|SEND|CLOSE)=\s*\d+\s*,\s*(\d+)", re.IGNORECASE)
_SEND = re.compile(r"AT\+QSSLSEND=\s*\d+\s*,\s*(\d+)", re.IGNORECASE)
_UPLOAD = re.compile(
    r'AT\+QSSLCFG=\s*\d+\s*,\s*\d+\s*,\s*"(cacert|clientcert|clientkey)"\s*$', re.IGNORECASE
)
_PROBE_LINES = frozenset(p.command for p in PROBES)
#: Deadlines are the host's evidence, so every wait is zero: the deadline is always due
#: by the time the host shows the daemon acted on it. Resync never gives up by itself.
_TIMING = SessionTiming(
    prompt_delay=0.0,
    guard_time=0.0,
    resync_attempts=1 << 30,
    resync_timeout=0.0,
    quiet_period=0.0,
    quiet_max=0.0,
    data_mode_quiet=0.0,
)


@dataclass
class Replay:
    """What a replay found: printable lines, the URCs and protocol errors the session
    notified in order (what the daemon's engine reports to its listeners), each command
    with its outcome, and each command outcome as the session reports it to metrics."""

    lines: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    #: (command name, ok / error / timeout / aborted): the session's Observed actions.
    observed: list[tuple[str, str]] = field(default_factory=list)
    #: Codec protocol errors and commands the session aborted on a protocol violation.
    protocol_errors: int = 0
    #: Final results no command owned (the session discarded them) and host writes the
    #: session would not have made.
    unmatched: int = 0


class Replayer:
    """Pure: trace entries in, a :class:`Replay` out. ``module``: the module that spoke;
    None: the one the trace's commands show (a BC26 until one does)."""

    def __init__(self, module: ModuleProfile | None = None) -> None:
        self.result = Replay()
        self.session = ATSession(_TIMING)
        self._module_known = module is not None
        if module is not None:
            self.session.decoder.set_profile(module)
        self._t0: float | None = None
        self._now = 0.0
        self._write: tuple[float, bytearray, str | None] | None = None  # one host write
        self._owed: deque[bytes] = deque()  # written by the session, not yet in the trace
        self._prompt_at: float | None = None
        self._send_text: set[int] = set()  # sockets whose sends are text (counted)
        self._pending: dict[tuple[str, int], deque[tuple[str, float]]] = {}

    def feed(self, entry: TraceEntry) -> None:
        if self._t0 is None:
            self._t0 = entry.time
        if self._write is not None and (entry.direction != HOST or entry.time != self._write[0]):
            self._host_write()
        self._now = entry.time
        if entry.direction == NOTE:
            self._say(entry.time, f"* {entry.text}")
            if entry.text == "port opened":
                if self.session.connected:
                    self._lost("serial port reopened")
                self._apply(self.session.connection_made(entry.time))
            elif entry.text == "port closed":
                self._lost("serial port closed")
            return
        if not self.session.connected:  # a trace that begins mid-run
            self._apply(self.session.connection_made(entry.time))
        if entry.direction == HOST:
            if self._write is None:
                self._write = (entry.time, bytearray(), entry.elided)
            self._write[1].extend(entry.data)
        elif entry.direction == MODULE:
            discarded = self.session.discarded_finals
            before = self.session.phase
            actions = self.session.feed(entry.data, entry.time)
            if before is Phase.PROMPT and self.session.phase is Phase.PROMPT_DELAY:
                assert self.session.current is not None
                self._prompt_at = entry.time
                self._say(entry.time, f"← '>' for {self.session.current.line}")
            self._apply(actions)
            if n := self.session.discarded_finals - discarded:
                self.result.unmatched += n
                self._say(entry.time, f"?? {n} final result(s) no command owns (a late answer?)")

    def finish(self) -> Replay:
        if self._write is not None:
            self._host_write()
        cmd = self.session.current
        if cmd is not None:
            self.result.commands.append((cmd.line, "no answer"))
            self._say(self._now, f"  {cmd.line}: no final result before the trace ends")
        r = self.result
        counts = f"{len(r.commands)} commands, {len(r.events)} URCs/errors"
        r.lines.append(
            f"-- {counts}, {r.protocol_errors} protocol error(s), {r.unmatched} unmatched answer(s)"
        )
        return r

    # -- host side -------------------------------------------------------------------
    def _host_write(self) -> None:
        """Make the session write what the daemon's session wrote at this time."""
        assert self._write is not None
        now, data, elided = self._write
        self._write = None
        self._now = now
        written = bytes(data)
        session = self.session
        for _ in range(4):  # a timeout, then what follows it, at most
            if self._take_owed(written, now):
                return
            phase = session.phase
            line = written[:-1].decode("latin-1") if written.endswith(b"\r") else None
            cmd = session.current
            if phase is Phase.PROMPT_DELAY and cmd is not None and cmd.data is not None:
                # The payload: the trace's bytes (or as many stand-ins) are what was sent.
                cmd.data = DataPhase(written, counted=cmd.data.counted)
                wait = (
                    "" if self._prompt_at is None else f", {_ms(now - self._prompt_at)} after '>'"
                )
                self._say(now, f"→ {len(written)} bytes ({elided or 'data'}){wait}")
                self._apply(session.timer_fired(now))
                self._take_owed(written, now, quiet=True)
                return
            if phase in (Phase.RESPONSE, Phase.PROMPT, Phase.AFTER_DATA):
                self._apply(session.timer_fired(now))  # the daemon gave up on it
            elif phase in RESYNC_PHASES and line in _PROBE_LINES:
                self._apply(session.timer_fired(now))
            elif line and phase in (Phase.IDLE, Phase.GAP, *RESYNC_PHASES):
                self._submit(line, now, urgent=phase in RESYNC_PHASES)
            else:
                break
        self._owed.clear()
        self.result.unmatched += 1
        self._say(now, f"?? → {escape(written)}: the session would not write this here")

    def _take_owed(self, written: bytes, now: float, quiet: bool = False) -> bool:
        while self._owed and self._owed[0] != written and self._owed[0] == ESC:
            self._owed.popleft()  # an Esc the daemon did not send (a counted send)
        if self._owed and self._owed[0] == written:
            self._owed.popleft()
            if not quiet:
                text = escape(written.removesuffix(b"\r"))
                probe = "  (resync probe)" if text in _PROBE_LINES else ""
                self._say(now, f"→ {text}{probe}")
            return True
        return False

    def _submit(self, line: str, now: float, urgent: bool) -> None:
        decoder = self.session.decoder
        module = decoder.profile
        if not self._module_known:
            module = module_of_command(line.encode("latin-1"), decoder.profile)
        if module is not decoder.profile:
            decoder.set_profile(module)
            self._say(now, f"* contextID {module.context_id}: read as a {module.label}")
        data = None
        if m := _SEND.match(line):
            data = DataPhase(b"", counted=int(m.group(1)) in self._send_text)
        elif _UPLOAD.match(line):
            data = DataPhase(b"", terminator=CTRL_Z, redact=True)
        cmd = Command(line, 0.0, data, info_prefix=info_prefix(line), urgent=urgent)
        self._apply(self.session.submit(cmd, now))

    def _lost(self, why: str) -> None:
        self._apply(self.session.connection_lost(SerialLost(why)))

    # -- the session's actions -------------------------------------------------------
    def _apply(self, actions: list[Action]) -> None:
        now = self._now
        for action in actions:
            if isinstance(action, Write):
                self._owed.append(action.data)
            elif isinstance(action, Notify):
                self._event(action.event, now)
            elif isinstance(action, Completed):
                self._completed(action.command, action.response.lines, "OK", now)
            elif isinstance(action, Failed):
                self._failed(action.command, action.error, now)
            elif isinstance(action, Observed):
                self.result.observed.append((action.name, action.result))
            elif isinstance(action, Resynced):
                self._say(now, "← resynchronised: the probe was answered")
            elif isinstance(action, Unresponsive):
                self._say(now, "!! the module does not answer the probes")

    def _completed(self, cmd: Command, lines: list[str], final: str, now: float) -> None:
        for text in lines:
            self._say(now, f"← {_printable(text)}")
        self.result.commands.append((cmd.line, final))
        self._say(now, f"← {final}  ({cmd.line}, {_ms(now - cmd.started)})")
        if final == "OK":
            if m := _ASYNC.match(cmd.line):
                key = (m.group(1).upper(), int(m.group(2)))
                self._pending.setdefault(key, deque()).append((cmd.line, cmd.started))
            if m := _DATAFORMAT.match(cmd.line):
                connect_id = int(m.group(1))
                self.session.decoder.set_recv_format(connect_id, DataFormat.from_digit(m.group(3)))
                if DataFormat.from_digit(m.group(2)) is DataFormat.HEX:
                    self._send_text.discard(connect_id)
                else:
                    self._send_text.add(connect_id)

    def _failed(self, cmd: Command, error: ATError, now: float) -> None:
        if isinstance(error, CommandError):
            self._completed(cmd, error.lines, error.final.text, now)
            return
        if isinstance(error, ProtocolViolation):
            self.result.protocol_errors += 1
            self.result.commands.append((cmd.line, "aborted"))
            self._say(now, f"!! protocol error: {error}")
            return
        if isinstance(error, CommandTimeout):
            # The replay's waits are zero: the time is when the daemon moved on.
            self.result.commands.append((cmd.line, "timeout"))
            self._say(now, f"  {cmd.line}: timed out, no {error.phase} ({_ms(now - cmd.started)})")
            return
        self.result.commands.append((cmd.line, "failed"))
        self._say(now, f"  {cmd.line}: {error}")

    def _event(self, event: Event, now: float) -> None:
        if isinstance(event, InfoLine):
            self._say(now, f"← {_printable(event.text)}  (unsolicited line)")
            return
        self.result.events.append(event)
        if isinstance(event, ProtocolError):
            self.result.protocol_errors += 1
            self._say(now, f"!! protocol error {event.kind}: {event.detail}")
            return
        self._say(now, f"← {_describe(event)}{self._answers(event, now)}")
        if isinstance(event, BootSign):
            # What the modem does on every boot sign while the port is open.
            self._apply(self.session.fail_all(ATError("module restarting"), now))

    def _answers(self, event: Event, now: float) -> str:
        kind = {OpenResult: "OPEN", SendResult: "SEND", CloseResult: "CLOSE"}.get(type(event))
        if kind is None:
            return ""
        assert isinstance(event, OpenResult | SendResult | CloseResult)
        waiting = self._pending.get((kind, event.connect_id))
        if not waiting:
            return "  (answers no command in this trace)"
        line, sent = waiting.popleft()
        return f"  (answers {line}, {_ms(now - sent)} after it)"

    def _say(self, now: float, text: str) -> None:
        self.result.lines.append(f"{now - (self._t0 or now):10.3f}  {text}")


def _printable(text: str) -> str:
    return escape(text.encode("latin-1"))


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _describe(event: Event) -> str:
    if isinstance(event, RecvUrc):
        return f'+QSSLURC: "recv" socket {event.connect_id}, {len(event.data)} bytes'
    if isinstance(event, ClosedUrc):
        return f'+QSSLURC: "closed" socket {event.connect_id}'
    if isinstance(event, OpenResult | SendResult | CloseResult):
        kind = type(event).__name__.removesuffix("Result").upper()
        return f"+QSSL{kind}: socket {event.connect_id}, {event.err}"
    if isinstance(event, BootSign):
        return f"boot sign {event.text!r}: the module restarted"
    return repr(event)


def replay_entries(entries: Iterable[TraceEntry], module: ModuleProfile | None = None) -> Replay:
    replayer = Replayer(module)
    for entry in entries:
        replayer.feed(entry)
    return replayer.finish()


def replay_files(paths: Sequence[Path], module: ModuleProfile | None = None) -> Replay:
    """Replay one trace or a rotated pair (``trace.1`` first, then ``trace``)."""

    def lines() -> Iterable[TraceEntry]:
        for path in paths:
            with open(path, encoding="utf-8") as f:
                yield from parse_trace(f, str(path))

    return replay_entries(lines(), module)


def replay_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bridged replay",
        description="Replay a serial trace through the AT session: events, commands, errors.",
    )
    parser.add_argument("trace", type=Path, nargs="+", help="trace file(s), oldest first")
    parser.add_argument(
        "--errors-only", action="store_true", help="print protocol errors and the summary only"
    )
    parser.add_argument(
        "--model",
        choices=sorted(BUILTIN_PROFILES),
        help="the module that spoke (default: what the trace's QSSL commands show, else bc26)",
    )
    args = parser.parse_args(list(argv))
    module = BUILTIN_PROFILES[args.model] if args.model else None
    try:
        result = replay_files(args.trace, module)
    except (OSError, TraceFormatError) as exc:
        print(f"bridged replay: {exc}", file=sys.stderr)
        return 2
    for line in result.lines:
        if not args.errors_only or " !! " in line or " ?? " in line or line.startswith("--"):
            print(line)
    return 1 if result.protocol_errors else 0
