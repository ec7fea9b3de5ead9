"""A whole bridge on this machine: emulator on a pty, bridged's Daemon, real TLS servers.

    rig = BridgeRig(tmp_path, pki)
    await rig.start([SocketSpec(0, server.port), SocketSpec(1, server.port, mode="persistent")])
    data = await rig.roundtrip(0, b"hello")
    await rig.stop()

Everything runs in the test's reactor except clients, which are plain blocking sockets in
threads — like the legacy applications bridged serves.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from twisted.internet import reactor, threads

from bridged.config import load_config
from bridged.core.module_profile import BC26, ModuleProfile
from bridged.emulator import FAST, Emulator
from bridged.shell.daemon import Daemon
from tests.support.pki import Pki
from tests.support.tls_servers import free_port
from tests.support.waiting import wait_until


@dataclass
class SocketSpec:
    connect_id: int
    server_port: int
    mode: str = "on-demand"
    dataformat: str = "hex"
    seclevel: int = 2
    extra: str = ""  # more YAML keys for this socket, one flow mapping entry per line


class BridgeRig:
    def __init__(
        self,
        directory: Path,
        pki: Pki,
        *,
        baud: int = 921600,
        prompt_delay: float = 0.012,
        prompt_max_delay: float = 0.01,
        modem_extra: str = "",
        ssl_timeout: int = 90,
        module: ModuleProfile = BC26,
        model: str | None = None,
        **profile_fields: Any,
    ) -> None:
        """``module``: the model the emulator is; ``model``: bridged's ``modem.model``
        (default: the module's own name; "auto" makes bridged ask)."""
        self.directory = directory
        self.pki = pki
        self.baud = baud
        self.prompt_delay = prompt_delay
        self.modem_extra = modem_extra
        self.model = model or module.name
        self.ssl_timeout = ssl_timeout
        self.device = directory / "ttyBC26"
        profile = replace(FAST, prompt_max_delay=prompt_max_delay, **profile_fields)
        self.emulator = Emulator(
            self.device, baud=baud, profile=profile, seed=7, module_profile=module
        )
        self.daemon: Daemon | None = None
        self.ports: dict[int, int] = {}
        self.config_path = directory / "bridged.yaml"

    def config_text(self, sockets: list[SocketSpec]) -> str:
        lines = [
            f"serial: {{device: {self.device}, baudrate: {self.baud},"
            " reopen_backoff: {initial: 0.2, max: 1}}",
            f"modem: {{model: {self.model}, prompt_delay: {self.prompt_delay}, command_timeout: 3,"
            " guard_time: 0.002"
            f"{', ' + self.modem_extra if self.modem_extra else ''}}}",
            "ssl:",
            f"  timeout: {self.ssl_timeout}",
            f"  cacert: {self.pki.ca_cert}",
            f"  clientcert: {self.pki.client_cert}",
            f"  clientkey: {self.pki.client_key}",
            "metrics: null",
            "sockets:",
        ]
        for spec in sockets:
            port = self.ports.setdefault(spec.connect_id, free_port())
            lines += [
                f"  - connect_id: {spec.connect_id}",
                f"    listen: 127.0.0.1:{port}",
                f"    remote: 127.0.0.1:{spec.server_port}",
                f"    mode: {spec.mode}",
                f"    ssl: {{seclevel: {spec.seclevel}, dataformat: {spec.dataformat}}}",
                "    reconnect: {initial: 0.1, max: 0.5, jitter: 0.1, open_retries: 2}",
            ]
            if spec.extra:
                lines += [f"    {line}" for line in spec.extra.splitlines()]
        return "\n".join(lines) + "\n"

    async def start(self, sockets: list[SocketSpec]) -> Daemon:
        self.config_path.write_text(self.config_text(sockets))
        config = load_config(self.config_path)
        self.emulator.start()
        await self.emulator.when_ready()
        self.daemon = Daemon(reactor, config)
        self.daemon.start()
        await self.daemon.ready_once
        return self.daemon

    async def stop(self) -> None:
        if self.daemon is not None:
            await self.daemon.stop()
        print(f"emulator stats: {self.emulator.stats}")
        self.emulator.stop()

    def bridge(self, connect_id: int) -> Any:
        assert self.daemon is not None
        return next(b for b in self.daemon.bridges if b.connect_id == connect_id)

    async def wait_ready(self, timeout: float = 15.0) -> None:
        assert self.daemon is not None
        daemon = self.daemon
        await wait_until(lambda: daemon.ready, timeout=timeout, what="daemon ready")

    # -- clients (blocking sockets in threads, like a legacy app)

    def connect(self, connect_id: int, timeout: float = 30.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.ports[connect_id]), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    async def roundtrip(self, connect_id: int, data: bytes, timeout: float = 60.0) -> bytes:
        """Send ``data`` through an echo server and return what came back (EOF-bounded)."""
        return await threads.deferToThread(self._roundtrip, connect_id, data, timeout)

    def _roundtrip(self, connect_id: int, data: bytes, timeout: float) -> bytes:
        # Write and read at once, as a streaming app does: a client that stops reading
        # while the bridge delivers is disconnected once it is far behind.
        with self.connect(connect_id, timeout) as sock:
            writer = threading.Thread(target=sock.sendall, args=(data,), daemon=True)
            writer.start()
            received = read_exactly(sock, len(data))
            writer.join(timeout)
            return received


def read_exactly(sock: socket.socket, n: int) -> bytes:
    """Read ``n`` bytes, or fewer if the peer closes first."""
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(min(65536, n - len(chunks)))
        if not chunk:
            break
        chunks += chunk
    return bytes(chunks)


def read_until_eof(sock: socket.socket) -> bytes:
    chunks = bytearray()
    while chunk := sock.recv(65536):
        chunks += chunk
    return bytes(chunks)
