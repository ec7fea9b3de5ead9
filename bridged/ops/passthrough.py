"""AT passthrough for field engineers: the daemon owns the port, so minicom can't be used.

A unix socket (mode 0660 by default, optional group) takes one AT command per line. Each is
queued like any other command, at low priority, and answered with the module's lines and
its final result, then the connection may send the next. Commands that would break the
bridge's own state are refused with a reason. ``bridged at 'AT+CSQ'`` is the client.

Wire format (readable with ``socat - UNIX-CONNECT:/run/bridged/control.sock``)::

    > AT+CSQ
    < +CSQ: 23,99
    < OK                       final line: OK, ERROR, +CME ERROR: <n>,
                               REFUSED: <why>, TIMEOUT, UNAVAILABLE: <why>
    > STATUS                   not an AT command: the daemon's status (bridged status)
    < {"version": ...}         as one line of JSON, then OK
"""

from __future__ import annotations

import grp
import os
import re
import socket
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver

from bridged.core.at_session import PROBES
from bridged.shell.at_engine import ATEngine, CommandError, CommandTimeout, Priority, SerialLost

log = Logger(namespace="bridged.passthrough")

PASSTHROUGH_TIMEOUT = 10.0
MAX_COMMAND = 256
FINAL_PREFIXES = ("OK", "ERROR", "+CME ERROR", "REFUSED:", "TIMEOUT", "UNAVAILABLE:")

# An allowlist: queries, tests (``=?``) and the read forms of settings pass; nothing else.
# A denylist can never be complete: every command that opens a '>' prompt (AT+QISEND,
# AT+CMGS, AT+QSSLSEND, ...) would take the next bridged command as its payload.
_ALLOWED: list[re.Pattern[str]] = [
    re.compile(r"^AT$"),
    re.compile(r"^ATI$"),
    re.compile(r"^AT\+(CGMR|CGMM|CGMI|CGSN|CIMI|CCID|QCCID|CSQ|CESQ|CCLK|QGMR)$"),
    re.compile(r"^AT\+CGSN=[01]$"),
    re.compile(r"^AT\+QENG=0$"),
    # Reads of settings and state: AT+CEREG?, AT+CFUN?, AT+QSSLOPEN?, ...
    re.compile(r"^AT\+[A-Z]+\?$"),
    # Tests: the ranges a command takes.
    re.compile(r"^AT\+[A-Z]+=\?$"),
]
# Reads of one socket's QSSLCFG settings (all of them, or one by name).
_QSSLCFG_READ = re.compile(r'^AT\+QSSLCFG=\s*\d+\s*,\s*\d+\s*(,\s*"[A-Z]+"\s*)?$')
_CERT_KINDS = ('"CACERT"', '"CLIENTCERT"', '"CLIENTKEY"')
# The resync probes (bridged.core.at_session.PROBES) are the session's own: a passed-through
# copy answered late could be taken for a probe's answer.
_RESERVED = {probe.command.upper() for probe in PROBES}


def refusal(command: str, managed: Iterable[int]) -> str | None:
    """Why ``command`` may not be passed through, or None if it may."""
    text = command.strip().upper()
    if not text.startswith("AT"):
        return "not an AT command"
    if len(text) > MAX_COMMAND or not text.isascii() or not text.isprintable():
        return "not a single printable ASCII command line"
    text = text.replace(" ", "")
    if text in _RESERVED:
        return "reserved for bridged's own resync probe"
    if _QSSLCFG_READ.match(text):
        if text.endswith(_CERT_KINDS):
            return "certificate upload is a data-mode command; bridged uploads from its config"
        return None  # reading a socket's settings is harmless
    if any(pattern.match(text) for pattern in _ALLOWED):
        return None
    return (
        "only queries and reads of settings may be passed through (a write or a command "
        "that opens a '>' prompt would disturb bridged's own use of the module)"
    )


class PassthroughProtocol(LineOnlyReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1024

    def __init__(self, service: PassthroughService) -> None:
        self.service = service
        self.busy = False

    def lineReceived(self, line: bytes) -> None:
        command = line.decode("latin-1").strip()
        if not command:
            return
        request = self.service.requests.get(command.upper())
        if request is not None:  # a read-only request of the daemon's own (STATUS)
            self._send_lines(request())
            return
        if self.busy:
            self._send_lines(["REFUSED: one command at a time"])
            return
        self.busy = True
        d = self.service.run(command)
        d.addCallback(self._send_lines)
        d.addBoth(self._done)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._send_lines(["REFUSED: line too long"])
        assert self.transport is not None
        self.transport.loseConnection()

    def _send_lines(self, lines: list[str]) -> None:
        for text in lines:
            self.sendLine(text.encode("latin-1"))  # type: ignore[no-untyped-call]

    def _done(self, result: object) -> None:
        self.busy = False
        if isinstance(result, defer.Failure):  # type: ignore[attr-defined]
            log.failure("passthrough failed", result)


class PassthroughService(Factory):
    """Runs passed-through commands on the current engine."""

    noisy = False

    def __init__(
        self,
        engine: Callable[[], ATEngine | None],
        managed: Callable[[], Iterable[int]],
        requests: Mapping[str, Callable[[], list[str]]] | None = None,
    ) -> None:
        self.engine = engine
        self.managed = managed
        # Non-AT lines the daemon answers itself: the reply's lines, final line included.
        self.requests = dict(requests or {})

    def buildProtocol(self, addr: object) -> PassthroughProtocol:
        return PassthroughProtocol(self)

    @defer.inlineCallbacks
    def run(self, command: str):  # type: ignore[no-untyped-def]
        why = refusal(command, self.managed())
        if why is not None:
            log.info("passthrough refused {command!r}: {why}", command=command, why=why)
            return [f"REFUSED: {why}"]
        engine = self.engine()
        if engine is None or not engine.connected:
            return ["UNAVAILABLE: serial port is not open"]
        log.info("passthrough: {command}", command=command)
        try:
            response = yield engine.command(
                command, timeout=PASSTHROUGH_TIMEOUT, priority=Priority.LOW, check_info=False
            )
        except CommandError as e:
            return [*e.lines, e.final.text]
        except CommandTimeout:
            return ["TIMEOUT"]
        except SerialLost as e:
            return [f"UNAVAILABLE: {e}"]
        except ValueError as e:
            return [f"REFUSED: {e}"]
        return [*response.lines, "OK"]


def listen_passthrough(
    reactor: object, path: Path, mode: int, group: str | None, service: PassthroughService
) -> IListeningPort:
    """Listen on ``path`` with ``mode`` (and ``group``), replacing a stale socket file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_socket():
        path.unlink()  # left by a previous run that did not stop cleanly
    port: IListeningPort = reactor.listenUNIX(str(path), service, mode=mode)  # type: ignore[attr-defined]
    os.chmod(path, mode)
    if group is not None:
        os.chown(path, -1, grp.getgrnam(group).gr_gid)
    log.info("AT passthrough on {path}", path=path)
    return port


def at_client_main(command: str, socket_path: str, timeout: float) -> int:
    """``bridged at 'AT+CSQ'``: print the module's answer; exit 0 on OK, 1 otherwise."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(command.encode("latin-1") + b"\n")
            buffer = b""
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    print("bridged at: the daemon closed the connection", file=sys.stderr)
                    return 2
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for raw in lines:
                    text = raw.decode("latin-1").rstrip("\r")
                    print(text)
                    if text.startswith(FINAL_PREFIXES):
                        return 0 if text == "OK" else 1
    except (OSError, TimeoutError) as e:
        print(f"bridged at: cannot talk to bridged at {socket_path}: {e}", file=sys.stderr)
        return 2
