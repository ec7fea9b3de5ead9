"""``python -m tests.bench.floor``: what importing costs, before any bridge code runs.

Each case is a fresh interpreter that imports something and exits, run plainly and under
the gateway rows' CPU quota (5 % of one core, :mod:`tests.bench.cgroups`): its CPU time,
its resident set after the imports, and its wall time under the quota. The cases: an
empty interpreter, the peer's imports (pyserial, threading), Twisted's reactor alone (the
floor of any Twisted daemon), and what ``bridged run`` imports before it opens the
serial port (with the metrics endpoint's). The floor says which part of bridged's start-up
no Twisted daemon can avoid; the second table, what each import after it adds.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import time

from tests.bench import cgroups
from tests.bench.rig import REPO

REPORT = (
    "import resource\n"
    "r = resource.getrusage(resource.RUSAGE_SELF)\n"
    "rss = next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]\n"
    "print(r.ru_utime + r.ru_stime, int(rss) / 1024, flush=True)\n"
    # No teardown of the modules: the wall time is the imports', not the exit's.
    "import os; os._exit(0)\n"
)
#: What ``bridged run`` imports, in order, the libraries it pulls in named on their own so
#: each one's share shows (``a+b``: imported together).
STEPS = (
    "twisted.internet.reactor",
    "yaml",
    "jsonschema",
    "bridged.config",
    "bridged.shell.daemon",
    "bridged.ops.logs",
    "bridged.ops.metrics",
    "bridged.shell.link_health+bridged.ops.passthrough+bridged.ops.status",
)
STEP_BY_STEP = """
import importlib, resource, sys
def usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    rss = next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]
    return r.ru_utime + r.ru_stime, int(rss) / 1024
for step in sys.argv[1:]:
    cpu, rss = usage()
    for name in step.split('+'):
        importlib.import_module(name)
    cpu2, rss2 = usage()
    print(step, cpu2 - cpu, rss2 - rss)
"""
CASES: dict[str, str] = {
    "python -c pass": "",
    "the peer's imports (serial, threading)": "import serial, threading",
    "import twisted.internet.reactor": "import twisted.internet.reactor",
    "what `bridged run` imports before opening the port": "import "
    + ", ".join(m for step in STEPS for m in step.split("+")),
}


def measure(code: str, quota: cgroups.CpuQuota | None) -> tuple[float, float, float]:
    """(CPU s, RSS MB, wall s) of one interpreter running ``code``."""
    command = [sys.executable, "-c", code + "\n" + REPORT]
    if quota is not None:
        command = quota.wrap(command)
    env = os.environ | {"PYTHONPATH": str(REPO)}
    started = time.monotonic()
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env).stdout
    wall = time.monotonic() - started
    cpu, rss = (float(v) for v in out.split())
    return cpu, rss, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.floor")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quota", type=float, default=0.05, help="share of one core")
    args = parser.parse_args(argv)
    compileall.compile_dir(REPO / "bridged", quiet=1)  # as installed
    reason = cgroups.unavailable()
    quota: cgroups.CpuQuota | None = None
    if reason is None:
        quota = cgroups.CpuQuota(f"bench-floor-{os.getpid()}")
        quota.create(args.quota)
    print(f"load {os.getloadavg()[0]:.2f}; medians of {args.runs} runs")
    print()
    print(f"| case | CPU s | RSS MB | wall s, {args.quota:.0%} CPU quota |")
    print("|---|---|---|---|")
    try:
        for name, code in CASES.items():
            plain = [measure(code, None) for _ in range(args.runs)]
            capped = [measure(code, quota) for _ in range(args.runs)] if quota else []
            cpu = statistics.median(p[0] for p in plain)
            rss = statistics.median(p[1] for p in plain)
            wall = f"{statistics.median(c[2] for c in capped):.2f}" if capped else "-"
            print(f"| {name} | {cpu:.3f} | {rss:.1f} | {wall} |")
    finally:
        if quota is not None:
            quota.remove()
    if reason is not None:
        print(f"(no quota: {reason})")
    print()
    print("What each import adds, in the order `bridged run` imports them (medians):")
    print()
    print("| import | + CPU s | + RSS MB |")
    print("|---|---|---|")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", STEP_BY_STEP, *STEPS],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout.split("\n")
        for _ in range(args.runs)
    ]
    for i, step in enumerate(STEPS):
        values = [run[i].split() for run in runs]
        cpu = statistics.median(float(v[1]) for v in values)
        rss = statistics.median(float(v[2]) for v in values)
        print(f"| {step.replace('+', ', ')} | {cpu:.3f} | {rss:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
