"""A real pty whose far end the test scripts byte by byte.

For engine edge cases the emulator has no reason to produce (a response arriving after
its command timed out, say). The serial side is a real pty opened by Twisted's SerialPort.
"""

from __future__ import annotations

import contextlib
import os
import tty
from collections.abc import Callable

from twisted.internet import defer, reactor
from twisted.internet.abstract import FileDescriptor


class _MasterReader(FileDescriptor):
    def __init__(self, fd: int, on_data: Callable[[bytes], None]) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._on_data = on_data

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except OSError:
            return None
        if data:
            self._on_data(data)
        return None


class ScriptedPty:
    """Test side of a pty pair: ``path`` is what the code under test opens."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.received = bytearray()
        self._waiters: list[tuple[bytes, defer.Deferred[None]]] = []
        self._reader = _MasterReader(self.master, self._on_data)
        self._reader.startReading()

    def _on_data(self, data: bytes) -> None:
        self.received += data
        for item in list(self._waiters):
            needle, d = item
            if needle in self.received:
                self._waiters.remove(item)
                d.callback(None)

    def wait_for(self, needle: bytes, timeout: float = 5.0) -> defer.Deferred[None]:
        """Fires once the code under test has written ``needle`` (since the last clear)."""
        d: defer.Deferred[None] = defer.Deferred()
        if needle in self.received:
            d.callback(None)
            return d
        self._waiters.append((needle, d))
        d.addTimeout(timeout, reactor)
        return d

    def take(self) -> bytes:
        data = bytes(self.received)
        self.received.clear()
        return data

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        self._reader.stopReading()
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)
