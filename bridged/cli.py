"""The ``bridged`` command: run, demo, emulate, check-config, at, status, probe, selftest,
replay."""

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
    run.add_argument(
        "--trace", metavar="PATH", help="record the serial line to PATH (see bridged replay)"
    )

    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("-c", "--config", required=True, help="YAML configuration file")

    demo = sub.add_parser(
        "demo", help="emulator + TLS echo server + bridge on this machine, until Ctrl+C"
    )
    demo.add_argument("--port", type=int, default=7000, help="echo listener port (7000)")
    demo.add_argument("--metrics-port", type=int, default=9464, help="metrics port (9464)")
    demo.add_argument("--baud", type=int, default=115200, help="emulated line rate")
    demo.add_argument("--profile", choices=["fast", "nbiot"], default="fast")
    demo.add_argument(
        "--model",
        choices=["bc26", "bc20", "bc660k", "bc950k"],  # module_profile.BUILTIN_PROFILES
        default="bc26",
        help="the emulated module model (bc26)",
    )
    demo.add_argument("--log-level", choices=["debug", "info", "warn", "error"], default="info")

    at = sub.add_parser("at", help="send one AT command through the running daemon")
    at.add_argument("at_command", metavar="COMMAND", help="e.g. 'AT+CSQ'")
    at.add_argument(
        "-s", "--socket", help="control socket (default: from -c, else /run/bridged/control.sock)"
    )
    at.add_argument("-c", "--config", help="take the control socket path from this config")
    at.add_argument("--timeout", type=float, default=15.0)

    status = sub.add_parser("status", help="what the running daemon is doing, on one screen")
    where = status.add_mutually_exclusive_group()
    where.add_argument(
        "-s", "--socket", help="control socket (default: from -c, else /run/bridged/control.sock)"
    )
    where.add_argument("-c", "--config", help="take the control socket path from this config")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument("--timeout", type=float, default=10.0)

    probe = sub.add_parser(
        "probe", help="will this server accept the module's TLS?", add_help=False
    )
    probe.add_argument("args", nargs=argparse.REMAINDER)

    emulate = sub.add_parser("emulate", help="run the BC26 emulator on a pty", add_help=False)
    emulate.add_argument("args", nargs=argparse.REMAINDER)

    selftest = sub.add_parser(
        "selftest", help="check a real module against bridged's assumptions", add_help=False
    )
    selftest.add_argument("args", nargs=argparse.REMAINDER)

    replay = sub.add_parser(
        "replay", help="replay a serial trace through the codec", add_help=False
    )
    replay.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # These parse their own options (argparse would take theirs for ours).
    if argv[:1] == ["emulate"]:
        from bridged.emulator.main import main as emulator_main

        return emulator_main(argv[1:])
    if argv[:1] == ["probe"]:
        from bridged.tools.probe import probe_main

        return probe_main(argv[1:])
    if argv[:1] == ["selftest"]:
        from bridged.tools.selftest import selftest_main

        return selftest_main(argv[1:])
    if argv[:1] == ["replay"]:
        from bridged.tools.replay import replay_main

        return replay_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        from bridged.config import check_config_main

        return check_config_main(args.config)
    if args.command == "run":
        from bridged.shell.daemon import run_main

        return run_main(args.config, args.log_level, args.trace)
    if args.command == "demo":
        from bridged.tools.demo import demo_main

        return demo_main(args)
    if args.command == "at":
        from bridged.ops.passthrough import at_client_main

        path = _control_socket(args)
        if path is None:
            return 2
        return at_client_main(args.at_command, path, args.timeout)
    if args.command == "status":
        from bridged.ops.status import status_client_main

        path = _control_socket(args)
        if path is None:
            return 2
        return status_client_main(path, args.json, args.timeout)
    raise AssertionError(args.command)


def _control_socket(args: argparse.Namespace) -> str | None:
    """The control socket: ``-s``, else the one ``-c``'s config names, else the default;
    None (after saying why) when the config cannot be read."""
    if args.socket is not None:
        return str(args.socket)
    if args.config:
        from bridged.config import ConfigError, load_config

        try:
            return str(load_config(args.config, check_files=False).control.socket)
        except ConfigError as e:
            print(f"bridged: {e}", file=sys.stderr)
            return None
    return "/run/bridged/control.sock"


if __name__ == "__main__":
    sys.exit(main())
