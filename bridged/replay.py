"""``bridged replay TRACE``: a serial trace (:mod:`bridged.serial_trace`) fed back through
the codec on a virtual clock, printing the events, the commands they answered and every
protocol error: a field problem reproduced on any laptop.

The module side goes through :class:`bridged.at_codec.ATDecoder` exactly as the daemon
feeds it (same chunks, same order); the host side says which command each answer
belongs to. Time is the trace's own: nothing waits.

Correlation is done here, on the codec's events, not by the daemon's AT session: the
pure AT session (issue 11) had not landed when this was written. Its rules are the
dialect's: one command at a time, so a final result answers the oldest command without
one (a new command line abandons an unanswered one); ``>`` opens a data phase for that
command that ends at its final result; ``+QSSLOPEN`` / ``+QSSLSEND`` / ``+QSSLCLOSE``
answer the accepted command of that kind for that socket, oldest first.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bridged.at_codec import (
    ATDecoder,
    BootSign,
    ClosedUrc,
    CloseResult,
    DataFormat,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    OpenResult,
    Prompt,
    ProtocolError,
    RecvUrc,
    SendResult,
)
from bridged.serial_trace import (
    HOST,
    MODULE,
    NOTE,
    TraceEntry,
    TraceFormatError,
    escape,
    parse_trace,
)

_DATAFORMAT = re.compile(r'AT\+QSSLCFG=\s*\d+\s*,\s*(\d+)\s*,\s*"dataformat"\s*,\s*\d\s*,\s*(\d)')
_ASYNC = re.compile(r"AT\+QSSL(OPEN|SEND|CLOSE)=\s*\d+\s*,\s*(\d+)", re.IGNORECASE)


@dataclass
class _Command:
    line: str
    sent: float
    data_bytes: int = 0
    prompt_at: float | None = None
    lines: list[str] = field(default_factory=list)


@dataclass
class Replay:
    """What a replay found: printable lines, the codec's URCs and protocol errors in
    order (what the daemon's engine reports to its listeners), and each command with
    its final result."""

    lines: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    protocol_errors: int = 0
    #: Final results or '>' with no command waiting (late answers, typically).
    unmatched: int = 0


class Replayer:
    """Pure: trace entries in, a :class:`Replay` out."""

    def __init__(self) -> None:
        self.result = Replay()
        self._decoder = ATDecoder()
        self._t0: float | None = None
        self._host = bytearray()
        self._in_flight: deque[_Command] = deque()
        self._data_phase = False
        self._pending: dict[tuple[str, int], deque[_Command]] = {}

    def feed(self, entry: TraceEntry) -> None:
        if self._t0 is None:
            self._t0 = entry.time
        if entry.direction == NOTE:
            self._say(entry.time, f"* {entry.text}")
            if entry.text == "port opened":
                self._decoder.reset()
                self._abandon(entry.time)
                self._data_phase = False
                self._host.clear()
        elif entry.direction == HOST:
            self._host_bytes(entry)
        elif entry.direction == MODULE:
            for event in self._decoder.feed(entry.data):
                self._module_event(event, entry.time)

    def finish(self) -> Replay:
        end = self._t0 or 0.0
        self._abandon(end)
        r = self.result
        counts = f"{len(r.commands)} commands, {len(r.events)} URCs/errors"
        r.lines.append(
            f"-- {counts}, {r.protocol_errors} protocol error(s), {r.unmatched} unmatched answer(s)"
        )
        return r

    # -- host side -------------------------------------------------------------------
    def _host_bytes(self, entry: TraceEntry) -> None:
        if self._data_phase and self._in_flight:
            cmd = self._in_flight[0]
            cmd.data_bytes += len(entry.data)
            what = f"{entry.elided}" if entry.elided else "data"
            wait = "" if cmd.prompt_at is None else f", {_ms(entry.time - cmd.prompt_at)} after '>'"
            self._say(entry.time, f"→ {len(entry.data)} bytes ({what}){wait}")
            return
        self._host += entry.data
        while (end := self._host.find(b"\r")) >= 0:
            text = self._host[:end].decode("latin-1").strip()
            del self._host[: end + 1]
            if not text:
                continue
            self._abandon(entry.time)
            self._in_flight.append(_Command(text, entry.time))
            self._say(entry.time, f"→ {text}")
            if m := _DATAFORMAT.match(text):
                fmt = DataFormat.HEX if m.group(2) == "1" else DataFormat.TEXT
                self._decoder.set_recv_format(int(m.group(1)), fmt)

    def _abandon(self, now: float) -> None:
        while self._in_flight:
            cmd = self._in_flight.popleft()
            self.result.commands.append((cmd.line, "no answer"))
            self._say(now, f"  {cmd.line}: no final result before the next command")
        self._data_phase = False

    # -- module side -----------------------------------------------------------------
    def _module_event(self, event: Event, now: float) -> None:
        if isinstance(event, Echo):
            return
        if isinstance(event, Prompt):
            if self._in_flight:
                self._in_flight[0].prompt_at = now
                self._data_phase = True
                self._say(now, f"← '>' for {self._in_flight[0].line}")
            else:
                self._unmatched(now, "'>' with no command waiting")
            return
        if isinstance(event, InfoLine):
            if self._in_flight:
                self._in_flight[0].lines.append(event.text)
                self._say(now, f"← {_printable(event.text)}")
            else:
                self._say(now, f"← {_printable(event.text)}  (unsolicited line)")
            return
        if isinstance(event, FinalResult):
            self._final(event, now)
            return
        if isinstance(event, ProtocolError):
            self._error(now, event)
            return
        self.result.events.append(event)
        self._say(now, f"← {_describe(event)}{self._answers(event, now)}")

    def _final(self, event: FinalResult, now: float) -> None:
        self._data_phase = False
        if not self._in_flight:
            self._unmatched(now, f"{event.text} with no command waiting (a late answer?)")
            return
        cmd = self._in_flight.popleft()
        self.result.commands.append((cmd.line, event.text))
        self._say(now, f"← {event.text}  ({cmd.line}, {_ms(now - cmd.sent)})")
        m = _ASYNC.match(cmd.line)
        if event.ok and m:
            self._pending.setdefault((m.group(1).upper(), int(m.group(2))), deque()).append(cmd)

    def _answers(self, event: Event, now: float) -> str:
        kind = {OpenResult: "OPEN", SendResult: "SEND", CloseResult: "CLOSE"}.get(type(event))
        if kind is None:
            return ""
        assert isinstance(event, OpenResult | SendResult | CloseResult)
        waiting = self._pending.get((kind, event.connect_id))
        if not waiting:
            return "  (answers no command in this trace)"
        cmd = waiting.popleft()
        return f"  (answers {cmd.line}, {_ms(now - cmd.sent)} after it)"

    def _error(self, now: float, error: ProtocolError) -> None:
        self.result.protocol_errors += 1
        self.result.events.append(error)
        self._say(now, f"!! protocol error {error.kind}: {error.detail}")

    def _unmatched(self, now: float, text: str) -> None:
        self.result.unmatched += 1
        self._say(now, f"?? {text}")

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


def replay_entries(entries: Iterable[TraceEntry]) -> Replay:
    replayer = Replayer()
    for entry in entries:
        replayer.feed(entry)
    return replayer.finish()


def replay_files(paths: Sequence[Path]) -> Replay:
    """Replay one trace or a rotated pair (``trace.1`` first, then ``trace``)."""

    def lines() -> Iterable[TraceEntry]:
        for path in paths:
            with open(path, encoding="utf-8") as f:
                yield from parse_trace(f, str(path))

    return replay_entries(lines())


def replay_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="bridged replay",
        description="Replay a serial trace through the codec: events, commands, errors.",
    )
    parser.add_argument("trace", type=Path, nargs="+", help="trace file(s), oldest first")
    parser.add_argument(
        "--errors-only", action="store_true", help="print protocol errors and the summary only"
    )
    args = parser.parse_args(list(argv))
    try:
        result = replay_files(args.trace)
    except (OSError, TraceFormatError) as exc:
        print(f"bridged replay: {exc}", file=sys.stderr)
        return 2
    for line in result.lines:
        if not args.errors_only or " !! " in line or " ?? " in line or line.startswith("--"):
            print(line)
    return 1 if result.protocol_errors else 0
