"""The host's end of a serial line, for tests running in the reactor.

Opens a tty path raw and non-blocking, collects what arrives and lets a test wait for
a pattern with a deadline; never blocks the reactor (the emulator shares it).

    host = PtyHost(path); host.open()
    response = await host.command("AT+CSQ")          # up to OK / ERROR / +CME ERROR
    match = await host.expect(rb'\\+QSSLOPEN: 1,0,(-?\\d+)\\r\\n', timeout=10)
    host.close()
"""

from __future__ import annotations

import errno
import os
import re
import termios
import tty
from dataclasses import dataclass
from typing import Any

from twisted.internet import reactor as _default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor, IWriteDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

FINAL_RESULT = re.compile(rb"\r\n(OK|ERROR|\+CME ERROR: [^\r\n]*)\r\n")


@dataclass(frozen=True)
class Seen:
    """What :meth:`PtyHost.expect` found: the match, and all bytes from where the
    previous expect stopped up to the end of the match."""

    match: re.Match[bytes]
    text: bytes

    def group(self, index: int = 0) -> bytes:
        return self.match.group(index)


class LineClosed(Exception):
    """The device hung up (EOF / EIO) while a test waited for data."""


@implementer(IReadDescriptor, IWriteDescriptor)
class PtyHost:
    def __init__(self, path: str | os.PathLike[str], reactor: Any = None) -> None:
        self.path = os.fspath(path)
        self._reactor = reactor or _default_reactor
        self._fd: int | None = None
        #: Everything received since open; ``consumed`` marks what expect() has used.
        self.received = bytearray()
        self.consumed = 0
        self.hung_up = False
        self._out = bytearray()
        self._waiters: list[tuple[re.Pattern[bytes], Deferred[Seen], Any]] = []

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # TCSANOW: keep what is already waiting (setraw's default TCSAFLUSH drops it).
        tty.setraw(fd, termios.TCSANOW)
        self._fd = fd
        self.hung_up = False
        self._reactor.addReader(self)

    def close(self) -> None:
        if self._fd is None:
            return
        self._reactor.removeReader(self)
        self._reactor.removeWriter(self)
        os.close(self._fd)
        self._fd = None

    # -- I/O ----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue ``data``; written as fast as the pty takes it."""
        self._out += data
        self._reactor.addWriter(self)

    def command(self, line: str | bytes, timeout: float = 5.0) -> Deferred[bytes]:
        """Send ``line`` + CR; fire with all bytes up to the final result line."""
        raw = line.encode("latin-1") if isinstance(line, str) else line
        self.write(raw + b"\r")
        return self.expect(FINAL_RESULT, timeout).addCallback(lambda seen: seen.text)

    def expect(self, pattern: bytes | re.Pattern[bytes], timeout: float = 5.0) -> Deferred[Seen]:
        """Fire with the first match after what earlier expects consumed; consume it."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        d: Deferred[Seen] = Deferred()
        timer = self._reactor.callLater(timeout, self._expect_timed_out, regex, d, timeout)
        self._waiters.append((regex, d, timer))
        self._check_waiters()
        return d

    def unread(self) -> bytes:
        """Received but not yet consumed by an expect."""
        return bytes(self.received[self.consumed :])

    def skip_all(self) -> None:
        """Mark everything received so far as consumed."""
        self.consumed = len(self.received)

    # -- reactor interfaces -------------------------------------------------------------
    def fileno(self) -> int:
        return -1 if self._fd is None else self._fd

    def logPrefix(self) -> str:
        return "pty-host"

    def doRead(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            data = b""
        if not data:  # the other end hung up
            self.hung_up = True
            self.close()
            self._fail_waiters(LineClosed(self.path))
            return
        self.received += data
        self._check_waiters()

    def doWrite(self) -> None:
        assert self._fd is not None
        try:
            written = os.write(self._fd, self._out)
        except BlockingIOError:
            return
        del self._out[:written]
        if not self._out:
            self._reactor.removeWriter(self)

    def connectionLost(self, reason: Failure) -> None:
        pass

    # -- waiting ------------------------------------------------------------------------
    def _check_waiters(self) -> None:
        progress = True
        while progress:
            progress = False
            for entry in list(self._waiters):
                regex, d, timer = entry
                start = self.consumed
                match = regex.search(bytes(self.received), start)
                if match is None:
                    continue
                self._waiters.remove(entry)
                timer.cancel()
                self.consumed = match.end()
                d.callback(Seen(match, bytes(self.received[start : match.end()])))
                progress = True
                break

    def _expect_timed_out(
        self, regex: re.Pattern[bytes], d: Deferred[Seen], timeout: float
    ) -> None:
        self._waiters = [w for w in self._waiters if w[1] is not d]
        d.errback(
            TimeoutError(
                f"{regex.pattern!r} not seen within {timeout}s; unread: {self.unread()[-400:]!r}"
            )
        )

    def _fail_waiters(self, exc: Exception) -> None:
        waiters, self._waiters = self._waiters, []
        for _, d, timer in waiters:
            timer.cancel()
            d.errback(exc)
