"""``python -m tests.bench``: run the scenarios and print one table."""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from tests.bench import procstat
from tests.bench.report import comparison_table, table
from tests.bench.rig import PROFILE_ENV, REPO
from tests.bench.scenarios import BUDGETS, SCENARIOS, Context, machine
from tests.support.pki import make_pki


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="bridged against the BC26 emulator at real line rates: throughput "
        "against the protocol ceiling, fairness, latency, CPU and memory.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="short runs (a few minutes)")
    size.add_argument("--smoke", action="store_true", help="minimal runs: does it all work")
    parser.add_argument(
        "--scenario", nargs="+", choices=list(SCENARIOS), help="only these (default: all)"
    )
    parser.add_argument("--workdir", type=Path, help="keep logs and configs here")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument(
        "--profile", type=Path, help="run bridged under cProfile, one <row>.prof file here"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    budget = BUDGETS["quick" if args.quick else "smoke" if args.smoke else "full"]
    chosen = args.scenario or list(SCENARIOS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bridged-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(args.profile.resolve())

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    # As installed (pip compiles bytecode), not as this checkout runs with
    # PYTHONDONTWRITEBYTECODE: otherwise every start compiles bridged's modules again.
    compileall.compile_dir(REPO / "bridged", quiet=1)
    context = Context(workdir, make_pki(workdir / "pki"), budget, log)
    info = machine()
    started = time.monotonic()
    log(f"bridged bench ({budget.name}): {', '.join(chosen)}; work in {workdir}")
    log(f"{info['cpus']} CPUs, load {' '.join(f'{v:.2f}' for v in info['load'])}")
    failures = []
    for name in chosen:
        log(f"{name} ...")
        try:
            SCENARIOS[name](context)
        except Exception as e:  # one broken scenario should not hide the others' numbers
            failures.append(f"{name}: {type(e).__name__}: {e}")
            log(f"  {name} failed: {e}")
    elapsed = time.monotonic() - started
    load = procstat.load_average()
    print(
        f"bridged bench, {budget.name} run: {elapsed / 60:.1f} min on {info['cpus']} CPUs, "
        f"Python {platform.python_version()}; load average at start "
        f"{info['load'][0]:.2f}, at end {load[0]:.2f} (1 min)"
    )
    print()
    print(table(context.rows))
    if context.comparisons:
        print()
        print("bridged beside the peer (tests/bench/peer.py), same run:")
        print()
        print(comparison_table(context.comparisons))
    for reason in context.skipped:
        print(reason)
    for failure in failures:
        print(f"FAILED {failure}")
    if args.json:
        rows = [asdict(r) | {"ratio": r.ratio} for r in context.rows]
        comparisons = [asdict(c) | {"ratio": c.ratio} for c in context.comparisons]
        document = {"machine": info, "rows": rows, "comparisons": comparisons}
        args.json.write_text(json.dumps(document, indent=1))
    if args.workdir is None and not failures:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failures else 0
