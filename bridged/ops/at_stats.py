"""AT traffic totals for ``/metrics``: commands, their latency, URCs, protocol errors and
serial bytes, over every AT engine the modem has had.

A serial reopen builds a new engine and the totals must not start over: :class:`ATStats`
attaches to each new engine (through ``modem.engine_observers``) and keeps the bytes of
the engines before it. :meth:`ATStats.totals` is what the snapshot carries.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from bridged.core.at_codec import (
    BootSign,
    ClosedUrc,
    CloseResult,
    Event,
    OpenResult,
    ProtocolError,
    RecvUrc,
    SendResult,
)
from bridged.ops.snapshot import ATTotals, Histogram

# AT command latency buckets, seconds: a plain command answers in tens of ms at 115200
# baud; a send includes the 0.5 s prompt wait; an open's OK is immediate but the module's
# "timeout" setting allows up to 300 s for its results.
AT_DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

URC_TYPES: dict[type, str] = {
    RecvUrc: "recv",
    ClosedUrc: "closed",
    OpenResult: "qsslopen",
    SendResult: "qsslsend",
    CloseResult: "qsslclose",
    BootSign: "boot",
}
URC_TYPE_NAMES: tuple[str, ...] = (*URC_TYPES.values(), "unsolicited")


class CountedEngine(Protocol):
    """What :class:`ATStats` reads of :class:`bridged.shell.at_engine.ATEngine`."""

    bytes_in: int
    bytes_out: int
    command_observers: list[Callable[[str, str, float], None]]
    event_observers: list[Callable[[Event], None]]


@dataclass
class _Histogram:
    """Counts per bucket (not cumulative), plus sum and count."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), running))
        return out


class ATStats:
    """Totals over every AT engine the modem has had (one per serial connection)."""

    def __init__(self, buckets: tuple[float, ...] = AT_DURATION_BUCKETS) -> None:
        self.buckets = buckets
        self.commands: Counter[tuple[str, str]] = Counter()  # (command, result)
        self.durations: dict[str, _Histogram] = {}
        self.timeouts: Counter[str] = Counter()
        self.urcs: Counter[str] = Counter()
        self.protocol_errors: Counter[str] = Counter()
        self.engine: CountedEngine | None = None
        self._past_bytes_in = 0
        self._past_bytes_out = 0

    def attach(self, engine: CountedEngine) -> None:
        """Count this engine's commands, events and bytes from now on."""
        if engine is self.engine:
            return
        if self.engine is not None:
            self._past_bytes_in += self.engine.bytes_in
            self._past_bytes_out += self.engine.bytes_out
        self.engine = engine
        engine.command_observers.append(self.observe_command)
        engine.event_observers.append(self.observe_event)

    def engine_created(self, engine: CountedEngine, _qssl: object) -> None:
        """A ``modem.engine_observers`` entry."""
        self.attach(engine)

    @property
    def bytes_in(self) -> int:
        return self._past_bytes_in + (self.engine.bytes_in if self.engine else 0)

    @property
    def bytes_out(self) -> int:
        return self._past_bytes_out + (self.engine.bytes_out if self.engine else 0)

    def observe_command(self, name: str, result: str, seconds: float) -> None:
        self.commands[name, result] += 1
        histogram = self.durations.get(name)
        if histogram is None:
            histogram = self.durations[name] = _Histogram(self.buckets)
        histogram.observe(seconds)
        if result == "timeout":
            self.timeouts[name] += 1

    def observe_event(self, event: Event) -> None:
        if isinstance(event, ProtocolError):
            self.protocol_errors[event.kind] += 1
        else:
            self.urcs[URC_TYPES.get(type(event), "unsolicited")] += 1

    def totals(self) -> ATTotals:
        return ATTotals(
            commands=dict(self.commands),
            durations={
                name: Histogram(tuple(h.cumulative()), h.total)
                for name, h in self.durations.items()
            },
            timeouts=dict(self.timeouts),
            urcs=dict(self.urcs),
            protocol_errors=dict(self.protocol_errors),
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
        )


__all__ = ["AT_DURATION_BUCKETS", "URC_TYPES", "URC_TYPE_NAMES", "ATStats"]
