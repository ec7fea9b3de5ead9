"""The self-test's own small synchronous AT driver over the serial port.

Why not the daemon's engine: the self-test must do what the daemon never does and the
engine is built to prevent — write a second ``AT+QSSLSEND`` before the first one's
result, write data at a chosen time after ``>``, send malformed commands, and look at
the raw bytes (is recv data quoted?). A blocking, one-command-at-a-time driver over
pyserial says exactly what it sends and when, needs no reactor, and does not move when
the engine is rewritten. What it shares with the daemon is the dialect: module bytes
are decoded by :class:`bridged.core.at_codec.ATDecoder`, and every byte either way goes
through :class:`bridged.core.serial_trace.TraceRecorder` into the transcript, so a
self-test transcript can be replayed like any field trace.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bridged.core.at_codec import (
    URC_TYPES,
    ATDecoder,
    DataFormat,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    Prompt,
    ProtocolError,
    Urc,
)
from bridged.core.module_profile import BC26, ModuleProfile
from bridged.core.serial_trace import TraceRecorder


class PortBusy(Exception):
    """Another process has the serial device open."""


class BinaryPort(Protocol):
    """What the driver needs of a pyserial ``Serial``."""

    def read(self, size: int = 1) -> bytes: ...

    @property
    def in_waiting(self) -> int: ...

    def write(self, data: bytes, /) -> int | None: ...

    def close(self) -> None: ...


def port_holders(device: str) -> list[tuple[int, str]]:
    """(pid, command line) of other processes that have ``device`` open (the pty's own
    master side, an emulator, excepted): :func:`bridged.shell.serial_access.open_by`."""
    from bridged.shell.serial_access import open_by

    holders = open_by(os.path.realpath(device), exclude=os.getpid())
    return [(h.pid, h.command or "?") for h in holders]


@dataclass
class Response:
    """What came back for one command: info lines and the final result (None: none came
    within the time), and whether the command line was echoed."""

    lines: list[str] = field(default_factory=list)
    final: FinalResult | None = None
    echoed: bool = False
    prompted: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.final is not None and self.final.ok

    @property
    def outcome(self) -> str:
        return "no answer" if self.final is None else self.final.text


class Line:
    """One command at a time; URCs are queued in :attr:`urcs`; everything recorded."""

    def __init__(
        self,
        port: BinaryPort,
        write_trace: Callable[[list[str]], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        module: ModuleProfile = BC26,
    ) -> None:
        self._port = port
        self._write_trace = write_trace
        self._clock = clock
        self._wall = wall
        self.recorder = TraceRecorder(keep_payload=True)
        self.decoder = ATDecoder(profile=module)
        self.urcs: deque[Urc] = deque()
        self.errors: list[ProtocolError] = []
        #: Every byte the module sent, for questions the codec does not answer.
        self.received = bytearray()
        self._events: deque[Event] = deque()

    # -- raw I/O -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._write_trace(self.recorder.host_wrote(data, self._wall()))
        self._port.write(data)

    def note(self, text: str) -> None:
        self._write_trace(self.recorder.note(text, self._wall()))

    def _read_some(self) -> None:
        # One byte (waiting up to the port's timeout), then whatever else is there.
        data = self._port.read(1)
        if not data:
            return
        waiting = self._port.in_waiting
        if waiting:
            data += self._port.read(waiting)
        self._write_trace(self.recorder.module_sent(data, self._wall()))
        self.received += data
        for event in self.decoder.feed(data):
            if isinstance(event, URC_TYPES):
                self.urcs.append(event)  # type: ignore[arg-type]
            elif isinstance(event, ProtocolError):
                self.errors.append(event)
            else:
                self._events.append(event)

    def _next_event(self, deadline: float) -> Event | None:
        while not self._events:
            if self._clock() >= deadline:
                return None
            self._read_some()
        return self._events.popleft()

    @property
    def module(self) -> ModuleProfile:
        """The module this line speaks to: its ids and limits are the decoder's."""
        return self.decoder.profile

    def set_module(self, module: ModuleProfile) -> None:
        self.decoder.set_profile(module)

    def socket_ids(self, connect_id: int) -> str:
        """``<contextID>,<connectID>``: how the module's commands name a socket."""
        return f"{self.module.context_id},{connect_id}"

    def set_recv_format(self, connect_id: int, hex_format: bool) -> None:
        self.decoder.set_recv_format(connect_id, DataFormat.HEX if hex_format else DataFormat.TEXT)

    # -- dialogue ------------------------------------------------------------------
    def drain(self, quiet: float = 0.2, limit: float = 3.0) -> None:
        """Read until nothing came for ``quiet`` seconds; responses are dropped."""
        end = self._clock() + limit
        while self._clock() < end:
            before = len(self.received)
            stop = self._clock() + quiet
            while self._clock() < stop:
                self._read_some()
            if len(self.received) == before:
                break
        self._events.clear()

    def command(self, line: str, timeout: float = 5.0) -> Response:
        self._events.clear()
        start = self._clock()
        self.write(line.encode("ascii") + b"\r")
        return self._collect(start, start + timeout)

    def data_command(
        self, line: str, data: bytes, prompt_wait: float, timeout: float = 5.0
    ) -> Response:
        """A command answered by ``>``: wait ``prompt_wait`` after it, write ``data``,
        then collect the answer. No ``>`` (an error instead): ``data`` is not sent."""
        self._events.clear()
        start = self._clock()
        self.write(line.encode("ascii") + b"\r")
        asked = self._collect(start, start + timeout, until_prompt=True)
        if not asked.prompted:  # refused, or no answer
            return asked
        if prompt_wait > 0:
            time.sleep(prompt_wait)
        self.write(data)
        rest = self._collect(self._clock(), self._clock() + timeout)
        rest.echoed, rest.prompted = asked.echoed, True
        rest.lines[:0] = asked.lines
        rest.seconds = self._clock() - start
        return rest

    def finish_data(self, response: Response, filler_length: int, timeout: float = 5.0) -> Response:
        """After ``data_command`` got no answer (the module lost bytes and still waits
        for data), complete its data with filler and collect what follows."""
        self.write(b"0" * filler_length)
        late = self._collect(self._clock(), self._clock() + timeout)
        self.resync()
        return late

    def resync(self) -> bool:
        """``AT`` until ``OK`` (a stray line end first); True once the module answers."""
        for _ in range(4):
            self.write(b"\r")
            self.drain(quiet=0.1, limit=1.0)
            if self.command("AT", timeout=1.5).ok:
                return True
        return False

    def wait_urc(self, wanted: Callable[[Urc], bool], timeout: float) -> Urc | None:
        """The first queued or arriving URC ``wanted`` accepts (others stay queued)."""
        deadline = self._clock() + timeout
        while True:
            for urc in list(self.urcs):
                if wanted(urc):
                    self.urcs.remove(urc)
                    return urc
            if self._clock() >= deadline:
                return None
            self._read_some()

    def pump(self, seconds: float) -> None:
        """Read for ``seconds`` (URCs queue up)."""
        end = self._clock() + seconds
        while self._clock() < end:
            self._read_some()

    def _collect(self, start: float, deadline: float, until_prompt: bool = False) -> Response:
        """The answer up to its final result (or ``>``, with ``until_prompt``), or what
        came by ``deadline``."""
        response = Response()
        while True:
            event = self._next_event(deadline)
            if event is None:
                break
            if isinstance(event, Echo):
                response.echoed = True
            elif isinstance(event, InfoLine):
                response.lines.append(event.text)
            elif isinstance(event, Prompt):
                response.prompted = True
                if until_prompt:
                    break
            elif isinstance(event, FinalResult):
                response.final = event
                break
        response.seconds = self._clock() - start
        return response
