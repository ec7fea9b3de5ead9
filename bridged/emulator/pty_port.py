"""The emulator's serial line: a raw pty whose slave is reachable at a stable symlink.

Input from the host is consumed at the line rate (see :class:`_MasterReader`); output is
paced by :class:`~bridged.emulator.paced_writer.PacedWriter`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tty
from collections.abc import Callable
from pathlib import Path

from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from bridged.emulator.paced_writer import EARLY, MIN_TICK

_log = Logger()


#: Bytes the line holds between the host's pty and the module: about 20 ms of line time
#: (a UART FIFO, in effect). Beyond it the host's writes wait in the kernel's pty buffer,
#: then block, as on a real serial port.
_WIRE_SECONDS = 0.02
_WIRE_MIN_BYTES = 64


@implementer(IReadDescriptor)
class _MasterReader:
    """Feeds what the host writes to the slave into ``on_input`` at the line rate.

    Same timing model as :class:`~bridged.emulator.paced_writer.PacedWriter`, the other
    way: a byte reaches the module when its last bit would have arrived (8N1: ``10 /
    baud`` s a byte). Only a wire's worth is read from the pty ahead of the module; the
    rest stays in the kernel, so a host that writes faster than the line is held back.
    """

    def __init__(
        self,
        fd: int,
        on_input: Callable[[bytes], None],
        reactor: IReactorFDSet,
        clock: IReactorTime,
        baud: int,
    ) -> None:
        self._fd: int | None = fd
        self._on_input = on_input
        self._reactor = reactor
        self._clock = clock
        self._wire = bytearray()  # read from the pty, not yet arrived at the module
        self._done_at = clock.seconds()  # when the last delivered byte arrived
        self._tick: IDelayedCall | None = None
        self.set_baud(baud)

    def set_baud(self, baud: int) -> None:
        self._rate = max(1.0, baud / 10.0)
        self._window = max(_WIRE_MIN_BYTES, int(self._rate * _WIRE_SECONDS))

    def start(self) -> None:
        self._reactor.addReader(self)

    def stop(self) -> None:
        """Stop reading; bytes on the wire are lost (the line hung up)."""
        self._reactor.removeReader(self)
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        self._wire.clear()
        self._fd = None

    def fileno(self) -> int:
        return -1 if self._fd is None else self._fd

    def logPrefix(self) -> str:
        return "emulator-pty"

    def doRead(self) -> None:
        # Only called while the wire is idle: these bytes start crossing it now.
        self._done_at = max(self._done_at, self._clock.seconds())
        if self._fill():
            self._reactor.removeReader(self)
            self._schedule()

    def connectionLost(self, reason: Failure) -> None:
        pass

    def _fill(self) -> bool:
        """Read from the pty what fits on the wire; whether the wire holds anything."""
        room = self._window - len(self._wire)
        if room > 0 and self._fd is not None:
            try:
                data = os.read(self._fd, room)
            except BlockingIOError:
                data = b""
            except OSError as exc:
                # EIO: no slave open. We hold the slave ourselves, so this is unexpected.
                if exc.errno != errno.EIO:
                    _log.warn("pty read failed: {err}", err=exc)
                data = b""
            self._wire += data
        return bool(self._wire)

    def _schedule(self) -> None:
        now = self._clock.seconds()
        last = self._done_at + len(self._wire) / self._rate
        first = self._done_at + 1 / self._rate
        delay = min(last, max(now + MIN_TICK, first)) - now - EARLY
        self._tick = self._clock.callLater(max(0.0, delay), self._deliver)

    def _deliver(self) -> None:
        self._tick = None
        now = self._clock.seconds()
        count = min(len(self._wire), int((now + EARLY - self._done_at) * self._rate + 1e-6))
        if count > 0:
            data = bytes(self._wire[:count])
            del self._wire[:count]
            self._done_at += count / self._rate
            self._on_input(data)
            if self._fd is None:  # the input hung the line up (or stopped the emulator)
                return
        # What the host wrote meanwhile follows right behind on a busy wire; an empty wire
        # waits for the host (doRead) and starts afresh.
        if self._wire:
            self._fill()
            self._schedule()
        else:
            self._reactor.addReader(self)


class PtyPort:
    """One pty at a time, its slave at ``link_path``.

    The emulator keeps its own slave fd open so the host may close and reopen the
    device freely without the master seeing a hang-up; :meth:`close` is the hang-up.
    """

    def __init__(
        self,
        reactor: IReactorFDSet,
        link_path: Path,
        on_input: Callable[[bytes], None],
        baud: int = 115200,
    ) -> None:
        self._reactor = reactor
        self.link_path = link_path
        self._on_input = on_input
        self._baud = baud
        self._master: int | None = None
        self._slave: int | None = None
        self._reader: _MasterReader | None = None
        self.slave_name: str | None = None

    @property
    def master_fd(self) -> int | None:
        return self._master

    def open(self) -> str:
        """Make a new pty, point the symlink at it and start reading; its slave name."""
        if self.link_path.exists() and not self.link_path.is_symlink():
            raise FileExistsError(f"{self.link_path} exists and is not a symlink; not replacing it")
        master, slave = os.openpty()
        # Raw: no line discipline may touch 0x1A, 0x1B, CR, 0x03 or echo anything.
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.slave_name = os.ttyname(slave)
        self._point_link(self.slave_name)
        clock: IReactorTime = self._reactor  # type: ignore[assignment]
        self._reader = _MasterReader(master, self._on_input, self._reactor, clock, self._baud)
        self._reader.start()
        _log.info("emulator pty {slave} at {link}", slave=self.slave_name, link=self.link_path)
        return self.slave_name

    def close(self, remove_link: bool = True) -> None:
        """Hang up: the host's fd sees EOF/EIO. Idempotent."""
        if self._reader is not None:
            self._reader.stop()
            self._reader = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if remove_link:
            self._remove_link()

    def set_baud(self, baud: int) -> None:
        """Consume input at this rate from now on (and on every later pty)."""
        self._baud = baud
        if self._reader is not None:
            self._reader.set_baud(baud)

    def _point_link(self, target: str) -> None:
        # symlink + rename: the path always names the old pty or the new one, never none.
        self.link_path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.link_path.with_name(f".{self.link_path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        os.symlink(target, temp)
        os.replace(temp, self.link_path)

    def _remove_link(self) -> None:
        # Only our own link: another emulator may have taken the path since.
        with contextlib.suppress(OSError):
            if self.slave_name and os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()
