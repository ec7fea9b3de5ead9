"""``python -m tests.bench.upload_cpu``: the bulk upload's CPU per chunk, to the microsecond.

The F row "bulk upload 115200 hex" reads the bridge's CPU from ``/proc/<pid>/stat`` in
10 ms ticks; at 1.6 sends a second a 60 s row is 15 ticks for bridged, so a tick either
way moves its ratio to the peer by 0.1-0.3. Here the same rig (emulator at 115200 baud,
hex, prompt wait 0.5 s, guard 0, one socket, the sink server) runs bridged and the peer
in turn, and their CPU is read in nanoseconds from every thread's
``/proc/<pid>/task/<tid>/schedstat`` (sampled every 0.1 s, so a thread that ends —
the peer's per-client thread — still counts up to its last sample). Per run it prints
the CPU while idle (per second, before the upload) and per chunk of the upload.

It also measures the floor under any reactor loop on this machine: the CPU of one
wake-up of a Twisted timer that does nothing, against a bare ``select`` timeout. A
send costs bridged four wake-ups (``>``, the prompt delay's timer, ``OK``, the
``+QSSLSEND`` result), whatever it does in each. And bridged's own work per send, hot
and deterministic: one steady-state send cycle (``>``, the prompt delay, ``OK``, the
result and the next ``AT+QSSLSEND``) through the real shell and core on a virtual clock
(:mod:`tests.bench.byte_path`'s set-up, logging at level info), counted in Python and C
calls and timed.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import timeit
from pathlib import Path
from typing import Any

from tests.bench.clients import Pusher
from tests.bench.rig import REPO, ProcessRig, RigSettings
from tests.bench.scenarios import _record, _wait_for
from tests.support.pki import make_pki

CHUNK = 730  # a full hex send

WAKE_UP_FLOOR = """
import select, sys, time
n, period = 160, 0.158  # about a send's four wake-ups in its 0.63 s
if sys.argv[1] == "twisted":
    from twisted.internet import reactor
    count, start = [0], [0.0]
    def tick():
        count[0] += 1
        if count[0] == 8:
            start[0] = time.process_time()
        if count[0] == n + 8:
            print((time.process_time() - start[0]) / n); reactor.stop(); return
        reactor.callLater(period, tick)
    reactor.callLater(period, tick)
    reactor.run()
else:
    for _ in range(8):
        select.select([], [], [], period)
    start = time.process_time()
    for _ in range(n):
        select.select([], [], [], period)
    print((time.process_time() - start) / n)
"""


class ThreadCpu:
    """A process's CPU in ns and its times on a CPU (wake-ups, near enough: a sleeping
    process is scheduled in once per wake-up) over all its threads, ended ones up to their
    last sample."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last: dict[str, int] = {}
        self._slices: dict[str, int] = {}
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _scan(self) -> None:
        for path in glob.glob(f"/proc/{self.pid}/task/*/schedstat"):
            try:
                with open(path) as f:
                    fields = f.read().split()
                self._last[path] = int(fields[0])
                self._slices[path] = int(fields[2])
            except (OSError, ValueError):
                pass  # the thread ended between the glob and the read

    def _sample(self) -> None:
        while not self._stop.wait(0.1):
            self._scan()

    def ns(self) -> int:
        self._scan()
        return sum(self._last.values())

    def slices(self) -> int:
        """Times the threads were scheduled in so far (read with the last :meth:`ns`)."""
        return sum(self._slices.values())

    def stop(self) -> None:
        self._stop.set()


def run_one(workdir: Path, bridge: str, chunks: int, idle: float) -> dict[str, Any]:
    settings = RigSettings(115200, "hex", 0.5, 0.0, servers=("sink",), bridge=bridge)
    rig = ProcessRig(workdir / bridge, make_pki(workdir / "pki"), settings)
    try:
        rig.start()
        time.sleep(2)  # start-up's own timers run out
        cpu = ThreadCpu(rig.bridge_pid)
        i0, it0 = cpu.ns(), time.monotonic()
        time.sleep(idle)
        i1, it1 = cpu.ns(), time.monotonic()
        total = CHUNK * chunks
        c0, t0 = cpu.ns(), time.monotonic()
        s0 = cpu.slices()
        pusher = Pusher(rig.connect(0), total).start()
        record = _wait_for(
            lambda: (r := _record(rig, 0)) and r["bytes"] >= total and r, 3 * chunks + 60, "upload"
        )
        c1, t1 = cpu.ns(), time.monotonic()
        s1 = cpu.slices()
        cpu.stop()
    finally:
        rig.stop()
    return {
        "bridge": bridge,
        "idle_us_per_s": (i1 - i0) / (it1 - it0) / 1e3,
        "us_per_chunk": (c1 - c0) / chunks / 1e3,
        "wakeups_per_chunk": (s1 - s0) / chunks,
        "cpu_s_per_mb": (c1 - c0) / 1e9 / (total / 1e6),
        "seconds": t1 - t0,
        "intact": record["bytes"] >= total and not record["errors"] and not pusher.error,
        "load": os.getloadavg()[0],
    }


def wake_up_floor() -> dict[str, float]:
    floor = {}
    for kind in ("twisted", "select"):
        out = subprocess.run(
            [sys.executable, "-c", WAKE_UP_FLOOR, kind], capture_output=True, text=True, check=True
        )
        floor[kind] = float(out.stdout) * 1e6
    return floor


def send_cycle() -> tuple[float, float, float]:
    """Python calls, C calls and µs (hot) of one steady-state send cycle."""
    from bridged.ops.logs import setup_logging, trace_urcs
    from tests.bench.byte_path import build

    setup_logging("info", io.StringIO())
    clock, engine, _serial, client, _ = build()
    trace_urcs(engine)
    client.dataReceived(b"x" * 1460 * 400)  # more than the cycles below send

    def cycle() -> None:
        engine.dataReceived(b"\r\n> ")
        clock.advance(0.5)
        engine.dataReceived(b"\r\nOK\r\n")
        engine.dataReceived(b"\r\n+QSSLSEND: 1,0,0\r\n")

    for _ in range(3):
        cycle()
    counts = {"call": 0, "c_call": 0}

    def count(_frame: object, event: str, _arg: object) -> None:
        if event in counts:
            counts[event] += 1

    sys.setprofile(count)
    for _ in range(10):
        cycle()
    sys.setprofile(None)
    seconds = min(timeit.repeat(cycle, number=100, repeat=3)) / 100
    return counts["call"] / 10, counts["c_call"] / 10, seconds * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.upload_cpu", description=__doc__)
    parser.add_argument("--runs", type=int, default=3, help="runs of each bridge, in turn")
    parser.add_argument("--chunks", type=int, default=60, help="chunks per upload (0.63 s each)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured first")
    parser.add_argument("--bridges", nargs="+", default=["bridged", "peer"])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bridged-upload-cpu"))
    args = parser.parse_args(argv)
    compileall.compile_dir(REPO / "bridged", quiet=1)  # as installed (see the suite)
    print(f"load at start {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict[str, Any]]] = {b: [] for b in args.bridges}
    for run in range(args.runs):
        for bridge in args.bridges:
            result = run_one(args.workdir / f"run{run}", bridge, args.chunks, args.idle)
            results[bridge].append(result)
            print(
                json.dumps(
                    {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}
                ),
                flush=True,
            )
    print()
    print(
        "| bridge | µs per chunk, median (min-max) | CPU s/MB, median"
        " | wake-ups per chunk, median | idle µs/s, median | runs intact |"
    )
    print("|---|---|---|---|---|---|")
    for bridge, rows in results.items():
        per_chunk = [r["us_per_chunk"] for r in rows]
        print(
            f"| {bridge} | {statistics.median(per_chunk):.0f}"
            f" ({min(per_chunk):.0f}-{max(per_chunk):.0f})"
            f" | {statistics.median(r['cpu_s_per_mb'] for r in rows):.2f}"
            f" | {statistics.median(r['wakeups_per_chunk'] for r in rows):.1f}"
            f" | {statistics.median(r['idle_us_per_s'] for r in rows):.0f}"
            f" | {sum(r['intact'] for r in rows)}/{len(rows)} |"
        )
    floor = wake_up_floor()
    python_calls, c_calls, micros = send_cycle()
    print()
    print(
        f"bridged's send cycle, hot: {python_calls:.0f} Python calls, {c_calls:.0f} C calls,"
        f" {micros:.0f} µs"
    )
    print(
        f"one wake-up of a no-op timer: Twisted {floor['twisted']:.0f} µs, bare select "
        f"{floor['select']:.0f} µs (CPU); load at end {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
