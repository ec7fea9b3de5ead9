"""The emulator as its own process for the benchmarks; its counters on the way out.

    python -m tests.bench.emulator_proc --device PATH --baud N --prompt-max-delay S \\
        --stats FILE [--seed N] [--max-unconfirmed-sends N]

Like ``bridged emulate --profile fast`` (by default no network latency and no uplink
limit: the serial line is the only bottleneck; ``--rtt`` and ``--uplink-rate`` add the
radio's), but on SIGTERM it writes :class:`EmulatorStats` as JSON
to ``--stats`` so a run can check that nothing was dropped on the emulator's side.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import asdict, replace
from types import FrameType
from typing import Any

from twisted.logger import globalLogBeginner, textFileLogObserver

from bridged.core.module_profile import BC26
from bridged.emulator import FAST, Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", required=True)
    parser.add_argument("--baud", type=int, default=115200)
    parser.add_argument("--prompt-max-delay", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rtt", type=float, default=0.0, help="network round trip, s")
    parser.add_argument("--uplink-rate", type=float, help="radio uplink, bytes/s")
    parser.add_argument("--stats", required=True)
    parser.add_argument(
        "--max-unconfirmed-sends",
        type=int,
        default=BC26.max_unconfirmed_sends,
        help="sends per socket the BC26 takes before the first one's +QSSLSEND result",
    )
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    # Data mode within the host's prompt wait; a send that stalls mid-data still ends.
    profile = replace(
        FAST,
        prompt_max_delay=args.prompt_max_delay,
        data_mode_timeout=10.0,
        rtt=args.rtt,
        uplink_rate=args.uplink_rate,
    )
    module = replace(BC26, max_unconfirmed_sends=args.max_unconfirmed_sends)
    emulator = Emulator(
        args.device, baud=args.baud, profile=profile, seed=args.seed, module_profile=module
    )
    r: Any = reactor

    def write_stats() -> None:
        stats = asdict(emulator.stats)
        stats["commands"] = dict(emulator.stats.commands)
        with open(args.stats, "w") as f:
            json.dump(stats, f)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        r.callFromThread(r.stop)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    r.callWhenRunning(emulator.start)
    r.addSystemEventTrigger("before", "shutdown", write_stats)
    r.addSystemEventTrigger("before", "shutdown", emulator.stop)
    r.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
