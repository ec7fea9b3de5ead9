"""Output to the host at the serial line's rate (8N1: baud / 10 bytes per second).

Timing model: the line is a wire that carries one byte every ``10 / baud`` seconds. A
byte is handed to the pty when its last bit would have arrived, never earlier: a line
that was idle starts with the first byte of a write, one that is busy carries the new
bytes right after the ones before. Bytes are handed over in batches at most every
``MIN_TICK`` seconds, but the last byte of what is queued always goes out at its exact
time, so a short response (``OK``, ``>``) is neither early nor held back by the tick.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

_log = Logger()

#: Ticks are at least this far apart while a long output is on the wire; keeps the timer
#: rate sane at high baud rates. The end of a write is never delayed by it.
MIN_TICK = 0.004
#: Reactor timers wake whole milliseconds late at worst (epoll rounds up): bytes due within
#: this much of now are handed over, so the model is about exact on average, not late.
EARLY = 0.0005
#: Output kept while the host does not read; past it the oldest bytes are lost.
DEFAULT_MAX_BUFFER = 1 << 20


class PacedWriter:
    """A paced wire in front of a non-blocking fd.

    ``write`` never blocks; ``when_drained`` fires once everything queued so far has
    been handed to the fd, i.e. has crossed the wire. An optional backlog listener hears
    ``True`` when more than ``high`` bytes wait and ``False`` once no more than ``low``
    do (the emulator stops reading its TLS connections meanwhile).
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
        # When the last byte handed to the fd finished crossing the wire (reactor time).
        self._done_at = clock.seconds()
        self._tick: IDelayedCall | None = None
        self._backlog_limits: tuple[int, int] | None = None
        self._on_backlog: Callable[[bool], None] | None = None
        self.backlogged = False
        self._drain_waiters: list[Deferred[None]] = []
        # Byte offsets in the output stream: queued so far, handed to the fd so far, and
        # waiters for "everything up to offset N is on the wire".
        self._queued_total = 0
        self._written_total = 0
        self._mark_waiters: list[tuple[int, Deferred[float]]] = []
        # The reactor time read just before the latest handover to the fd: what a mark
        # waiter is told, since its callback may run later than that (a busy process).
        self._handed_over_at = clock.seconds()
        self.set_baud(baud)

    def set_baud(self, baud: int) -> None:
        self._rate = max(1.0, baud / 10.0)

    def set_backlog_listener(self, high: int, low: int, listener: Callable[[bool], None]) -> None:
        """Call ``listener(True)`` above ``high`` queued bytes, ``listener(False)`` at or
        below ``low`` again."""
        self._backlog_limits = (high, low)
        self._on_backlog = listener

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
        if not self._buffer:  # an idle line starts carrying these bytes now
            self._done_at = max(self._done_at, self._clock.seconds())
        self._buffer += data
        self._queued_total += len(data)
        overflow = len(self._buffer) - self._max_buffer
        if overflow > 0:
            del self._buffer[:overflow]
            self._written_total += overflow  # lost, as far as marks are concerned
            self._on_dropped(overflow)
            self._fire_marks()
        self._check_backlog()
        self._schedule(self._next_tick_delay())

    def pending(self) -> int:
        return len(self._buffer)

    def when_drained(self) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self._buffer:
            d.callback(None)
        else:
            self._drain_waiters.append(d)
        return d

    def when_written(self) -> Deferred[float]:
        """Fires once every byte queued so far has been handed to the fd, even if more
        is queued after it (``when_drained`` waits for an empty buffer), with the reactor
        time of that handover (read before the write: never later than it). Timing from
        the callback instead would count whatever held this process up in between."""
        d: Deferred[float] = Deferred()
        mark = self._queued_total
        if self._written_total >= mark:
            d.callback(self._handed_over_at)
        else:
            self._mark_waiters.append((mark, d))
        return d

    def clear(self) -> None:
        """Drop queued output (a reboot or a hang-up cuts the line)."""
        if self._buffer:
            self._on_dropped(len(self._buffer))
            self._buffer.clear()
        self._written_total = self._queued_total  # dropped bytes never wait anyone
        self._handed_over_at = self._clock.seconds()
        self._check_backlog()
        self._fire_marks()
        self._fire_drained()

    def stop(self) -> None:
        self.clear()
        if self._tick is not None and self._tick.active():
            self._tick.cancel()
        self._tick = None
        self._fd = None

    def _schedule(self, delay: float) -> None:
        if self._tick is not None and self._tick.active():
            if self._tick.getTime() <= self._clock.seconds() + delay:
                return
            self._tick.cancel()
        self._tick = self._clock.callLater(delay, self._run)

    def _next_tick_delay(self) -> float:
        """Until the next batch is due: the last queued byte's arrival if that is near,
        else the next byte's, but no sooner than ``MIN_TICK`` from now."""
        now = self._clock.seconds()
        last = self._done_at + len(self._buffer) / self._rate
        first = self._done_at + 1 / self._rate
        return max(0.0, min(last, max(now + MIN_TICK, first)) - now - EARLY)

    def _run(self) -> None:
        self._tick = None
        if self._fd is None or not self._buffer:
            self._fire_drained()
            return
        now = self._clock.seconds()
        # Bytes whose last bit has arrived by now (the epsilon absorbs float error).
        due = (now + EARLY - self._done_at) * self._rate + 1e-6
        count = min(len(self._buffer), int(due))
        if count > 0:
            self._handed_over_at = now
            written = self._write_fd(count)
            if written < 0:
                return
            self._done_at += written / self._rate
            if written < count:  # the pty's buffer is full: the host is not reading
                self._done_at = now  # the wire waits for the host
                self._schedule(0.01)
                return
        if not self._buffer:
            self._fire_drained()
            return
        self._schedule(self._next_tick_delay())

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
            self._check_backlog()
            self._fire_marks()
        return written

    def _check_backlog(self) -> None:
        if self._backlog_limits is None or self._on_backlog is None:
            return
        high, low = self._backlog_limits
        pending = len(self._buffer)
        if not self.backlogged and pending > high:
            self.backlogged = True
            self._on_backlog(True)
        elif self.backlogged and pending <= low:
            self.backlogged = False
            self._on_backlog(False)

    def _fire_marks(self) -> None:
        due = [d for mark, d in self._mark_waiters if mark <= self._written_total]
        if due:
            self._mark_waiters = [(m, d) for m, d in self._mark_waiters if m > self._written_total]
            for d in due:
                d.callback(self._handed_over_at)

    def _fire_drained(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)
