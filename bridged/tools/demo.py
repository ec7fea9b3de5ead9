"""``bridged demo``: the whole path on one machine, no hardware.

Starts, in one process: a TLS echo server that demands a client certificate (restricted to
suites the module offers), the emulated module (``--model``: bc26 by default, or bc20,
bc660k, bc950k: one profile for emulator, bridge and echo server) on a temporary pty, and
the bridge with generated certificates and configuration. Socket 0 then is an echo at
127.0.0.1:7000.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import socket
import socketserver
import ssl
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trustme
from twisted.logger import Logger

from bridged.core.module_profile import BC26, BUILTIN_PROFILES, ModuleProfile
from bridged.tools.module_tls import openssl_cipher_string

log = Logger(namespace="bridged.demo")


@dataclass(frozen=True)
class DemoPki:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_demo_pki(
    directory: Path,
    server_names: tuple[str, ...] = ("localhost", "127.0.0.1"),
    client_name: str = "bridged-demo-client",
) -> DemoPki:
    """A throw-away CA with an RSA server and client identity (the module does RSA only)."""
    rsa = trustme.KeyType.RSA
    ca = trustme.CA(key_type=rsa, organization_name="bridged demo CA")
    server = ca.issue_cert(*server_names, key_type=rsa)
    client = ca.issue_cert(client_name, common_name=client_name, key_type=rsa)
    pki = DemoPki(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(pki.ca_cert))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    for key in (pki.server_key, pki.client_key):
        key.chmod(0o600)
    return pki


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        conn: ssl.SSLSocket = self.request
        try:
            conn.do_handshake()
            while data := conn.recv(65536):
                conn.sendall(data)
        except (OSError, ssl.SSLError) as e:
            log.info("demo echo server: connection ended: {error}", error=e)
        finally:
            conn.close()


class TlsEchoServer(socketserver.ThreadingTCPServer):
    """A mutual-TLS echo server in background threads (the 'cloud' of the demo)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, pki: DemoPki, port: int = 0, module: ModuleProfile = BC26) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        # What this module can negotiate, nothing else.
        context.set_ciphers(openssl_cipher_string(module.cipher_suites))
        context.load_cert_chain(pki.server_cert, pki.server_key)
        context.load_verify_locations(pki.ca_cert)
        context.verify_mode = ssl.CERT_REQUIRED
        self.context = context
        super().__init__(("127.0.0.1", port), _EchoHandler)

    def get_request(self) -> tuple[Any, Any]:
        conn, address = self.socket.accept()
        return self.context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False), (
            address
        )

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        threading.Thread(target=self.serve_forever, name="demo-echo", daemon=True).start()


def demo_config(
    directory: Path,
    device: Path,
    pki: DemoPki,
    server_port: int,
    port: int,
    metrics_port: int,
    model: str = "bc26",
) -> str:
    return f"""\
# Written by `bridged demo`: socket 0 is a mutual-TLS echo through the emulated module.
serial:
  device: {device}
  baudrate: 115200
modem:
  model: {model}
  prompt_delay: 0.5
ssl:
  seclevel: 2
  sslversion: 4
  dataformat: {{send: text, recv: hex}}   # the default
  cacert: {pki.ca_cert}
  clientcert: {pki.client_cert}
  clientkey: {pki.client_key}
sockets:
  - connect_id: 0
    listen: 127.0.0.1:{port}
    remote: 127.0.0.1:{server_port}
    mode: on-demand
metrics:
  listen: 127.0.0.1:{metrics_port}
control:
  socket: {directory}/control.sock
"""


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def demo_main(args: argparse.Namespace) -> int:
    # The banner promises Ctrl+C. A shell without job control starts background commands
    # with SIGINT ignored, and Twisted then leaves it ignored: take it back.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from twisted.internet import defer
    from twisted.internet import reactor as global_reactor

    from bridged.config import load_config
    from bridged.emulator import Emulator
    from bridged.ops.logs import setup_logging
    from bridged.shell.daemon import Daemon, install_extras

    reactor: Any = global_reactor  # its methods live on several interfaces
    for port, what in ((args.port, "--port"), (args.metrics_port, "--metrics-port")):
        if not _port_free(port):
            print(f"bridged demo: 127.0.0.1:{port} is in use; pick another {what}", file=sys.stderr)
            return 1
    setup_logging(args.log_level)
    directory = Path(tempfile.mkdtemp(prefix="bridged-demo-"))
    directory.chmod(0o700)
    pki = make_demo_pki(directory)
    module = BUILTIN_PROFILES[getattr(args, "model", "bc26")]
    server = TlsEchoServer(pki, module=module)
    server.start()
    device = directory / f"tty{module.name.upper()}"
    emulator = Emulator(device, baud=args.baud, profile=args.profile, module_profile=module)
    config_path = directory / "bridged.yaml"
    config_path.write_text(
        demo_config(directory, device, pki, server.port, args.port, args.metrics_port, module.name)
    )
    config = load_config(config_path)
    daemon = Daemon(reactor, config)

    async def start() -> None:
        emulator.start()
        await emulator.when_ready()
        install_extras(daemon, reactor, config)
        daemon.start()
        await daemon.ready_once
        print(
            f"""
bridged demo is running (Ctrl+C to stop).
  emulated {module.label:<12} on {device} ({args.baud} baud, profile {args.profile})
  TLS echo server on    127.0.0.1:{server.port} (mutual TLS, module suites only)
  socket 0 listens on   127.0.0.1:{args.port}
  metrics               http://127.0.0.1:{args.metrics_port}/metrics
  config and certs in   {directory}

Try it (each byte goes through AT+QSSLSEND, TLS, the echo server and a recv URC):
  python3 -c "import socket; s=socket.create_connection(('127.0.0.1',{args.port})); \
s.sendall(b'hello'); print(s.recv(99))"
  socat - TCP:127.0.0.1:{args.port}                  (type lines; Ctrl+D ends)
  curl -s http://127.0.0.1:{args.metrics_port}/metrics | grep bridged_socket
  bridged at -s {directory}/control.sock AT+CSQ     (AT passthrough)
  bridged status -s {directory}/control.sock       (what bridged is doing)
""",
            flush=True,
        )

    def stop() -> defer.Deferred[None]:
        log.info("bridged demo stopping")  # (Twisted's "Received SIGINT" line is filtered)
        d = defer.Deferred.fromCoroutine(daemon.stop())
        d.addBoth(lambda _: emulator.stop())
        return d

    def failed(failure: Any) -> None:
        log.failure("demo failed to start", failure)
        reactor.stop()

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()).addErrback(failed))
    reactor.addSystemEventTrigger("before", "shutdown", stop)
    try:
        reactor.run()
    finally:
        server.shutdown()
        shutil.rmtree(directory, ignore_errors=True)
    return 1 if daemon.fatal else 0
