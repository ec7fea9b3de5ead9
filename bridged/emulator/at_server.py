"""The module's AT interpreter: host bytes in, module bytes out.

It owns the line discipline (echo, CR-terminated command lines, the ``>`` prompt and
data mode with its entry delay, boot-time deafness) and when URCs may be written.
What each command does lives in the command tables it is given.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from bridged.emulator.at_parse import Command, parse_command
from bridged.emulator.faults import FaultPlan, UrcRelease
from bridged.emulator.replies import DataRequest, Reply
from bridged.emulator.results import CME_TEXT, CmeError
from bridged.emulator.stats import EmulatorStats

_log = Logger()

Handler = Callable[[Command], Reply]

CTRL_Z = 0x1A
ESC = 0x1B
PROMPT = b"\r\n> "
#: A command line longer than this is thrown away (answer: ERROR).
MAX_LINE = 2048
#: What a BC26 prints while booting: boot ROM chatter, then line noise.
BOOT_BANNER = (
    b"F1: 0000 0000\r\nV0: 0000 0000 [0001]\r\n00: 0006 000C\r\n01: 0000 0000\r\n"
    b"U0: 0000 0001 [0000]\r\nT0: 0000 00B4\r\nLeaving the BROM\r\n\x00\xfe\xff\x8f"
)
_DATA_END = re.compile(rb"[\x1a\x1b]")


class LineSink(Protocol):
    def write(self, data: bytes) -> None: ...

    def when_drained(self) -> Deferred[None]: ...

    def when_written(self) -> Deferred[float]: ...


class LineMode(Enum):
    BOOTING = "booting"  # input ignored
    COMMAND = "command"
    AWAIT_DATA = "await_data"  # ">" sent, data mode not begun: input lost
    DATA = "data"


@dataclass
class TerminalSettings:
    """V.250 settings of the interpreter; back to defaults on reboot."""

    echo: bool = True
    cmee: int = 0

    def reset(self) -> None:
        self.echo, self.cmee = True, 0


def frame(line: bytes) -> bytes:
    return b"\r\n" + line + b"\r\n"


class AtServer:
    def __init__(
        self,
        clock: IReactorTime,
        rng: random.Random,
        output: LineSink,
        stats: EmulatorStats,
        faults: FaultPlan,
        prompt_max_delay: float,
        echo_line_end: bytes = b"\r\n",
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._output = output
        self._stats = stats
        self._faults = faults
        self.prompt_max_delay = prompt_max_delay
        self._echo_line_end = echo_line_end
        self.terminal = TerminalSettings()
        self._handlers: dict[str, Handler] = {}
        self.mode = LineMode.BOOTING
        self.hung = False  # the firmware wedged: deaf and mute until power_on
        self._epoch = 0
        self._line = bytearray()
        self._skip_lf = False
        self._held_urcs: list[bytes] = []
        self._request: DataRequest | None = None
        self._data = bytearray()
        self._data_overflow = False
        self._data_timeout: IDelayedCall | None = None
        self._calls: list[IDelayedCall] = []
        self._ready = False
        self._ready_waiters: list[Deferred[None]] = []

    def register(self, handlers: Mapping[str, Handler]) -> None:
        self._handlers.update(handlers)

    # -- lifecycle -------------------------------------------------------------------
    def power_on(self, boot_time: float, sim_ready_delay: float) -> None:
        """(Re)start: forget the line state, print the banner, be deaf for a while."""
        self.hung = False
        self._reset_line_state()
        self.mode = LineMode.BOOTING
        self._output.write(BOOT_BANNER)
        epoch = self._epoch
        self._later(boot_time, lambda: self._boot_done(epoch, sim_ready_delay))

    def when_ready(self) -> Deferred[None]:
        """Fires once ``+CPIN: READY`` is out (now, if it already is)."""
        d: Deferred[None] = Deferred()
        if self._ready:
            d.callback(None)
        else:
            self._ready_waiters.append(d)
        return d

    def stop(self) -> None:
        self._reset_line_state()

    def _reset_line_state(self) -> None:
        self._epoch += 1
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls.clear()
        self._data_timeout = None
        self.terminal.reset()
        self._line.clear()
        self._skip_lf = False
        self._held_urcs.clear()
        self._request = None
        self._data = bytearray()
        self._ready = False

    def _boot_done(self, epoch: int, sim_ready_delay: float) -> None:
        if epoch != self._epoch:
            return
        self.mode = LineMode.COMMAND
        self._output.write(frame(b"RDY"))
        self._later(sim_ready_delay, lambda: self._sim_ready(epoch))

    def _sim_ready(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        self.emit_urc(b"+CPIN: READY")
        self._ready = True
        waiters, self._ready_waiters = self._ready_waiters, []
        for d in waiters:
            d.callback(None)

    # -- input -----------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Bytes from the host, in arrival order."""
        self._stats.bytes_in += len(data)
        if self.hung:
            self._stats.hung_dropped_bytes += len(data)
            return
        i = 0
        while i < len(data):
            if self._skip_lf:
                # CR LF ends a command line as well as CR alone.
                self._skip_lf = False
                if data[i] == 0x0A:
                    i += 1
                    continue
            if self.mode is LineMode.BOOTING:
                self._stats.boot_dropped_bytes += len(data) - i
                return
            if self.mode is LineMode.AWAIT_DATA:
                lost = len(data) - i
                self._stats.early_dropped_bytes += lost
                _log.info("{n} byte(s) before data mode began: dropped", n=lost)
                return
            if self.mode is LineMode.DATA:
                i += self._take_data(data, i)
            else:
                i = self._take_command_bytes(data, i)

    def _take_command_bytes(self, data: bytes, start: int) -> int:
        end = data.find(b"\r", start)
        if end < 0:
            self._line += data[start:]
            if len(self._line) > MAX_LINE:
                self._line.clear()
                self._write_reply(Reply.fail(CmeError.UNKNOWN))
            return len(data)
        self._line += data[start:end]
        self._skip_lf = True
        self._end_line()
        return end + 1

    def _end_line(self) -> None:
        raw = bytes(self._line)
        self._line.clear()
        if raw and self.terminal.echo:
            self._output.write(raw + self._echo_line_end)
        text = _apply_backspaces(raw.decode("latin-1")).strip(" \t\r\n")
        # As V.250: whatever precedes "AT" on a line is noise.
        start = text.upper().find("AT")
        if start < 0:
            if text:
                _log.info("line without AT ignored ({n} bytes)", n=len(text))
            return
        self._run(text[start:])

    def _run(self, text: str) -> None:
        command = parse_command(text)
        self._stats.commands[command.name if command else "?"] += 1
        handler = self._handlers.get(command.name) if command else None
        if command is None or handler is None:
            self._respond(Reply.fail(CmeError.UNKNOWN))
            return
        try:
            reply = handler(command)
        except Exception:
            _log.failure("handler for {name} failed", name=command.name)
            reply = Reply.fail(CmeError.UNKNOWN)
        self._respond(reply)

    # -- data mode -------------------------------------------------------------------
    def _respond(self, reply: Reply) -> None:
        if reply.prompt is None:
            self._write_reply(reply)
            return
        request = reply.prompt
        self.mode = LineMode.AWAIT_DATA
        self._request = request
        # Armed for a send (fixed length), not for a certificate upload.
        late = self._faults.take_late_prompt() if request.fixed_length is not None else None
        if late is not None:
            epoch = self._epoch
            self._later(late, lambda: self._write_prompt(epoch, request))
            return
        self._write_prompt(self._epoch, request)

    def _write_prompt(self, epoch: int, request: DataRequest) -> None:
        if epoch != self._epoch or self._request is not request:
            return
        # The delay runs from when ">" is on the wire, not from when it was queued, nor
        # from the space after it: a host may act on ">" alone.
        self._output.write(PROMPT[:-1])
        on_wire = self._output.when_written()
        self._output.write(PROMPT[-1:])
        on_wire.addCallback(lambda on_line_at: self._prompt_on_line(epoch, request, on_line_at))

    def _prompt_on_line(self, epoch: int, request: DataRequest, on_line_at: float) -> None:
        if epoch != self._epoch or self._request is not request:
            return
        delay = self._faults.prompt_delay
        if delay is None:
            delay = self._rng.uniform(0.0, self.prompt_max_delay)
        _log.debug("'>' on the line; data mode in {ms:.1f} ms", ms=delay * 1000)
        # From when '>' was handed over, not from now: if this process was held up since
        # (a loaded machine, a slow log write), a host that waited the longest delay after
        # seeing '>' must still find data mode begun.
        since = self._clock.seconds() - on_line_at
        self._later(max(0.0, delay - since), lambda: self._enter_data_mode(epoch, request))

    def _enter_data_mode(self, epoch: int, request: DataRequest) -> None:
        if epoch != self._epoch or self._request is not request:
            return
        self.mode = LineMode.DATA
        self._skip_lf = False  # from here on an LF is payload
        self._data = bytearray()
        self._data_overflow = False
        self._data_timeout = self._later(request.timeout, lambda: self._data_timed_out(epoch))

    def _take_data(self, data: bytes, start: int) -> int:
        request = self._request
        assert request is not None
        if self._data_timeout is not None and self._data_timeout.active():
            self._data_timeout.reset(request.timeout)
        if request.fixed_length is not None:
            chunk = data[start : start + request.fixed_length - len(self._data)]
            self._data += chunk
            if len(self._data) == request.fixed_length:
                self._finish_data(lambda: request.on_data(bytes(self._data)))
            return len(chunk)
        found = _DATA_END.search(data, start)
        end = found.start() if found else len(data)
        room = request.max_length - len(self._data)
        if end - start > room:
            self._data_overflow = True
        self._data += data[start : start + min(room, end - start)]
        if found is None:
            return end - start
        if data[end] == ESC:
            self._finish_data(request.on_cancel)
        elif self._data_overflow:
            self._finish_data(lambda: Reply.fail(CmeError.INCORRECT_PARAMETERS))
        else:
            self._finish_data(lambda: request.on_data(bytes(self._data)))
        return end - start + 1

    def _finish_data(self, make_reply: Callable[[], Reply]) -> None:
        if self._data_timeout is not None and self._data_timeout.active():
            self._data_timeout.cancel()
        self._data_timeout = None
        reply = make_reply()
        fixed_length = self._request is not None and self._request.fixed_length is not None
        self._request = None
        self._data = bytearray()
        slow = self._faults.take_slow_answer() if fixed_length else None
        if slow is not None:
            # Busy until the answer is out: input is lost, as before data mode.
            self.mode = LineMode.AWAIT_DATA
            epoch = self._epoch
            self._later(slow, lambda: self._write_reply(reply) if epoch == self._epoch else None)
            return
        self._write_reply(reply)

    def _data_timed_out(self, epoch: int) -> None:
        if epoch != self._epoch or self.mode is not LineMode.DATA:
            return
        self._stats.data_mode_timeouts += 1
        _log.info("data mode timed out with {n} byte(s)", n=len(self._data))
        self._finish_data(lambda: Reply.fail(CmeError.UNKNOWN))

    # -- output ----------------------------------------------------------------------
    def emit_urc(self, line: bytes) -> None:
        """An unsolicited line: now if the line is free, else after the response."""
        if self.hung:
            return
        if self.mode is LineMode.COMMAND and self._faults.urc_release is None:
            self._output.write(frame(line))
        else:
            self._held_urcs.append(line)

    def write_raw(self, data: bytes) -> None:
        """Bytes outside any framing (fault injection: line noise)."""
        self._output.write(data)

    def _write_reply(self, reply: Reply) -> None:
        lines = [frame(line) for line in reply.lines]
        release = self._faults.urc_release if self._held_urcs else None
        if release is not None:
            held = [frame(line) for line in self._held_urcs]
            self._held_urcs.clear()
            self._faults.urc_release = None
            split = 1 if release is UrcRelease.AFTER_FIRST_LINE and lines else len(lines)
            lines[split:split] = held
        self._output.write(b"".join(lines) + frame(self._final_result(reply.error)))
        if reply.error is not None:
            self._stats.errors += 1
        self.mode = LineMode.COMMAND
        if self._faults.urc_release is None and self._held_urcs:
            held_urcs, self._held_urcs = self._held_urcs, []
            self._output.write(b"".join(frame(line) for line in held_urcs))
        if reply.then is not None:
            reply.then()

    def _final_result(self, error: CmeError | None) -> bytes:
        if error is None:
            return b"OK"
        if self.terminal.cmee == 0:
            return b"ERROR"
        if self.terminal.cmee == 1:
            return b"+CME ERROR: %d" % error
        return b"+CME ERROR: " + CME_TEXT[error].encode("ascii")

    def _later(self, delay: float, action: Callable[[], None]) -> IDelayedCall:
        self._calls = [c for c in self._calls if c.active()]
        call = self._clock.callLater(delay, action)
        self._calls.append(call)
        return call


def _apply_backspaces(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch == "\b":
            if out:
                out.pop()
        else:
            out.append(ch)
    return "".join(out)
