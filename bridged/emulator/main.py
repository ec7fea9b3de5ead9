"""``bridged emulate`` / ``python -m bridged.emulator``: the emulator as a process."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from types import FrameType
from typing import Any

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from bridged.emulator.emulator import DEFAULT_BAUD, Emulator
from bridged.emulator.profiles import PROFILES

_log = Logger()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridged emulate",
        description="Emulate a Quectel BC26 (SSL AT commands) on a pty.",
        epilog="Signals: SIGUSR1 reboots the module, SIGUSR2 hangs the line up for 2 s.",
    )
    parser.add_argument("--device", required=True, help="symlink to create for the pty")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="line rate to pace at")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="nbiot")
    parser.add_argument("--seed", type=int, default=None, help="seed for random delays")
    parser.add_argument(
        "--prompt-max-delay",
        type=float,
        default=None,
        help="data mode begins uniform(0, this) s after '>' (default: the profile's)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)], redirectStandardIO=False)
    profile = PROFILES[args.profile]
    if args.prompt_max_delay is not None:
        profile = replace(profile, prompt_max_delay=args.prompt_max_delay)
    emulator = Emulator(args.device, baud=args.baud, profile=profile, seed=args.seed)
    r: Any = reactor

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            r.callFromThread(emulator.reboot)
        else:
            r.callFromThread(emulator.hangup, 2.0)

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGUSR2, on_signal)
    r.callWhenRunning(emulator.start)
    r.addSystemEventTrigger("before", "shutdown", emulator.stop)
    _log.info("emulating a BC26 at {device} ({profile})", device=args.device, profile=args.profile)
    r.run()
    return 0
