"""The scenarios P1..P6 of issue 7, each producing table rows.

Every row runs on fresh processes (emulator, TLS servers, ``bridged run``) so its CPU
time and peak RSS are that run's alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.bench import cgroups, procstat
from tests.bench.analysis import percentile, steady_rate, whole_rounds
from tests.bench.ceiling import MAX_SEND, Line
from tests.bench.clients import MessageSender, Pusher, Reader
from tests.bench.report import Comparison, Row
from tests.bench.rig import ProcessRig, RigSettings
from tests.bench.tls_server import GO, MESSAGE_SIZE, SOURCE_PIECE
from tests.support.pki import Pki

MB = 1_000_000
DEFAULT_GUARD = 0.02  # bridged's modem.guard_time default
PROPOSED_GUARD = 0.0  # what this suite proposes instead (see docs/performance.md)
SMALL_GUARD = 0.002  # the compromise, for comparison


P1Row = tuple[str, int, str, float, float]  # (direction, baud, format, guard, seconds)


@dataclass(frozen=True)
class Budget:
    """How long each scenario runs: ``full`` for the numbers, ``quick`` to try things,
    ``smoke`` to check that everything runs (CI)."""

    name: str
    prompt: float  # the prompt wait of every row but P5's
    p1_rows: tuple[P1Row, ...]
    p2_rows: tuple[tuple[float, float], ...]  # (guard, seconds)
    p3_seconds: float
    p4_seconds: float
    p5_seconds: float  # cap on P5's run (the 50 MB offered take longer at line rate)
    p6_guards: tuple[float, ...]
    p6_baud: int = 115200
    nb_seconds: float = 0  # NB rows (0: none)
    # F and G (issue 14): bridged beside the peer; G under a 5 % CPU quota.
    fp_down_seconds: float = 30
    fp_up_seconds: float = 60
    fp_push_seconds: float = 30
    gateway_quota: float = 0.05  # G's CPU quota, share of one core (smoke: larger, fast)


def _p1_rows(headline: float, others: float, download: float) -> tuple[P1Row, ...]:
    """Per baud rate and format: upload with the proposed guard time (the headline),
    with the shipped default and with a small one (the guard's cost), then download."""
    rows: list[P1Row] = []
    for baud in (115200, 921600):
        for fmt in ("hex", "text"):
            rows.append(("upload", baud, fmt, PROPOSED_GUARD, headline))
            if others:
                rows.append(("upload", baud, fmt, DEFAULT_GUARD, others))
                rows.append(("upload", baud, fmt, SMALL_GUARD, others))
            rows.append(("download", baud, fmt, DEFAULT_GUARD, download))
    return tuple(rows)


FULL = Budget(
    name="full",
    prompt=0.5,
    p1_rows=_p1_rows(60, 30, 30),
    p2_rows=((PROPOSED_GUARD, 60), (DEFAULT_GUARD, 30), (SMALL_GUARD, 30)),
    p3_seconds=60,
    p4_seconds=60,
    p5_seconds=60,
    p6_guards=(DEFAULT_GUARD, PROPOSED_GUARD),
    nb_seconds=60,
    fp_down_seconds=30,
    fp_up_seconds=60,
    fp_push_seconds=30,
)
QUICK = Budget(
    name="quick",
    prompt=0.5,
    p1_rows=_p1_rows(8, 0, 6),
    p2_rows=((PROPOSED_GUARD, 12),),
    p3_seconds=15,
    p4_seconds=8,
    p5_seconds=15,
    p6_guards=(DEFAULT_GUARD,),
    nb_seconds=10,
    fp_down_seconds=8,
    fp_up_seconds=15,
    fp_push_seconds=10,
)
SMOKE = Budget(
    name="smoke",
    prompt=0.1,
    p1_rows=(
        ("upload", 921600, "hex", PROPOSED_GUARD, 2),
        ("download", 921600, "text", DEFAULT_GUARD, 2),
    ),
    p2_rows=((PROPOSED_GUARD, 3),),
    p3_seconds=3,
    p4_seconds=2,
    p5_seconds=3,
    p6_guards=(DEFAULT_GUARD,),
    p6_baud=921600,
    fp_down_seconds=2,
    fp_up_seconds=3,
    fp_push_seconds=3,
    gateway_quota=0.5,
)
BUDGETS = {b.name: b for b in (FULL, QUICK, SMOKE)}


@dataclass(frozen=True)
class Variant:
    """Which bridge a row runs (bridged or the peer) and under what CPU quota."""

    bridge: str = "bridged"
    cpu_quota: float | None = None
    scenario: str | None = None  # the row's id; None: the function's own (P1, P4...)

    @property
    def prefix(self) -> str:
        return f"{self.bridge}: " if self.scenario else ""

    @property
    def suffix(self) -> str:
        # Short: the control socket's path lives under it (at most 107 characters).
        quota = "q" if self.cpu_quota is not None else ""
        return f"-{self.bridge[0]}{quota}" if self.scenario else ""

    def note_start(self, row: Row, rig: ProcessRig) -> None:
        if self.scenario:
            row.notes.append(f"ready after {row.ready:.2f} s, {rig.cpu():.2f} CPU s")

    def apply(self, settings: RigSettings) -> RigSettings:
        return replace(settings, bridge=self.bridge, cpu_quota=self.cpu_quota)


BRIDGED = Variant()


@dataclass
class Context:
    workdir: Path
    pki: Pki
    budget: Budget
    log: Callable[[str], None] = print
    rows: list[Row] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def rig(self, name: str, settings: RigSettings, start: bool = True) -> Iterator[ProcessRig]:
        rig = ProcessRig(self.workdir / name, self.pki, settings)
        try:
            if start:
                rig.start()
            yield rig
        finally:
            rig.stop()

    def compare(
        self,
        measure: str,
        unit: str,
        bridged: float | None,
        peer: float | None,
        target: str,
        judge: Callable[[float, float], bool] | None,
        row: Row | None,
    ) -> None:
        met = None
        if judge is not None:
            met = bridged is not None and peer is not None and judge(bridged, peer)
        load = row.load if row is not None else procstat.load_average()[0]
        self.comparisons.append(Comparison(measure, unit, bridged, peer, target, met, load))

    def skip(self, reason: str) -> None:
        self.skipped.append(reason)
        self.log(reason)

    def add(self, row: Row, rig: ProcessRig | None = None, aborted: bool = False) -> Row:
        if rig is not None:
            _check_rig(row, rig, aborted)
        row.load = procstat.load_average()[0]
        self.rows.append(row)
        met = "-" if row.met is None else ("met" if row.met else "MISSED")
        ratio = f", {row.ratio:.2%} of ceiling" if row.ratio is not None else ""
        self.log(f"  {row.scenario} {row.what} [{row.settings}]: {met}{ratio}")
        return row


def _check_rig(row: Row, rig: ProcessRig, aborted: bool) -> None:
    """Anything that makes the numbers suspect goes into the row's notes. A run that
    cut its clients off and stopped the bridge mid-transfer may see a refused send and
    a data-mode timeout at the end; those are not counted then."""
    stats = rig.result.emulator_stats
    keys = ["early_dropped_bytes", "output_dropped_bytes"]
    if not aborted:
        keys.append("data_mode_timeouts")
    for key in keys:
        if stats.get(key):
            row.notes.append(f"emulator {key} = {stats[key]}")
    if stats.get("send_failures") and not aborted:
        row.notes.append(f"emulator refused {stats['send_failures']} sends")
    if rig.result.bridge_exit not in (0, None):
        row.notes.append(f"bridged exited with {rig.result.bridge_exit}")


def _settings_text(line: Line, guard: float) -> str:
    return f"wait {line.prompt_wait:g} guard {guard:g}"


def _wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout:.0f} s")
        time.sleep(0.2)


def measure_upload(rig: ProcessRig, row: Row, total: int, seconds: float) -> dict[str, Any]:
    """Push ``total`` bytes through socket 0 as fast as the bridge takes them; fill the row's
    rate, CPU and peak memory; return the sink's record of what arrived."""
    cpu0, t0 = rig.cpu(), time.monotonic()
    pusher = Pusher(rig.connect(0), total).start()
    record: dict[str, Any] = _wait_for(
        lambda: (r := _record(rig, 0)) and r["bytes"] >= total and r,
        timeout=3 * seconds + 30,
        what="upload",
    )
    cpu1, t1 = rig.cpu(), time.monotonic()
    row.rss_peak = rig.memory()["VmHWM"] / MB
    row.throughput = steady_rate(record["arrivals"])
    row.cpu_per_mb = (cpu1 - cpu0) / (total / MB)
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    row.notes += record["errors"] + ([pusher.error] if pusher.error else [])
    return record


def _record(rig: ProcessRig, connect_id: int) -> dict[str, Any] | None:
    records = [r for r in rig.server_records() if r["connect_id"] == connect_id]
    return records[-1] if records else None


def _round_up(value: float, step: int) -> int:
    return max(step, math.ceil(value / step) * step)


# ---------------------------------------------------------------------------- P1


def p1(ctx: Context) -> None:
    for direction, baud, fmt, guard, seconds in ctx.budget.p1_rows:
        if direction == "upload":
            p1_upload(ctx, baud, fmt, guard, seconds)
        else:
            p1_download(ctx, baud, fmt, seconds)


def p1_upload(
    ctx: Context,
    baud: int,
    fmt: str,
    guard: float,
    seconds: float,
    variant: Variant = BRIDGED,
) -> Row:
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.upload_ceiling()
    # Whole chunks: a short last chunk would cost a full send's time for fewer bytes.
    total = _round_up(ceiling * seconds, MAX_SEND[fmt])
    what = variant.prefix + f"upload {fmt} {baud}"
    row = Row(variant.scenario or "P1", what, _settings_text(line, guard), ceiling=ceiling)
    row.target = "≥ 99 % of ceiling"
    settings = variant.apply(RigSettings(baud, fmt, line.prompt_wait, guard, servers=("sink",)))
    with ctx.rig(f"p1-up-{fmt}-{baud}-g{guard:g}{variant.suffix}", settings) as rig:
        row.ready = rig.result.ready_seconds
        row.rss_start = rig.memory()["VmRSS"] / MB
        variant.note_start(row, rig)
        record = measure_upload(rig, row, total, seconds)
    row.intact = record["bytes"] >= total and not record["errors"]
    row.met = row.ratio is not None and row.ratio >= 0.99 and not record["errors"]
    return ctx.add(row, rig)


def p1_download(ctx: Context, baud: int, fmt: str, seconds: float) -> Row:
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.download_ceiling()
    total = _round_up(ceiling * seconds, SOURCE_PIECE)
    row = Row("P1", f"download {fmt} {baud}", "(no prompt)", ceiling=ceiling)
    row.target = "≥ 99 % of ceiling"
    settings = RigSettings(baud, fmt, line.prompt_wait, servers=(f"source:{total}",))
    with ctx.rig(f"p1-down-{fmt}-{baud}", settings) as rig:
        cpu0, t0 = rig.cpu(), time.monotonic()
        reader = Reader(rig.connect(0), total).start()
        reader.thread.join(3 * seconds + 30)
        cpu1, t1 = rig.cpu(), time.monotonic()
        row.rss_peak = rig.memory()["VmHWM"] / MB
    row.throughput = steady_rate(reader.arrivals)
    row.cpu_per_mb = (cpu1 - cpu0) / (total / MB)
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    lost = total - reader.received + reader.corrupt
    if lost or reader.error:
        row.notes.append(f"{lost} bytes lost or corrupt; {reader.error or ''}")
    row.met = row.ratio is not None and row.ratio >= 0.99 and not lost
    return ctx.add(row, rig)


#: The NB rows' pipelined window: one send's line time (~0.63 s at 115200 hex, 0.5 s wait)
#: against a chunk's uplink time plus the 1 s round trip (~1.36 s): three sends in flight
#: keep the line busy in theory, four leave slack for jitter.
NB_WINDOW = 4


def nb(ctx: Context) -> None:
    """P1's upload with the radio's latency (the emulator's ``nbiot`` profile: 1 s round
    trip, 2 KB/s uplink). With ``max_unconfirmed_sends`` 1 a socket sends its next chunk
    only once the previous one is confirmed (``+QSSLSEND: 1,<id>,0``), which the module
    reports after the network; with :data:`NB_WINDOW` (a module profile that allows it) the
    next send goes after the previous one's OK (pipelining). Both in the same run."""
    if ctx.budget.nb_seconds:
        base = nb_upload(ctx, 1, ctx.budget.nb_seconds)
        nb_upload(ctx, 1, ctx.budget.nb_seconds, window=NB_WINDOW, base=base)
        nb_upload(ctx, 6, ctx.budget.nb_seconds)


def nb_upload(
    ctx: Context, sockets: int, seconds: float, window: int = 1, base: Row | None = None
) -> Row:
    baud, fmt, guard = 115200, "hex", PROPOSED_GUARD
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.upload_ceiling()
    rtt, uplink = 1.0, 2048.0
    # ``window`` chunks unconfirmed per socket: a socket sends at most that many chunks
    # per send plus uplink plus round trip. Size the transfer to take about ``seconds``.
    per_socket = window * MAX_SEND[fmt] / (line.send_time() + MAX_SEND[fmt] / uplink + rtt)
    rate = min(ceiling, sockets * per_socket)
    total = _round_up(rate * seconds / sockets, MAX_SEND[fmt])
    what = f"upload {fmt} {baud}, {sockets} socket(s)" + (", pipelined" if window > 1 else "")
    settings_text = "rtt 1 s, uplink 2 KB/s" + (f", window {window}" if window > 1 else "")
    row = Row("NB", what, settings_text)
    row.ceiling, row.target = ceiling, "(information)"
    if base is not None:
        row.target = "≥ 2.5 x window 1's share"
    settings = RigSettings(
        baud,
        fmt,
        line.prompt_wait,
        guard,
        servers=("sink",) * sockets,
        rtt=rtt,
        uplink_rate=uplink,
        max_unconfirmed_sends=window,
    )
    with ctx.rig(f"nb-{sockets}-w{window}", settings) as rig:
        cpu0, t0 = rig.cpu(), time.monotonic()
        pushers = [Pusher(rig.connect(c), total).start() for c in range(sockets)]

        def all_done() -> list[dict[str, Any]] | None:
            records = rig.server_records()
            done = sum(r["bytes"] for r in records) >= total * sockets
            return records if done else None

        records = _wait_for(all_done, timeout=6 * seconds + 60, what="upload")
        cpu1, t1 = rig.cpu(), time.monotonic()
        row.rss_peak = rig.memory()["VmHWM"] / MB
    events = [(t, r["connect_id"], n) for r in records for t, n in r["arrivals"]]
    if sockets == 1:
        row.throughput = steady_rate([(t, n) for t, _, n in events])
    else:
        row.throughput, row.shares, _ = whole_rounds(events, sockets, 0.0)
    row.cpu_per_mb = (cpu1 - cpu0) / (total * sockets / MB)
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    row.intact = sum(r["bytes"] for r in records) == total * sockets and not any(
        r["errors"] for r in records
    )
    row.notes += [e for r in records for e in r["errors"]]
    row.notes += [p.error for p in pushers if p.error]
    stats = rig.result.emulator_stats
    if window > 1:
        row.notes.append(
            f"emulator: {stats.get('pipelined_sends', 0)} of {stats.get('sends', 0)} sends "
            f"pipelined, at most {stats.get('most_unconfirmed_sends', 0)} unconfirmed"
        )
    if base is not None and base.ratio and row.ratio is not None:
        gain = row.ratio / base.ratio
        row.notes.append(f"{gain:.2f} x window 1's share ({base.ratio:.1%} → {row.ratio:.1%})")
        row.met = gain >= 2.5 and bool(row.intact)
    return ctx.add(row, rig)


# ---------------------------------------------------------------------------- P2


def p2(ctx: Context) -> None:
    for guard, seconds in ctx.budget.p2_rows:
        p2_overload(ctx, guard, seconds)


def p2_overload(
    ctx: Context, guard: float, seconds: float, baud: int = 115200, fmt: str = "hex"
) -> Row:
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.upload_ceiling()
    offer = int(ceiling * (seconds + 30))  # each socket alone could fill the line
    row = Row("P2", f"6 sockets bulk {fmt} {baud}", _settings_text(line, guard), ceiling=ceiling)
    row.target = "≥ 97 %, shares 1/6 ± 5 %"
    settings = RigSettings(baud, fmt, line.prompt_wait, guard, servers=("sink",) * 6)
    with ctx.rig(f"p2-g{guard:g}", settings) as rig:
        pushers = [Pusher(rig.connect(c), offer, close_when_done=False).start() for c in range(6)]

        def all_started() -> list[dict[str, Any]] | None:
            records = rig.server_records()
            started = {r["connect_id"] for r in records if r["arrivals"]}
            return records if len(started) == 6 else None

        records = _wait_for(all_started, timeout=60, what="six sockets sending")
        start = max(min(t for t, _ in r["arrivals"]) for r in records if r["arrivals"])
        cpu0, t0 = rig.cpu(), time.monotonic()
        time.sleep(seconds)
        records = rig.server_records()
        cpu1, t1 = rig.cpu(), time.monotonic()
        row.rss_peak = rig.memory()["VmHWM"] / MB
        for pusher in pushers:
            pusher.abort()
    events = [(t, r["connect_id"], n) for r in records for t, n in r["arrivals"]]
    rate, shares, rounds = whole_rounds(events, 6, start)
    row.throughput, row.shares = rate, shares
    carried = sum(n for t, _, n in events if t >= start)
    row.cpu_per_mb = (cpu1 - cpu0) / (carried / MB) if carried else None
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    row.notes.append(f"{rounds} whole rounds of 6 sends measured")
    row.notes += [e for r in records for e in r["errors"]]
    fair = all(abs(s * 6 - 1) <= 0.05 for s in shares.values()) and len(shares) == 6
    row.met = row.ratio is not None and row.ratio >= 0.97 and fair
    return ctx.add(row, rig, aborted=True)


# ---------------------------------------------------------------------------- P3


def p3(ctx: Context, baud: int = 115200, fmt: str = "hex", guard: float = PROPOSED_GUARD) -> Row:
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.upload_ceiling()
    seconds = ctx.budget.p3_seconds
    per_socket = 0.5 * ceiling / MESSAGE_SIZE / 6  # messages a second
    bound = line.latency_bound(6)
    row = Row("P3", f"6 x 100-B msgs {fmt} {baud}", _settings_text(line, guard), ceiling=ceiling)
    row.target = f"p99 ≤ {bound:.2f} s, no backlog growth"
    settings = RigSettings(baud, fmt, line.prompt_wait, guard, servers=("messages",) * 6)
    with ctx.rig(f"p3-g{guard:g}", settings) as rig:
        cpu0, t0 = rig.cpu(), time.monotonic()
        senders = [
            MessageSender(rig.connect(c), c, per_socket, seconds, seed=c).start() for c in range(6)
        ]
        backlog: list[tuple[float, float]] = []  # (time, queued bytes over all sockets)
        while any(s.thread.is_alive() for s in senders):
            samples = rig.metrics()
            queued = sum(
                v for k, v in samples.items() if k.startswith("bridged_socket_queue_bytes")
            )
            backlog.append((time.monotonic(), queued))
            time.sleep(1.0)
        last_write = time.monotonic()
        sent = sum(s.sent for s in senders)

        def delivered() -> list[dict[str, Any]] | None:
            records = rig.server_records()
            return records if sum(len(r["seqs"]) for r in records) >= sent else None

        try:
            records = _wait_for(delivered, timeout=2 * bound + 10, what="every message")
        except TimeoutError:
            records = rig.server_records()
        drained = time.monotonic() - last_write
        cpu1, t1 = rig.cpu(), time.monotonic()
        row.rss_peak = rig.memory()["VmHWM"] / MB
    latencies = [ns / 1e9 for r in records for ns in r["latencies_ns"]]
    received = len(latencies)
    row.latency = (percentile(latencies, 50), percentile(latencies, 95), percentile(latencies, 99))
    row.throughput = received * MESSAGE_SIZE / seconds
    row.cpu_per_mb = (cpu1 - cpu0) / (received * MESSAGE_SIZE / MB) if received else None
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = seconds
    third = max(1, len(backlog) // 3)
    first = sum(q for _, q in backlog[:third]) / third
    last = sum(q for _, q in backlog[-third:]) / third
    growth_ok = last <= first + MAX_SEND[fmt]
    early = [ns / 1e9 for r in records for ns in r["latencies_ns"][: len(r["latencies_ns"]) // 3]]
    late = [ns / 1e9 for r in records for ns in r["latencies_ns"][-(len(r["latencies_ns"]) // 3) :]]
    row.notes.append(
        f"{sent} messages sent, {received} received; offered {per_socket:.2f} msg/s a socket; "
        f"mean queued bytes first third {first:.0f}, last third {last:.0f}; p50 first third "
        f"{percentile(early, 50):.2f} s, last third {percentile(late, 50):.2f} s; "
        f"all delivered {drained:.1f} s after the last write"
    )
    in_order = all(r["seqs"] == sorted(r["seqs"]) for r in records)
    if not in_order:
        row.notes.append("messages out of order")
    row.notes += [e for r in records for e in r["errors"]]
    row.met = received == sent and row.latency[2] <= bound and growth_ok and in_order
    return ctx.add(row, rig)


# ---------------------------------------------------------------------------- P4


def p4(
    ctx: Context,
    baud: int = 921600,
    fmt: str = "hex",
    variant: Variant = BRIDGED,
    seconds: float | None = None,
    open_first: bool = False,
) -> Row:
    """Six servers flood six clients. ``open_first``: the servers wait until all six
    sockets are open (each client says go then), so that no open waits behind a flood."""
    line = Line(baud, fmt, ctx.budget.prompt)
    ceiling = line.download_ceiling()
    seconds = ctx.budget.p4_seconds if seconds is None else seconds
    per_socket = _round_up(ceiling * seconds / 6, SOURCE_PIECE)
    source = f"source-on-go:{per_socket}" if open_first else f"source:{per_socket}"
    what = variant.prefix + f"6 sockets download {fmt} {baud}"
    settings_text = "(no prompt), all open first" if open_first else "(no prompt)"
    row = Row(variant.scenario or "P4", what, settings_text, ceiling=ceiling)
    row.target = "0 lost, CPU ≤ 25 %"
    settings = variant.apply(RigSettings(baud, fmt, line.prompt_wait, servers=(source,) * 6))
    with ctx.rig(f"p4{variant.suffix}", settings) as rig:
        row.ready = rig.result.ready_seconds
        row.rss_start = rig.memory()["VmRSS"] / MB
        variant.note_start(row, rig)
        sockets = [rig.connect(c) for c in range(6)]
        if open_first:
            _wait_for(lambda: len(rig.server_records()) >= 6, 60, "six sockets open")
            for sock in sockets:
                sock.sendall(GO)
        cpu0, t0 = rig.cpu(), time.monotonic()
        readers = [Reader(sock, per_socket).start() for sock in sockets]
        for reader in readers:
            reader.thread.join(max(0.0, t0 + 3 * seconds + 30 - time.monotonic()))
        cpu1, t1 = rig.cpu(), time.monotonic()
        row.rss_peak = rig.memory()["VmHWM"] / MB
    arrivals = [a for r in readers for a in r.arrivals]
    if open_first and all(r.arrivals for r in readers):
        # From the moment all six flood: the six one-byte "go" sends come before.
        begin = max(r.arrivals[0][0] for r in readers)
        arrivals = [a for a in arrivals if a[0] >= begin]
    row.throughput = steady_rate(arrivals)
    received = sum(r.received for r in readers)
    row.shares = {c: r.received / received for c, r in enumerate(readers)} if received else None
    lost = 6 * per_socket - received + sum(r.corrupt for r in readers)
    row.cpu_per_mb = (cpu1 - cpu0) / (received / MB) if received else None
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    row.notes.append(f"{received} of {6 * per_socket} bytes received intact; {lost} lost")
    row.notes += [r.error for r in readers if r.error]
    row.intact = lost == 0 and not any(r.error for r in readers)
    row.met = lost == 0 and row.cpu_percent <= 25
    return ctx.add(row, rig)


# ---------------------------------------------------------------------------- P5


def p5(ctx: Context, offer: int = 50 * 1024 * 1024, variant: Variant = BRIDGED) -> Row:
    """One client offers 50 MB as fast as it can. At line rate that takes hours with the
    prompt wait and ~10 minutes without, so the prompt wait is 0 (the fastest the line
    goes) and the run stops at the budget's cap if the 50 MB are not through by then."""
    guard, fmt, baud = PROPOSED_GUARD, "text", 921600
    line = Line(baud, fmt, 0.0)
    what = variant.prefix + f"1 client offers 50 MB {fmt}"
    row = Row(variant.scenario or "P5", what, _settings_text(line, guard))
    row.ceiling = line.upload_ceiling()
    row.target = "peak RSS ≤ 60 MB, growth ≤ 5 MB"
    cap = ctx.budget.p5_seconds if variant.scenario is None else ctx.budget.fp_push_seconds
    settings = variant.apply(
        RigSettings(baud, fmt, 0.0, guard, emulator_prompt_max=0.0, servers=("sink",))
    )
    with ctx.rig(f"p5{variant.suffix}", settings) as rig:
        row.ready = rig.result.ready_seconds
        row.rss_start = rig.memory()["VmRSS"] / MB
        variant.note_start(row, rig)
        cpu0, t0 = rig.cpu(), time.monotonic()
        pusher = Pusher(rig.connect(0), offer, close_when_done=False).start()
        rss: list[tuple[float, int]] = []
        while time.monotonic() - t0 < cap and pusher.done is None and pusher.thread.is_alive():
            rss.append((time.monotonic() - t0, rig.memory()["VmRSS"]))
            time.sleep(0.5)
        record = _record(rig, 0) or {"arrivals": [], "bytes": 0, "errors": []}
        cpu1, t1 = rig.cpu(), time.monotonic()
        rss.append((t1 - t0, rig.memory()["VmRSS"]))
        row.rss_peak = rig.memory()["VmHWM"] / MB
        pusher.abort()
    warm = [v for t, v in rss if t >= min(5.0, cap / 4)] or [v for _, v in rss]
    growth = (warm[-1] - warm[0]) / MB
    row.rss_growth = growth
    row.throughput = steady_rate(record["arrivals"])
    carried = record["bytes"]
    row.cpu_per_mb = (cpu1 - cpu0) / (carried / MB) if carried else None
    row.cpu_percent = 100 * (cpu1 - cpu0) / (t1 - t0)
    row.seconds = t1 - t0
    row.notes.append(
        f"{carried / MB:.1f} MB of the 50 MB carried in {t1 - t0:.0f} s "
        f"(client wrote {pusher.sent / MB:.1f} MB: the rest waits in the kernel's socket "
        f"buffers, not in bridged); RSS {warm[0] / MB:.1f} -> "
        f"{warm[-1] / MB:.1f} MB after warm-up (growth {growth:+.2f} MB), max "
        f"{max(v for _, v in rss) / MB:.1f} MB"
    )
    row.notes += record["errors"]
    row.intact = not record["errors"]
    row.met = row.rss_peak <= 60 and growth <= 5 and not record["errors"]
    return ctx.add(row, rig, aborted=pusher.done is None)


# ---------------------------------------------------------------------------- P6


def p6(ctx: Context) -> None:
    for guard in ctx.budget.p6_guards:
        p6_cold_start(ctx, guard)


def p6_cold_start(ctx: Context, guard: float, fmt: str = "hex") -> Row:
    baud = ctx.budget.p6_baud
    line = Line(baud, fmt, ctx.budget.prompt)
    sizes = [
        (cid, kind, path.stat().st_size)
        for cid in range(6)
        for kind, path in (
            ("cacert", ctx.pki.ca_cert),
            ("clientcert", ctx.pki.client_cert),
            ("clientkey", ctx.pki.client_key),
        )
    ]
    upload = line.upload_time(sizes)
    row = Row("P6", f"cold start, 6 x mutual TLS {baud}", _settings_text(line, guard))
    row.target = f"≤ {upload + 2:.1f} s (uploads {upload:.1f} s + 2)"
    settings = RigSettings(baud, fmt, line.prompt_wait, guard, seclevel=2, servers=("sink",) * 6)
    with ctx.rig(f"p6-g{guard:g}", settings, start=False) as rig:
        rig.start_emulator()
        rig.start_servers()
        ready = rig.start_bridge()
        cpu = rig.cpu()
        row.rss_peak = rig.memory()["VmHWM"] / MB
        # The sockets work: one message through each.
        for cid in range(6):
            with rig.connect(cid) as sock:
                sock.sendall(b"x" * 10)
        _wait_for(
            lambda: sum(r["bytes"] for r in rig.server_records()) >= 60,
            timeout=60,
            what="a message through every socket",
        )
    row.seconds = ready
    cert_bytes = sum(size for _, _, size in sizes)
    init = _init_seconds(rig.directory / "bridged.log")
    row.notes.append(
        f"ready {ready:.2f} s after launch (bridged used {cpu:.2f} CPU s): "
        f"{ready - init:.2f} s Python start-up and imports until the serial port opened, "
        f"{init:.2f} s initialising the module; 18 uploads of {cert_bytes} bytes: "
        f"{cert_bytes / line.rate:.2f} s of line time + 18 prompt waits"
    )
    row.met = ready <= upload + 2
    return ctx.add(row, rig)


def _init_seconds(log: Path) -> float:
    """From "serial device ... open" to "module ready" in bridged's log."""
    opened = ready = None
    for line in log.read_text(errors="replace").splitlines():
        stamp = line.split(" ", 1)[0]
        if opened is None and "[bridged.shell.modem] serial device" in line:
            opened = datetime.fromisoformat(stamp)
        elif ready is None and "[bridged.shell.modem] module ready" in line:
            ready = datetime.fromisoformat(stamp)
    if opened is None or ready is None:
        return math.nan
    return (ready - opened).total_seconds()


# ---------------------------------------------------------------------------- F, G


PEER_BRIDGES = ("bridged", "peer")


def footprint(ctx: Context) -> None:
    """Issue 14: bridged and the peer (tests/bench/peer.py) on the same rows, one after
    the other in this run: CPU per MB downloading (921600, six sockets) and uploading
    (115200), resident memory once ready and under a client pushing without pause."""
    down: dict[str, Row] = {}
    up: dict[str, Row] = {}
    push: dict[str, Row] = {}
    for bridge in PEER_BRIDGES:
        variant = Variant(bridge, scenario="F")
        down[bridge] = _target(
            p4(ctx, variant=variant, seconds=ctx.budget.fp_down_seconds, open_first=True)
        )
        up[bridge] = _target(
            p1_upload(ctx, 115200, "hex", PROPOSED_GUARD, ctx.budget.fp_up_seconds, variant)
        )
        push[bridge] = _target(p5(ctx, variant=variant))
    b, p = "bridged", "peer"
    compare = ctx.compare
    for name, rows in (("download flood 921600 hex x6", down), ("bulk upload 115200 hex", up)):
        compare(
            f"CPU per MB, {name}",
            "CPU s/MB",
            rows[b].cpu_per_mb,
            rows[p].cpu_per_mb,
            "≤ peer's",
            lambda x, y: x <= y,
            rows[b],
        )
    compare(
        "RSS after start",
        "MB",
        push[b].rss_start,
        push[p].rss_start,
        "≤ 30 MB",
        lambda x, y: x <= 30,
        push[b],
    )
    compare(
        "RSS growth under a client pushing without pause",
        "MB",
        push[b].rss_growth,
        push[p].rss_growth,
        "≤ 1 MB (flat)",
        lambda x, y: x <= 1,
        push[b],
    )
    compare(
        "start to all six listeners ready, no quota",
        "s",
        down[b].ready,
        down[p].ready,
        "(information)",
        None,
        down[b],
    )
    rows = [r for group in (down, up, push) for r in group.values()]
    compare(
        "rows with every byte delivered intact",
        "rows",
        sum(bool(r.intact) for r in rows if r.what.startswith(b)),
        sum(bool(r.intact) for r in rows if r.what.startswith(p)),
        "all (3 each)",
        lambda x, y: x == y == 3,
        None,
    )


def gateway(ctx: Context) -> None:
    """Issue 14's gateway mode: the bridge process alone in a cgroup limited to 5 % of
    one core. Time from launch to every listener ready (six sockets), and the share of
    the line's ceiling held downloading (921600, six sockets) and uploading (115200)."""
    quota = ctx.budget.gateway_quota
    reason = cgroups.unavailable()
    if reason is not None:
        ctx.skip(f"G (gateway mode, {quota:.0%} CPU quota) skipped: {reason}")
        return
    down: dict[str, Row] = {}
    up: dict[str, Row] = {}
    for bridge in PEER_BRIDGES:
        variant = Variant(bridge, quota, scenario="G")
        down[bridge] = p4(ctx, variant=variant, seconds=ctx.budget.fp_down_seconds, open_first=True)
        up[bridge] = p1_upload(
            ctx, 115200, "hex", PROPOSED_GUARD, ctx.budget.fp_up_seconds, variant
        )
        for row in (down[bridge], up[bridge]):
            row.settings = f"{row.settings}, CPU quota {quota:.0%}"
            row.target, row.met = "≥ 97 % of ceiling", (row.ratio or 0) >= 0.97 and row.intact
    b, p = "bridged", "peer"
    ctx.compare(
        f"start to all six listeners ready, {quota:.0%} CPU quota",
        "s",
        down[b].ready,
        down[p].ready,
        "≤ 2 x peer's",
        lambda x, y: x <= 2 * y,
        down[b],
    )
    for name, rows in (("download 921600 hex x6", down), ("upload 115200 hex", up)):
        ctx.compare(
            f"share of the ceiling held under {quota:.0%} quota, {name}",
            "ratio",
            rows[b].ratio,
            rows[p].ratio,
            "≥ 0.97",
            lambda x, y: x >= 0.97,
            rows[b],
        )


def _target(row: Row) -> Row:
    """F rows are judged side by side (the comparison table), not one by one."""
    row.target, row.met = "(beside the peer)", None
    return row


SCENARIOS: dict[str, Callable[[Context], Any]] = {
    "P1": p1,
    "P2": p2,
    "P3": p3,
    "P4": p4,
    "P5": p5,
    "P6": p6,
    "NB": nb,
    "F": footprint,
    "G": gateway,
}


def _register_late() -> None:
    # Scenarios in their own modules (they import this one's helpers).
    from tests.bench.dataformat import df

    SCENARIOS["DF"] = df


_register_late()


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load": procstat.load_average(),
        "uname": " ".join(os.uname()),
    }
