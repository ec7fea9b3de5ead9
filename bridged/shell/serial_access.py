"""Taking the serial device for bridged alone, and naming whoever has it instead.

A second process talking AT on the module's port (ModemManager probing a new tty, a
forgotten minicom, a second bridged) steals answers. Three locks, because each keeps out a
different kind of opener (docs/operations.md, "Exclusive access"):

- a UUCP lock file, ``/run/lock/LCK..<name>`` with our pid: what minicom, cu and picocom
  check before they open, also when run as root; and it names *their* holder to us;
- ``flock(LOCK_EX)`` (pyserial's ``exclusive=True``): another bridged, picocom, pyserial
  tools; the kernel drops it when the holder dies, so it is never stale;
- ``TIOCEXCL``: the kernel refuses every later ``open()`` of the tty with EBUSY, unless
  the opener is root (screen, cat, a script: programs that check nothing).

ModemManager runs as root and honours none of these: udev's ``ID_MM_DEVICE_IGNORE`` keeps
it off the port (deploy/udev). Before opening, processes that already have the device
open are looked up in ``/proc/*/fd`` (visible ones: same user, or all as root); the
process holding a pty's master side (the emulator) is the device's other end, not a rival.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import termios
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import serial
from twisted.internet.serialport import SerialPort
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger(namespace="bridged.serial")

LOCK_DIR = Path("/run/lock")
MAX_COMMAND_LINE = 200  # characters of a holder's command line shown
_BUSY_ERRNOS = {errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK}  # TIOCEXCL, flock


@dataclass(frozen=True, slots=True)
class Holder:
    """A process that has the device (or its lock)."""

    pid: int
    command: str | None  # None when /proc does not show it to us
    how: str  # "has it open", "holds /run/lock/LCK..ttyUSB0"

    def __str__(self) -> str:
        command = f" ({self.command})" if self.command else ""
        return f"pid {self.pid}{command}, which {self.how}"


class DeviceBusy(OSError):
    """Another process has the serial device; the message names it when it can."""

    def __init__(self, device: str, holders: Iterable[Holder], detail: str = "") -> None:
        self.holders = tuple(holders)
        if self.holders:
            text = "in use by " + "; ".join(str(h) for h in self.holders)
        else:
            text = f"in use by another process ({detail or 'not visible to bridged'})"
        super().__init__(errno.EBUSY, text)
        self.device = device

    def __str__(self) -> str:
        return str(self.strerror)


# --------------------------------------------------------------------------- /proc


def command_line(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The process's command line, arguments separated by spaces; None if not visible."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    # One log line: arguments may hold newlines (python -c '...'); long ones are cut.
    text = " ".join(raw.decode("utf-8", "replace").replace("\0", " ").split())
    if len(text) > MAX_COMMAND_LINE:
        text = text[: MAX_COMMAND_LINE - 3] + "..."
    return text or None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def _pty_index(device: str) -> int | None:
    parent, _, name = device.rpartition("/")
    return int(name) if parent == "/dev/pts" and name.isdigit() else None


def _holds_pty_master(pid_dir: Path, fd: str, index: int) -> bool:
    """Whether this fd is the master of pty ``index`` (fdinfo says ``tty-index:``)."""
    try:
        for line in (pid_dir / "fdinfo" / fd).read_text().splitlines():
            if line.startswith("tty-index:"):
                return int(line.split(":", 1)[1]) == index
    except (OSError, ValueError):
        pass
    return False


def open_by(device: str, proc: Path = Path("/proc"), exclude: int | None = None) -> list[Holder]:
    """Processes that have ``device`` (a real path, symlinks resolved) open, from
    ``/proc/*/fd``; the pty master's holder and ``exclude`` (ourselves) left out."""
    pty = _pty_index(device)
    holders: dict[int, Holder] = {}
    masters: set[int] = set()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        pid = int(entry.name)
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's (not visible without root)
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target == device:
                holders.setdefault(pid, Holder(pid, command_line(pid, proc), "has it open"))
            elif (
                pty is not None
                and target in ("/dev/ptmx", "/dev/pts/ptmx")
                and _holds_pty_master(entry, fd.name, pty)
            ):
                masters.add(pid)
    return [h for pid, h in sorted(holders.items()) if pid not in masters]


# --------------------------------------------------------------------------- UUCP lock


def lock_names(device: str) -> list[str]:
    """``LCK..<name>`` for the device (symlinks resolved) and, when the configured path is
    a name directly in /dev (``/dev/bc26``), for that name too: minicom locks the basename
    of whatever path it was given. A link elsewhere (``/dev/serial/by-id/...``, a test's
    temporary directory) is no device name, and its basename need not be unique."""
    paths = [os.path.realpath(device)]
    if os.path.dirname(os.path.abspath(device)) == "/dev":
        paths.insert(0, device)
    names: list[str] = []
    for path in paths:
        name = "LCK.." + os.path.basename(path)
        if name not in names:
            names.append(name)
    return names


def read_lock_pid(path: Path) -> int | None:
    """The pid in a UUCP lock file: ASCII (``%10d\\n``, HDB style) or a binary int."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    text = raw.strip()
    if text.isdigit():
        return int(text)
    if len(raw) == 4:  # the old binary format
        return int.from_bytes(raw, "little")
    return None


class UucpLock:
    """Lock files in ``lock_dir`` holding our pid; stale ones (dead pid) are replaced."""

    def __init__(self, device: str, lock_dir: Path = LOCK_DIR) -> None:
        self.paths = [lock_dir / name for name in lock_names(device)]
        self.device = device
        self.taken: list[Path] = []

    def acquire(self) -> None:
        """Take every lock file, or raise :class:`DeviceBusy` naming the live holder.

        A lock directory we may not write (no /run/lock in the sandbox) is not fatal: the
        other two locks still hold; minicom just won't see ours.
        """
        me = os.getpid()
        for path in self.paths:
            for _attempt in range(2):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    pid = read_lock_pid(path)
                    if pid is not None and pid != me and pid_alive(pid):
                        self.release()
                        holder = Holder(pid, command_line(pid), f"holds {path}")
                        raise DeviceBusy(self.device, [holder]) from None
                    try:
                        path.unlink()  # stale: its owner is gone (or it was ours)
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        log.debug("stale {path} kept: {error}", path=path, error=e.strerror)
                        break
                    if pid != me:
                        log.info("removed stale lock file {path} (pid {pid})", path=path, pid=pid)
                    continue
                except OSError as e:
                    log.debug("no lock file {path}: {error}", path=path, error=e.strerror)
                    break
                with os.fdopen(fd, "w") as f:
                    f.write(f"{me:10d}\n")
                self.taken.append(path)
                break

    def release(self) -> None:
        for path in self.taken:
            if read_lock_pid(path) == os.getpid():
                with contextlib.suppress(OSError):
                    path.unlink()
        self.taken = []


# --------------------------------------------------------------------------- the port


class _ExclusiveSerial(serial.Serial):
    """pyserial's port with ``flock`` (``exclusive=True``), then ``TIOCEXCL``."""

    def __init__(self, port: str, **kwargs: Any) -> None:
        super().__init__(port, exclusive=True, **kwargs)

    def open(self) -> None:
        super().open()
        if self.fd is None:
            return
        try:
            fcntl.ioctl(self.fd, termios.TIOCEXCL)
        except OSError as e:  # not a tty: flock still holds
            log.debug("TIOCEXCL on {port}: {error}", port=self.port, error=e.strerror)


class ExclusiveSerialPort(SerialPort):
    """Twisted's serial transport on a device opened exclusively (see the module doc).

    Raises :class:`DeviceBusy` (naming the holder) when another process has the device.
    """

    _serialFactory = _ExclusiveSerial  # type: ignore[assignment]  # (mypy: ctor kwargs)

    def __init__(
        self,
        protocol: Any,
        device: str,
        reactor: Any,
        baudrate: int,
        lock_dir: Path = LOCK_DIR,
    ) -> None:
        self._lock = UucpLock(device, lock_dir)
        self._lock.acquire()
        try:
            real = os.path.realpath(device)
            rivals = open_by(real, exclude=os.getpid())
            if rivals:
                raise DeviceBusy(device, rivals)
            try:
                super().__init__(protocol, device, reactor, baudrate=baudrate)  # type: ignore[no-untyped-call]
            except serial.SerialException as e:
                if e.errno in _BUSY_ERRNOS:
                    raise DeviceBusy(device, open_by(real, exclude=os.getpid()), str(e)) from e
                raise
        except BaseException:
            self._lock.release()
            raise

    def connectionLost(self, reason: Failure) -> None:
        # A pty keeps TIOCEXCL after its last close while the master lives (the emulator):
        # clear it, or our own reopen, as non-root, would get EBUSY.
        fd = self._serial.fd
        if fd is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(fd, termios.TIOCNXCL)
        try:
            super().connectionLost(reason)  # type: ignore[no-untyped-call]
        finally:
            self._lock.release()


__all__ = [
    "DeviceBusy",
    "ExclusiveSerialPort",
    "Holder",
    "UucpLock",
    "command_line",
    "lock_names",
    "open_by",
    "read_lock_pid",
]
