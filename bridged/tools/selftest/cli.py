"""``bridged selftest``: the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bridged.core.module_profile import BUILTIN_PROFILES
from bridged.tools.selftest.findings import EchoServer, SelftestOptions
from bridged.tools.selftest.line import PortBusy, port_holders
from bridged.tools.selftest.report import report_json, report_table
from bridged.tools.selftest.run import run_on_device


def _parse_echo(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridged selftest",
        description="Check a real module against what bridged assumes (daemon stopped).",
    )
    p.add_argument("--device", required=True, help="serial device of the module")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--model", choices=["auto", *BUILTIN_PROFILES], default="auto")
    p.add_argument("--echo", type=_parse_echo, metavar="HOST:PORT", help="a TLS echo server")
    p.add_argument("--cacert", type=Path, help="CA that signed the echo server")
    p.add_argument("--clientcert", type=Path, help="client certificate the echo server trusts")
    p.add_argument("--clientkey", type=Path, help="its key")
    p.add_argument(
        "--closed-port", type=int, default=1, help="a port on the echo host nothing listens on"
    )
    p.add_argument("--sends-per-step", type=int, default=6, help="sends per prompt-wait step")
    p.add_argument("--out", type=Path, help="directory for report, profile, transcript")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def selftest_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    echo = None
    if args.echo:
        missing = [n for n in ("cacert", "clientcert", "clientkey") if getattr(args, n) is None]
        if missing:
            print(f"bridged selftest: --echo needs --{', --'.join(missing)}", file=sys.stderr)
            return 2
        echo = EchoServer(
            args.echo[0],
            args.echo[1],
            args.cacert,
            args.clientcert,
            args.clientkey,
            args.closed_port,
        )
    holders = port_holders(args.device)
    if holders:
        who = "; ".join(f"pid {pid}: {command}" for pid, command in holders)
        print(
            f"bridged selftest: {args.device} is in use ({who}); stop it first "
            "(systemctl stop bridged)",
            file=sys.stderr,
        )
        return 3
    out = args.out or Path(time.strftime("selftest-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    options = SelftestOptions(model=args.model, echo=echo, sends_per_step=args.sends_per_step)
    try:
        t, profile_text = run_on_device(args.device, args.baud, options, out)
    except PortBusy as exc:
        print(f"bridged selftest: {exc}", file=sys.stderr)
        return 3
    report = report_json(t, profile_text)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    table = report_table(t)
    (out / "report.txt").write_text(table + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table)
        print(f"\nprofile: {out / 'module-profile.yaml'}\ntranscript: {out / 'transcript.trace'}")
    return 1 if report["differs"] else 0
