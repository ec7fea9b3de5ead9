"""The serial trace's I/O: a size-bounded, rotated trace file and a protocol wrapper that
shows it every byte crossing the serial port (the recording itself is the pure
:mod:`bridged.core.serial_trace`).

The modem wraps its protocol with :func:`tap` where it opens the port; nothing else in
the daemon knows about traces.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.internet.interfaces import IProtocol, ITransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.serial_trace import HEADER, TraceRecorder

log = Logger(namespace="bridged.trace")

DEFAULT_MAX_BYTES = 10_000_000


@dataclass(frozen=True, slots=True)
class SerialTraceOptions:
    path: Path
    #: False: payload bytes are replaced by their length.
    keep_payload: bool = True
    #: The file is rotated to ``<path>.1`` when it would grow past this.
    max_bytes: int = DEFAULT_MAX_BYTES


class TraceFile:
    """Appends trace lines to ``path``; at ``max_bytes`` moves it to ``path.1`` (one
    older file kept, so the trace takes at most twice ``max_bytes`` on disk)."""

    def __init__(self, path: Path, max_bytes: int, header: str = "") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._header = header
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._size = self._file.tell()
        if self._size == 0:
            self._write_header()

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        text = "".join(lines)
        if self._size + len(text) > self.max_bytes and self._size > 0:
            self._rotate()
        self._file.write(text)
        self._file.flush()
        self._size += len(text)

    def close(self) -> None:
        self._file.close()

    def _rotate(self) -> None:
        self._file.close()
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        self._size = 0
        self._write_header()

    def _write_header(self) -> None:
        head = f"{HEADER}\n" + (f"# {self._header}\n" if self._header else "")
        self._file.write(head)
        self._size += len(head)


class _TracedTransport:
    """The port's transport, with writes recorded first."""

    def __init__(self, transport: ITransport, on_write: Callable[[bytes], None]) -> None:
        self._transport = transport
        self._on_write = on_write

    def write(self, data: bytes) -> None:
        self._on_write(data)
        self._transport.write(data)

    def writeSequence(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TracingProtocol(Protocol):
    """Wraps the serial protocol: every byte each way goes to the trace, then on.

    The trace file is opened when the port is (a port that fails to open leaves no file
    handle behind) and closed with it; a file that cannot be opened means no trace for
    this port opening, logged, never a port that does not work."""

    def __init__(
        self,
        wrapped: IProtocol,
        options: SerialTraceOptions,
        device: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.wrapped = wrapped
        self._options = options
        self._device = device
        self._recorder = TraceRecorder(keep_payload=options.keep_payload)
        self._out: TraceFile | None = None
        self._clock = clock

    def makeConnection(self, transport: ITransport) -> None:
        self.transport = transport
        try:
            self._out = TraceFile(
                self._options.path, self._options.max_bytes, f"device {self._device}"
            )
        except OSError as exc:
            log.error(
                "cannot open serial trace {path}: {error}", path=self._options.path, error=exc
            )
        self._record(self._recorder.note("port opened", self._clock()))
        self.wrapped.makeConnection(_TracedTransport(transport, self._host_wrote))  # type: ignore[arg-type]

    def dataReceived(self, data: bytes) -> None:
        self._record(self._recorder.module_sent(data, self._clock()))
        self.wrapped.dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._record(self._recorder.note("port closed", self._clock()))
        if self._out is not None:
            self._out.close()
            self._out = None
        self.wrapped.connectionLost(reason)  # type: ignore[arg-type]

    def _host_wrote(self, data: bytes) -> None:
        self._record(self._recorder.host_wrote(data, self._clock()))

    def _record(self, lines: list[str]) -> None:
        if self._out is None:
            return
        try:
            self._out.write(lines)
        except (OSError, ValueError) as exc:  # a full disk must not stop the bridge
            log.warn("serial trace not written: {error}", error=exc)


def tap(protocol: IProtocol, options: SerialTraceOptions | None, device: str = "") -> IProtocol:
    """``protocol`` itself without a trace, else wrapped so the trace sees every byte
    (appended to the file at each port opening)."""
    if options is None:
        return protocol
    return TracingProtocol(protocol, options, device)
