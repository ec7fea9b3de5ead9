"""One row per measurement; the table the suite prints."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Row:
    scenario: str  # "P1" .. "P6"
    what: str  # e.g. "upload hex 115200"
    settings: str  # e.g. "wait 0.5 guard 0.02"
    throughput: float | None = None  # payload bytes a second
    ceiling: float | None = None  # the protocol ceiling for the same settings
    latency: tuple[float, float, float] | None = None  # p50, p95, p99 seconds
    shares: dict[int, float] | None = None  # fraction of the payload per connectID
    cpu_per_mb: float | None = None  # bridge CPU seconds per MB of payload
    cpu_percent: float | None = None  # bridge CPU, % of one core, over the run
    rss_peak: float | None = None  # bridge VmHWM, MB
    rss_start: float | None = None  # bridge VmRSS once ready, before any client, MB
    rss_growth: float | None = None  # VmRSS growth under load after warm-up, MB
    ready: float | None = None  # seconds from launching the bridge to every port listening
    intact: bool | None = None  # every byte the row carried arrived, unchanged
    seconds: float | None = None  # how long the measurement ran (or P6: time to ready)
    load: float | None = None  # 1-minute load average at the end of the row
    target: str = ""
    met: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.throughput is None or not self.ceiling:
            return None
        return self.throughput / self.ceiling


COLUMNS = (
    ("id", 3),
    ("what", 24),
    ("settings", 20),
    ("payload B/s", 11),
    ("ceiling B/s", 11),
    ("ratio", 7),
    ("latency p50/p95/p99 s", 21),
    ("shares min..max", 15),
    ("CPU s/MB", 8),
    ("CPU %", 6),
    ("RSS MB", 6),
    ("RSS start", 9),
    ("ready s", 7),
    ("secs", 6),
    ("load", 4),
    ("target", 26),
    ("met", 4),
)


def _num(value: float | None, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def cells(row: Row) -> list[str]:
    shares = "-"
    if row.shares:
        fair = 1 / len(row.shares)
        low, high = min(row.shares.values()) / fair, max(row.shares.values()) / fair
        shares = f"{low:.1%}..{high:.1%}"
    latency = "-"
    if row.latency:
        latency = "/".join(f"{v:.2f}" for v in row.latency)
    met = "-" if row.met is None else ("yes" if row.met else "NO")
    return [
        row.scenario,
        row.what,
        row.settings,
        _num(row.throughput, ".1f"),
        _num(row.ceiling, ".1f"),
        "-" if row.ratio is None else f"{row.ratio:.2%}",
        latency,
        shares,
        _num(row.cpu_per_mb, ".2f"),
        _num(row.cpu_percent, ".1f"),
        _num(row.rss_peak, ".1f"),
        _num(row.rss_start, ".1f"),
        _num(row.ready, ".2f"),
        _num(row.seconds, ".1f"),
        _num(row.load, ".1f"),
        row.target,
        met,
    ]


@dataclass
class Comparison:
    """One footprint measure of bridged beside the peer's, taken in the same run."""

    measure: str
    unit: str
    bridged: float | None
    peer: float | None
    target: str
    met: bool | None
    load: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.bridged is None or not self.peer:
            return None
        return self.bridged / self.peer


def comparison_table(comparisons: list[Comparison]) -> str:
    header = ["measure", "bridged", "peer", "bridged / peer", "target", "met", "load"]
    body = [
        [
            f"{c.measure} ({c.unit})",
            _num(c.bridged, ".3g"),
            _num(c.peer, ".3g"),
            _num(c.ratio, ".2f"),
            c.target,
            "-" if c.met is None else ("yes" if c.met else "NO"),
            _num(c.load, ".1f"),
        ]
        for c in comparisons
    ]
    return _markdown(header, body)


def _markdown(header: list[str], body: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)
    ]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(b) for b in body])


def table(rows: list[Row]) -> str:
    """A Markdown table (also readable as plain text), then each row's notes."""
    out = [_markdown([name for name, _ in COLUMNS], [cells(r) for r in rows])]
    notes = [f"- {r.scenario} {r.what}: {note}" for r in rows for note in r.notes]
    if notes:
        out += ["", "Notes:", *notes]
    return "\n".join(out)
