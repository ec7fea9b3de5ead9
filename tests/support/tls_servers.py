"""Real TLS servers in subprocesses (socat, openssl s_server) on free loopback ports.

    server = start_socat_echo_server(pki)            # mutual TLS echo (verify=1)
    ... connect to ("127.0.0.1", server.port) ...
    server.stop()

Each ``start_*`` waits until the port listens (or raises), and returns a
:class:`RunningServer` that is also a context manager. Waiting polls
``/proc/net/tcp`` so no probe connection disturbs the server.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from bridged.tools.module_tls import openssl_cipher_string
from tests.support.pki import Pki

LOOPBACK = "127.0.0.1"
#: The module's RSA suites as OpenSSL names, at a security level that allows TLS 1.0.
MODULE_COMPATIBLE_CIPHERS = openssl_cipher_string()


@dataclass
class RunningServer:
    port: int
    process: subprocess.Popen[bytes]
    host: str = LOOPBACK
    command: list[str] = field(default_factory=list)

    def stop(self) -> None:
        """Terminate (then kill) the server; idempotent."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=3)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_port(host: str = LOOPBACK) -> int:
    """A port nobody listens on right now (may race; ``start_*`` retries)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def is_listening(port: int) -> bool:
    """Whether some socket listens on TCP ``port`` (IPv4 or IPv6), from /proc."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                local, state = fields[1], fields[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def wait_for_listen(port: int, process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Block until ``port`` listens; raise if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not is_listening(port):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on port {port} after {timeout}s")
        time.sleep(0.01)


def start_server(
    make_command: Callable[[int], list[str]],
    *,
    log_path: Path | None = None,
    attempts: int = 3,
) -> RunningServer:
    """Run ``make_command(port)`` on a free port, retrying if the port was taken."""
    last_error: Exception | None = None
    for _ in range(attempts):
        port = free_port()
        command: list[str] = make_command(port)
        with contextlib.ExitStack() as stack:
            log = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
            # stdin stays open (a pipe) so s_server does not quit on EOF.
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=log, stderr=log, start_new_session=True
            )
        try:
            wait_for_listen(port, process)
        except (RuntimeError, TimeoutError) as exc:
            last_error = exc
            RunningServer(port, process).stop()
            continue
        return RunningServer(port, process, command=command)
    raise RuntimeError(f"could not start {make_command}: {last_error}")


def start_socat_tls_server(
    cert: Path,
    key: Path,
    *,
    cafile: Path | None = None,
    verify: bool = True,
    ciphers: str | None = MODULE_COMPATIBLE_CIPHERS,
    peer: str = "PIPE",
    extra_options: Sequence[str] = (),
    log_path: Path | None = None,
) -> RunningServer:
    """``socat OPENSSL-LISTEN:<port>,fork,... <peer>``: each connection talks to its own
    ``peer`` (``PIPE``: echo). For a server that ends connections itself use
    :func:`start_scripted_tls_server`: socat's half-close handling does not reliably
    send close_notify."""

    def command(port: int) -> list[str]:
        options = [f"OPENSSL-LISTEN:{port}", "bind=127.0.0.1", "reuseaddr", "fork"]
        options += [f"cert={cert}", f"key={key}", f"verify={int(verify)}"]
        if cafile is not None:
            options.append(f"cafile={cafile}")
        if ciphers:
            options.append(f"cipher={ciphers}")
        options += list(extra_options)
        return ["socat", "-d", "-d", ",".join(options), peer]

    return start_server(command, log_path=log_path)


def start_socat_echo_server(
    pki: Pki, *, require_client_cert: bool = True, log_path: Path | None = None
) -> RunningServer:
    """A TLS echo server with ``pki``'s server identity; verifies clients against
    ``pki.ca_cert`` when ``require_client_cert``."""
    return start_socat_tls_server(
        pki.server_cert,
        pki.server_key,
        cafile=pki.ca_cert if require_client_cert else None,
        verify=require_client_cert,
        log_path=log_path,
    )


def start_scripted_tls_server(
    pki: Pki,
    *,
    require_client_cert: bool = True,
    close_after: int | None = None,
    abrupt: bool = False,
    log_path: Path | None = None,
) -> RunningServer:
    """Python TLS echo server (``tls_script_server.py``) that can end connections
    itself: after ``close_after`` bytes, with close_notify or (``abrupt``) a reset."""

    def command(port: int) -> list[str]:
        args = [sys.executable, str(Path(__file__).with_name("tls_script_server.py"))]
        args += ["--port", str(port), "--cert", str(pki.server_cert), "--key", str(pki.server_key)]
        if require_client_cert:
            args += ["--cafile", str(pki.ca_cert)]
        if close_after is not None:
            args += ["--close-after", str(close_after)]
        if abrupt:
            args.append("--abrupt")
        return args

    return start_server(command, log_path=log_path)


def start_openssl_server(
    pki: Pki, options: Sequence[str], *, log_path: Path | None = None
) -> RunningServer:
    """``openssl s_server`` with ``pki``'s server identity and extra ``options``
    (e.g. ``["-tls1_3"]`` or ``["-cipher", "ECDHE-RSA-AES128-GCM-SHA256", "-no_tls1_3"]``).
    One connection at a time; not an echo server."""

    def command(port: int) -> list[str]:
        return [
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{port}",
            "-cert",
            str(pki.server_cert),
            "-key",
            str(pki.server_key),
            "-quiet",
            *options,
        ]

    return start_server(command, log_path=log_path)


def describe(server: RunningServer) -> str:
    return shlex.join(server.command)
