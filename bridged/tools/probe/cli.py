"""``bridged probe HOST:PORT``: the command line — which sockets' settings to try (from
``-c CONFIG`` or options), which module profile, text or JSON out, the exit code."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridged.config import Config, ConfigError, Endpoint, SocketConfig, load_config, module_profile
from bridged.core.module_profile import BC26, BUILTIN_PROFILES, ModuleProfile, ModuleProfileError
from bridged.tools.probe.diagnosis import SocketUnderTest, same_endpoint
from bridged.tools.probe.render import render_text, to_json
from bridged.tools.probe.report import run_probe
from bridged.tools.probe.ssl_settings import SslUnderTest

EXIT_ALL_WORK = 0
EXIT_SOME_FAIL = 1
EXIT_USAGE = 2

DEFAULT_TIMEOUT = 10.0


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridged probe",
        description="Try the TLS handshakes a BC26/BC20/BC660K/BC950K module would make "
        "against a server, and say whether each configured socket would connect.",
    )
    parser.add_argument(
        "--model",
        choices=sorted(BUILTIN_PROFILES),
        help="the module model (default: -c CONFIG's modem.model, else bc26)",
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the TLS server, as in remote:")
    parser.add_argument("-c", "--config", help="take the sockets' ssl settings from this file")
    parser.add_argument("--connect-id", type=int, help="with -c: only this socket")
    parser.add_argument("--cacert", help="without -c: CA certificate (seclevel 1)")
    parser.add_argument("--clientcert", help="without -c: client certificate (seclevel 2)")
    parser.add_argument("--clientkey", help="without -c: client key (seclevel 2)")
    parser.add_argument(
        "--sslversion", type=int, choices=range(5), default=4, help="without -c: 0..4 (4)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds per handshake ({DEFAULT_TIMEOUT:g})",
    )
    return parser


def probe_main(argv: list[str]) -> int:
    """``bridged probe ...`` (``argv`` without the subcommand): 0 if every verdict is
    works, 1 if any fails, 2 on usage or configuration errors."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        target, sockets, profile = _sockets_from_args(args)
    except UsageError as exc:
        print(f"bridged probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = run_probe(target, sockets, args.timeout, profile)
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        print(render_text(report), end="")
    return EXIT_ALL_WORK if report.all_work else EXIT_SOME_FAIL


def _sockets_from_args(
    args: argparse.Namespace,
) -> tuple[Endpoint, list[SocketUnderTest], ModuleProfile]:
    try:
        target = Endpoint.parse(args.target)
    except ValueError as exc:
        raise UsageError(f"HOST:PORT: {exc}") from None
    if not 0 < args.timeout <= 300:
        raise UsageError("--timeout must be in (0, 300] seconds")
    if args.config is None:
        if args.connect_id is not None:
            raise UsageError("--connect-id needs -c CONFIG")
        return target, [_command_line_socket(args)], BUILTIN_PROFILES[args.model or "bc26"]
    if any((args.cacert, args.clientcert, args.clientkey)):
        raise UsageError("give certificates either in -c CONFIG or as options, not both")
    config = _load(Path(args.config))
    try:
        configured = module_profile(config)
    except ModuleProfileError as exc:
        raise UsageError(str(exc)) from None
    # --model wins; "auto" in the configuration: the model is known only at start.
    profile = BUILTIN_PROFILES[args.model] if args.model else configured or BC26
    return target, _config_sockets(config, Path(args.config), target, args.connect_id), profile


def _command_line_socket(args: argparse.Namespace) -> SocketUnderTest:
    cacert, clientcert, clientkey = args.cacert, args.clientcert, args.clientkey
    if bool(clientcert) != bool(clientkey):
        raise UsageError("--clientcert and --clientkey go together")
    if clientcert and not cacert:
        raise UsageError("--clientcert needs --cacert: seclevel 2 also verifies the server")
    # The seclevel the files given allow, as the configuration would require them.
    seclevel = 2 if clientcert else 1 if cacert else 0
    for name, path in (
        ("--cacert", cacert),
        ("--clientcert", clientcert),
        ("--clientkey", clientkey),
    ):
        _check_readable(name, path)
    settings = SslUnderTest(seclevel, args.sslversion, cacert, clientcert, clientkey)
    return SocketUnderTest("command line", settings)


def _load(path: Path) -> Config:
    try:
        # Certificate files are checked below, only those the seclevel uses; the rest of
        # check_files (key permissions, control group) is about the gateway, not here.
        return load_config(path, check_files=False)
    except ConfigError as exc:
        raise UsageError(f"configuration errors:\n{exc}") from None


def _config_sockets(
    config: Config, path: Path, target: Endpoint, connect_id: int | None
) -> list[SocketUnderTest]:
    if connect_id is not None:
        chosen = [s for s in config.sockets if s.connect_id == connect_id]
        if not chosen:
            ids = ", ".join(str(s.connect_id) for s in config.sockets)
            raise UsageError(f"{path} has no socket with connect_id {connect_id} (has {ids})")
    else:
        chosen = [s for s in config.sockets if same_endpoint(s.remote, target)]
        if not chosen:
            remotes = ", ".join(f"{s.connect_id}: {s.remote}" for s in config.sockets)
            raise UsageError(
                f"no socket in {path} has remote {target} ({remotes}); use --connect-id"
            )
    return [_socket_under_test(s) for s in chosen]


def _socket_under_test(sock: SocketConfig) -> SocketUnderTest:
    ssl_settings = sock.ssl

    def used(name: str, level: int) -> str | None:
        value = getattr(ssl_settings, name)
        return str(value) if value is not None and ssl_settings.seclevel >= level else None

    settings = SslUnderTest(
        seclevel=ssl_settings.seclevel,
        sslversion=ssl_settings.sslversion,
        cacert=used("cacert", 1),
        clientcert=used("clientcert", 2),
        clientkey=used("clientkey", 2),
    )
    for name in ("cacert", "clientcert", "clientkey"):
        _check_readable(f"socket {sock.connect_id} {name}", getattr(settings, name))
    return SocketUnderTest(f"socket {sock.connect_id}", settings, sock.connect_id, sock.remote)


def _check_readable(name: str, path: str | None) -> None:
    """A file missing here is this machine's problem, not the server's: usage error."""
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{name}: cannot read {path}: {exc.strerror}") from None
