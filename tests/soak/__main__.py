"""``python -m tests.soak --minutes 10 [--seed N]``: the soak, its summary on stdout.

Exit status 0 when every check passed, 1 otherwise. The full log (info level) is kept
in the work directory; its path is printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twisted.internet import defer, task

from tests.soak.soak import SoakOptions, run_soak


def parse_args(argv: list[str] | None = None) -> SoakOptions:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="fault phase length")
    parser.add_argument("--seed", type=int, help="RNG seed (default: random, printed)")
    parser.add_argument(
        "--fault-gap",
        type=float,
        nargs=2,
        default=(2.0, 5.0),
        metavar=("MIN", "MAX"),
        help="seconds between faults, drawn uniformly (default 2 5)",
    )
    parser.add_argument("--stall-limit", type=float, default=30.0)
    parser.add_argument("--recovery-bound", type=float, default=45.0)
    parser.add_argument("--baud", type=int, default=921600)
    parser.add_argument(
        "--faults",
        help="comma-separated fault kinds making up the round (default: the full round)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="record the serial line to WORKDIR/serial.trace (read it with bridged replay)",
    )
    parser.add_argument("--workdir", type=Path, help="PKI, config, pty and log go here")
    parser.add_argument(
        "--split-format",
        action="store_true",
        help="text sockets send text and receive hex ({send: text, recv: hex})",
    )
    parser.add_argument(
        "--max-unconfirmed-sends",
        type=int,
        default=1,
        metavar="N",
        help="pipelined sends: the module takes N per socket before the first one's "
        "result, and bridged's module profile says so (default 1: no pipelining)",
    )
    args = parser.parse_args(argv)
    options = SoakOptions(
        minutes=args.minutes,
        fault_gap=(args.fault_gap[0], args.fault_gap[1]),
        stall_limit=args.stall_limit,
        recovery_bound=args.recovery_bound,
        baud=args.baud,
        workdir=args.workdir,
        trace=args.trace,
        fault_round=tuple(args.faults.split(",")) if args.faults else None,
        split_format=args.split_format,
        max_unconfirmed_sends=args.max_unconfirmed_sends,
    )
    if args.seed is not None:
        options.seed = args.seed
    return options


def main(argv: list[str] | None = None) -> None:
    options = parse_args(argv)

    async def soak(reactor: object) -> None:
        report = await run_soak(options, out=sys.stdout)
        print(report.format(), flush=True)
        if report.failures:
            raise SystemExit(1)

    task.react(lambda reactor: defer.Deferred.fromCoroutine(soak(reactor)))  # exits


if __name__ == "__main__":
    main()
