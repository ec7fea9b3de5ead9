"""``bridged emulate`` / ``python -m bridged.emulator``: the emulator as a process."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from types import FrameType
from typing import Any

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from bridged.config.module_profile_file import load_profile_file
from bridged.core.module_profile import BUILTIN_PROFILES, ModuleProfileError
from bridged.emulator.emulator import DEFAULT_BAUD, Emulator
from bridged.emulator.profiles import PROFILES

_log = Logger()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridged emulate",
        description="Emulate a Quectel BC26, BC20, BC660K-GL or BC950K-GL (SSL AT commands) "
        "on a pty.",
        epilog="Signals: SIGUSR1 reboots the module, SIGUSR2 hangs the line up for 2 s.",
    )
    parser.add_argument("--device", required=True, help="symlink to create for the pty")
    parser.add_argument("--baud", type=int, default=DEFAULT_BAUD, help="line rate to pace at")
    # "--profile" is the old spelling of --timing, kept working.
    parser.add_argument(
        "--timing",
        "--profile",
        dest="timing",
        choices=sorted(PROFILES),
        default="nbiot",
        help="timing: fast (tests) or nbiot (realistic latencies); default nbiot",
    )
    model = parser.add_mutually_exclusive_group()
    model.add_argument(
        "--model",
        "--module-profile",
        dest="module_profile",
        choices=sorted(BUILTIN_PROFILES),
        default="bc26",
        help="built-in module model to emulate (default bc26; the same as modem.model)",
    )
    model.add_argument(
        "--profile-file",
        help="module profile file (YAML, 'base:' + overrides; bridged selftest writes one)",
    )
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
    if args.profile_file:
        try:
            module = load_profile_file(args.profile_file)
        except ModuleProfileError as exc:
            print(f"bridged emulate: {exc}", file=sys.stderr)
            return 2
    else:
        module = BUILTIN_PROFILES[args.module_profile]
    profile = PROFILES[args.timing]
    if args.prompt_max_delay is not None:
        profile = replace(profile, prompt_max_delay=args.prompt_max_delay)
    emulator = Emulator(
        args.device, baud=args.baud, profile=profile, seed=args.seed, module_profile=module
    )
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
    _log.info(
        "emulating a {module} at {device} ({timing} timing)",
        module=module.label,
        device=args.device,
        timing=args.timing,
    )
    r.run()
    return 0
