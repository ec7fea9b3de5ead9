"""The ``bridged`` command: run, demo, emulate, check-config."""

from __future__ import annotations

import argparse
import sys

from bridged import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridged",
        description="Expose a Quectel BC26/BC20 module's SSL sockets as local TCP listeners.",
    )
    parser.add_argument("--version", action="version", version=f"bridged {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bridge in the foreground (for systemd)")
    run.add_argument("-c", "--config", required=True, help="YAML configuration file")
    run.add_argument("--log-level", choices=["debug", "info", "warn", "error"])

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", required=True, help="YAML configuration file")

    demo = sub.add_parser(
        "demo", help="emulator + TLS echo server + bridge on this machine, until Ctrl+C"
    )
    demo.add_argument("--port", type=int, default=7000, help="echo listener port (7000)")
    demo.add_argument("--metrics-port", type=int, default=9464, help="metrics port (9464)")
    demo.add_argument("--baud", type=int, default=115200, help="emulated line rate")
    demo.add_argument("--profile", choices=["fast", "nbiot"], default="fast")
    demo.add_argument("--log-level", choices=["debug", "info", "warn", "error"], default="info")

    emulate = sub.add_parser("emulate", help="run the BC26 emulator on a pty", add_help=False)
    emulate.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        from bridged.config import check_config_main

        return check_config_main(args.config)
    if args.command == "run":
        from bridged.daemon import run_main

        return run_main(args.config, args.log_level)
    if args.command == "demo":
        from bridged.demo import demo_main

        return demo_main(args)
    if args.command == "emulate":
        from bridged.emulator.main import main as emulator_main

        return emulator_main(list(args.args))
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
