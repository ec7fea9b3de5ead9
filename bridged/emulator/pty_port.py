"""The emulator's serial line: a raw pty whose slave is reachable at a stable symlink."""

from __future__ import annotations

import contextlib
import errno
import os
import tty
from collections.abc import Callable
from pathlib import Path

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

_log = Logger()


@implementer(IReadDescriptor)
class _MasterReader:
    """Feeds what the host writes to the slave into ``on_input``; never blocks."""

    def __init__(self, fd: int, on_input: Callable[[bytes], None]) -> None:
        self._fd = fd
        self._on_input = on_input

    def fileno(self) -> int:
        return self._fd

    def logPrefix(self) -> str:
        return "emulator-pty"

    def doRead(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            # EIO: no slave open. We hold the slave ourselves, so this is unexpected.
            if exc.errno != errno.EIO:
                _log.warn("pty read failed: {err}", err=exc)
            return
        if data:
            self._on_input(data)

    def connectionLost(self, reason: Failure) -> None:
        pass


class PtyPort:
    """One pty at a time, its slave at ``link_path``.

    The emulator keeps its own slave fd open so the host may close and reopen the
    device freely without the master seeing a hang-up; :meth:`close` is the hang-up.
    """

    def __init__(
        self, reactor: IReactorFDSet, link_path: Path, on_input: Callable[[bytes], None]
    ) -> None:
        self._reactor = reactor
        self.link_path = link_path
        self._on_input = on_input
        self._master: int | None = None
        self._slave: int | None = None
        self._reader: _MasterReader | None = None
        self.slave_name: str | None = None

    @property
    def master_fd(self) -> int | None:
        return self._master

    @property
    def is_open(self) -> bool:
        return self._master is not None

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
        self._reader = _MasterReader(master, self._on_input)
        self._reactor.addReader(self._reader)
        _log.info("emulator pty {slave} at {link}", slave=self.slave_name, link=self.link_path)
        return self.slave_name

    def close(self, remove_link: bool = True) -> None:
        """Hang up: the host's fd sees EOF/EIO. Idempotent."""
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            self._reader = None
        for fd in (self._master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = None
        if remove_link:
            self._remove_link()

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
