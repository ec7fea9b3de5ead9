"""Three processes per benchmark run, so the bridge's CPU and memory are its own:

- the emulator (``tests.bench.emulator_proc``) on a pty at the run's baud rate;
- the TLS servers (``tests.bench.tls_server``), one port per socket;
- ``bridged run`` with a generated configuration.

Clients are blocking sockets in this (the driver's) process.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.bench import cgroups, procstat
from tests.support.pki import Pki
from tests.support.tls_servers import free_port, is_listening

REPO = Path(__file__).resolve().parents[2]
BRIDGED_RUN = ("-m", "bridged", "run", "-c")
#: A directory: bridged runs under cProfile and leaves ``<row>.prof`` there (--profile).
PROFILE_ENV = "BRIDGED_BENCH_PROFILE"
#: Numbers the rigs' cgroups: ``id(rig)`` comes back for the next rig, and a cgroup whose
#: removal failed (a process still leaving it) would then make that rig fail to start.
_cgroup_numbers = itertools.count()


@dataclass(frozen=True)
class RigSettings:
    baud: int = 115200
    dataformat: str = "hex"
    prompt_delay: float = 0.5  # the bridge's wait after '>' (modem.prompt_delay)
    guard_time: float = 0.02  # modem.guard_time; 0.02 is bridged's default
    emulator_prompt_max: float | None = None  # data mode within this; default prompt_delay
    seclevel: int = 0
    mode: str = "on-demand"
    #: Server mode per connectID ("sink", "messages", "source:N"); its length is the
    #: number of sockets configured (connectIDs 0..n-1).
    servers: tuple[str, ...] = ("sink",)
    send_max_bytes: int = 65536
    log_level: str = "info"
    rtt: float = 0.0  # the emulator's network round trip (s)
    uplink_rate: float | None = None  # the emulator's radio uplink (bytes/s)
    #: The module's (emulator) and bridged's (a profile file) max_unconfirmed_sends:
    #: above 1, sends are pipelined.
    max_unconfirmed_sends: int = 1
    #: "bridged" (``bridged run``) or "peer" (tests/bench/peer.py, the minimal bridge).
    bridge: str = "bridged"
    #: Run the bridge alone in a cgroup with this CPU quota (share of one core).
    cpu_quota: float | None = None


@dataclass
class RigResult:
    ready_seconds: float = 0.0
    emulator_stats: dict[str, Any] = field(default_factory=dict)
    bridge_exit: int | None = None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class ProcessRig:
    def __init__(self, directory: Path, pki: Pki, settings: RigSettings) -> None:
        self.directory = directory
        self.pki = pki
        self.settings = settings
        self.device = directory / "ttyBC26"
        self.listen_ports = {cid: free_port() for cid in range(len(settings.servers))}
        self.server_ports: dict[int, int] = {}  # bound by the servers (start_servers)
        self.metrics_port = free_port()
        self.emulator: subprocess.Popen[bytes] | None = None
        self.server: subprocess.Popen[str] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.cgroup: cgroups.CpuQuota | None = None
        self.result = RigResult()
        self._logs: list[IO[bytes]] = []
        directory.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle

    def start_emulator(self) -> None:
        s = self.settings
        prompt_max = s.prompt_delay if s.emulator_prompt_max is None else s.emulator_prompt_max
        command = [
            sys.executable,
            "-m",
            "tests.bench.emulator_proc",
            "--device",
            str(self.device),
            "--baud",
            str(s.baud),
            "--prompt-max-delay",
            str(prompt_max),
            "--stats",
            str(self.directory / "emulator-stats.json"),
            "--rtt",
            str(s.rtt),
        ]
        if s.uplink_rate is not None:
            command += ["--uplink-rate", str(s.uplink_rate)]
        command += ["--max-unconfirmed-sends", str(s.max_unconfirmed_sends)]
        self.emulator = subprocess.Popen(
            command,
            cwd=REPO,
            env=_env(),
            stdout=self._log("emulator.log"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not self.device.exists():
            if self.emulator.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulator did not start; see {self.directory}/emulator.log")
            time.sleep(0.02)
        time.sleep(0.3)  # boot banner, RDY, +CPIN: READY

    def start_servers(self) -> None:
        command = [
            sys.executable,
            "-m",
            "tests.bench.tls_server",
            "--cert",
            str(self.pki.server_cert),
            "--key",
            str(self.pki.server_key),
        ]
        if self.settings.seclevel >= 2:
            command += ["--cafile", str(self.pki.ca_cert)]
        for mode in self.settings.servers:
            command += ["--listen", f"0:{mode}"]  # the servers bind free ports and say which
        self.server = subprocess.Popen(
            command,
            cwd=REPO,
            env=_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log("servers.log"),
            text=True,
        )
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        ready = json.loads(line) if line else {}
        if not ready.get("ready"):
            raise RuntimeError(f"TLS servers did not start; see {self.directory}/servers.log")
        self.server_ports = dict(enumerate(ready["ports"]))

    def bridge_command(self) -> list[str]:
        s = self.settings
        if s.bridge == "peer":
            command = [sys.executable, str(REPO / "tests" / "bench" / "peer.py")]
            command += ["--device", str(self.device), "--baud", str(s.baud)]
            command += ["--format", s.dataformat, "--prompt-delay", str(s.prompt_delay)]
            for cid, port in self.listen_ports.items():
                command += ["--socket", f"{cid}:{port}:127.0.0.1:{self.server_ports[cid]}"]
            return command
        config = self.directory / "bridged.yaml"
        config.write_text(self.config_text())
        profile = os.environ.get(PROFILE_ENV)
        if profile:  # cProfile the bridge: one file per rig, written when it stops
            out = Path(profile) / f"{self.directory.name}.prof"
            return [sys.executable, "-m", "cProfile", "-o", str(out), *BRIDGED_RUN, str(config)]
        return [sys.executable, *BRIDGED_RUN, str(config)]

    def start_bridge(self, timeout: float = 120.0) -> float:
        """Launch the bridge; seconds until every socket's port listens (ready)."""
        command = self.bridge_command()
        if self.settings.cpu_quota is not None:
            self.cgroup = cgroups.CpuQuota(f"bench-{os.getpid()}-{next(_cgroup_numbers)}")
            self.cgroup.create(self.settings.cpu_quota)
            command = self.cgroup.wrap(command)
        start = time.monotonic()
        self.bridge = subprocess.Popen(
            command,
            cwd=REPO,
            env=_env(),
            stdout=self._log("bridged.log"),
            stderr=subprocess.STDOUT,
        )
        deadline = start + timeout
        while not all(is_listening(port) for port in self.listen_ports.values()):
            if self.bridge.poll() is not None:
                log = (self.directory / "bridged.log").read_text(errors="replace")
                tail = " | ".join(log.strip().splitlines()[-3:])
                raise RuntimeError(
                    f"bridged exited early ({self.bridge.returncode}): {tail}; "
                    f"see {self.directory}/bridged.log"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"bridged not ready after {timeout} s")
            time.sleep(0.005)
        self.result.ready_seconds = time.monotonic() - start
        return self.result.ready_seconds

    def start(self) -> None:
        self.start_emulator()
        self.start_servers()
        self.start_bridge()

    def stop(self) -> RigResult:
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.send_signal(signal.SIGTERM)
            try:
                self.result.bridge_exit = self.bridge.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.result.bridge_exit = self.bridge.wait()
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.server.stdin is not None
                self.server.stdin.write("quit\n")
                self.server.stdin.flush()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.emulator is not None and self.emulator.poll() is None:
            self.emulator.send_signal(signal.SIGTERM)
            try:
                self.emulator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.emulator.kill()
                self.emulator.wait()
        stats_path = self.directory / "emulator-stats.json"
        if stats_path.exists():
            self.result.emulator_stats = json.loads(stats_path.read_text())
        for log in self._logs:
            log.close()
        return self.result

    def __enter__(self) -> ProcessRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ while running

    @property
    def bridge_pid(self) -> int:
        assert self.bridge is not None
        return self.bridge.pid

    def cpu(self) -> float:
        """CPU seconds (user + system) the bridge used so far."""
        return procstat.cpu(self.bridge_pid).total

    def memory(self) -> dict[str, int]:
        return procstat.memory(self.bridge_pid)

    def connect(self, connect_id: int, timeout: float = 60.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.listen_ports[connect_id]), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def server_records(self) -> list[dict[str, Any]]:
        assert self.server is not None and self.server.stdin and self.server.stdout
        self.server.stdin.write("report\n")
        self.server.stdin.flush()
        records: list[dict[str, Any]] = json.loads(self.server.stdout.readline())["records"]
        port_to_id = {port: cid for cid, port in self.server_ports.items()}
        for record in records:
            record["connect_id"] = port_to_id[record["port"]]
        return records

    def metrics(self) -> dict[str, float]:
        """The bridge's Prometheus samples, ``name{labels}`` → value."""
        import urllib.request

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    samples[name] = float(value)
        return samples

    # ------------------------------------------------------------------ internals

    def _log(self, name: str) -> IO[bytes]:
        log = open(self.directory / name, "ab")  # noqa: SIM115 (closed in stop())
        self._logs.append(log)
        return log

    def module_profile_file(self) -> Path:
        """The BC26 with the row's ``max_unconfirmed_sends``, as bridged reads it."""
        path = self.directory / "module.yaml"
        path.write_text(
            f"base: bc26\nmax_unconfirmed_sends: {self.settings.max_unconfirmed_sends}\n"
        )
        return path

    def config_text(self) -> str:
        s = self.settings
        lines = [
            f"serial: {{device: {self.device}, baudrate: {s.baud},"
            " reopen_backoff: {initial: 0.2, max: 1}}",
            f"modem: {{prompt_delay: {s.prompt_delay}, guard_time: {s.guard_time}"
            + (
                f", profile_file: {self.module_profile_file()}}}"
                if s.max_unconfirmed_sends > 1
                else "}"
            ),
            "ssl:",
            f"  seclevel: {s.seclevel}",
            f"  dataformat: {s.dataformat}",
        ]
        if s.seclevel >= 1:
            lines.append(f"  cacert: {self.pki.ca_cert}")
        if s.seclevel >= 2:
            lines += [
                f"  clientcert: {self.pki.client_cert}",
                f"  clientkey: {self.pki.client_key}",
            ]
        lines += [
            f"metrics: {{listen: '127.0.0.1:{self.metrics_port}'}}",
            f"log: {{level: {s.log_level}}}",
            f"control: {{socket: {self.directory / 'control.sock'}}}",
            "sockets:",
        ]
        for cid in range(len(s.servers)):
            lines += [
                f"  - connect_id: {cid}",
                f"    listen: 127.0.0.1:{self.listen_ports[cid]}",
                f"    remote: 127.0.0.1:{self.server_ports[cid]}",
                f"    mode: {s.mode}",
                f"    queue: {{send_max_bytes: {s.send_max_bytes}}}",
            ]
        return "\n".join(lines) + "\n"
