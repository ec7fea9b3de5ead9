"""Output to the host at the serial line's rate (8N1: baud / 10 bytes per second)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger()

#: Ticks are at least this far apart; keeps the timer rate sane at high baud rates.
_MIN_TICK = 0.004
#: Output kept while the host does not read; past it the oldest bytes are lost.
DEFAULT_MAX_BUFFER = 1 << 20


class PacedWriter:
    """A token bucket in front of a non-blocking fd.

    ``write`` never blocks; ``when_drained`` fires once everything queued so far has
    been handed to the fd, i.e. is "on the wire".
    """

    def __init__(
        self,
        clock: IReactorTime,
        baud: int,
        on_written: Callable[[int], None],
        on_dropped: Callable[[int], None],
        max_buffer: int = DEFAULT_MAX_BUFFER,
    ) -> None:
        self._clock = clock
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._max_buffer = max_buffer
        self._fd: int | None = None
        self._buffer = bytearray()
        self._tokens = 0.0
        self._last_refill = clock.seconds()
        self._tick: IDelayedCall | None = None
        self._drain_waiters: list[Deferred[None]] = []
        # Byte offsets in the output stream: queued so far, handed to the fd so far, and
        # waiters for "everything up to offset N is on the wire".
        self._queued_total = 0
        self._written_total = 0
        self._mark_waiters: list[tuple[int, Deferred[None]]] = []
        self.set_baud(baud)

    def set_baud(self, baud: int) -> None:
        self._rate = max(1.0, baud / 10.0)
        # Burst: about 10 ms of line time, so pacing granularity stays fine.
        self._burst = max(1.0, self._rate * 0.01)

    def attach(self, fd: int | None) -> None:
        """Write to ``fd`` from now on; None: the line is down and output is lost."""
        self._fd = fd
        if fd is None:
            self.clear()
        else:
            self._schedule(0.0)

    def write(self, data: bytes) -> None:
        if self._fd is None:
            self._on_dropped(len(data))
            return
        self._buffer += data
        self._queued_total += len(data)
        overflow = len(self._buffer) - self._max_buffer
        if overflow > 0:
            del self._buffer[:overflow]
            self._written_total += overflow  # lost, as far as marks are concerned
            self._on_dropped(overflow)
            self._fire_marks()
        self._schedule(0.0)

    def pending(self) -> int:
        return len(self._buffer)

    def when_drained(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self._buffer:
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d

    def when_written(self) -> Deferred[None]:
        """Fires once every byte queued so far has been handed to the fd, even if more
        is queued after it (``when_drained`` waits for an empty buffer)."""
        d: Deferred[None] = Deferred()
        mark = self._queued_total
        if self._written_total >= mark:
            d.callback(None)
        else:
            self._mark_waiters.append((mark, d))
        return d

    def clear(self) -> None:
        """Drop queued output (a reboot or a hang-up cuts the line)."""
        if self._buffer:
            self._on_dropped(len(self._buffer))
            self._buffer.clear()
        self._written_total = self._queued_total  # dropped bytes never wait anyone
        self._fire_marks()
        self._fire_drained()

    def stop(self) -> None:
        self.clear()
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        self._fd = None

    def _schedule(self, delay: float) -> None:
        if self._tick is None or not self._tick.active():
            self._tick = self._clock.callLater(delay, self._run)

    def _refill(self) -> None:
        now = self._clock.seconds()
        self._tokens = min(self._burst, self._tokens + (now - self._last_refill) * self._rate)
        self._last_refill = now

    def _run(self) -> None:
        self._tick = None
        if self._fd is None or not self._buffer:
            self._fire_drained()
            return
        self._refill()
        count = min(int(self._tokens), len(self._buffer))
        if count > 0:
            written = self._write_fd(count)
            if written < 0:
                return
            self._tokens -= written
            if written < count:  # the pty's buffer is full: the host is not reading
                self._schedule(0.01)
                return
        if not self._buffer:
            self._fire_drained()
            return
        wanted = min(len(self._buffer), self._burst)
        self._schedule(max(_MIN_TICK, (wanted - self._tokens) / self._rate))

    def _write_fd(self, count: int) -> int:
        assert self._fd is not None
        try:
            written = os.write(self._fd, self._buffer[:count])
        except BlockingIOError:
            written = 0
        except OSError as exc:
            if exc.errno == errno.EINTR:
                written = 0
            else:
                _log.warn("pty write failed: {err}; output dropped", err=exc)
                self.attach(None)
                return -1
        del self._buffer[:written]
        if written:
            self._written_total += written
            self._on_written(written)
            self._fire_marks()
        return written

    def _fire_marks(self) -> None:
        due = [d for mark, d in self._mark_waiters if mark <= self._written_total]
        if due:
            self._mark_waiters = [(m, d) for m, d in self._mark_waiters if m > self._written_total]
            for d in due:
                d.callback(None)

    def _fire_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)
