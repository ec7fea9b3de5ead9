"""Turning arrival times into throughput, shares and percentiles."""

from __future__ import annotations

import math
from collections.abc import Sequence

Arrival = tuple[float, int]  # (monotonic seconds, bytes)
Event = tuple[float, int, int]  # (monotonic seconds, connect_id, bytes)


def steady_rate(arrivals: Sequence[Arrival]) -> float | None:
    """Bytes a second between the first and the last arrival. The first arrival's bytes
    are not counted: they crossed the line before the clock started."""
    ordered = sorted(arrivals)
    if len(ordered) < 3 or ordered[-1][0] <= ordered[0][0]:
        return None
    return sum(n for _, n in ordered[1:]) / (ordered[-1][0] - ordered[0][0])


def whole_rounds(
    events: Sequence[Event], sockets: int, start: float
) -> tuple[float | None, dict[int, float], int]:
    """Throughput and each socket's share over whole rounds of sends after ``start``.

    Round-robin gives each socket one send a round; a window cut at arbitrary times
    would credit some sockets one send more than others, so the window spans
    ``1 + rounds * sockets`` consecutive sends (the first only starts the clock).
    Returns (bytes a second, share by connectID, rounds).
    """
    ordered = sorted(e for e in events if e[0] >= start)
    rounds = (len(ordered) - 1) // sockets
    if rounds < 1:
        return None, {}, 0
    window = ordered[: 1 + rounds * sockets]
    counted = window[1:]
    total = sum(n for _, _, n in counted)
    elapsed = window[-1][0] - window[0][0]
    shares = {cid: 0.0 for cid in range(sockets)}
    for _, cid, n in counted:
        shares[cid] += n / total
    return (total / elapsed if elapsed > 0 else None), shares, rounds


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]
