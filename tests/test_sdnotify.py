"""sd_notify over a real AF_UNIX datagram socket: path and abstract namespace.

Nothing here mocks the socket: each test binds a SOCK_DGRAM socket where systemd would,
points $NOTIFY_SOCKET at it and reads the exact datagrams. The watchdog tests drive the
notifier with a ``task.Clock`` and a small stand-in for the daemon's state (the thing
faked is the state, not the transport); the last test runs a real Daemon against the BC26
emulator on a pty and waits for READY=1.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from bridged.core.channel import ChannelState
from bridged.ops import snapshot
from bridged.ops.sdnotify import SystemdNotifier, install_systemd_notify, watchdog_ok
from bridged.ops.snapshot import DaemonSnapshot, ModemSnapshot, SocketSnapshot
from bridged.shell.modem import ModemState


class Receiver:
    """systemd's end: a bound datagram socket and what arrived on it."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def recv(self, timeout: float = 2.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode("utf-8")

    def drain(self) -> list[str]:
        """Every datagram already queued, in order."""
        out: list[str] = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode("utf-8"))
        except BlockingIOError:
            return out
        finally:
            self.sock.setblocking(True)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # sun_path holds 108 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def path_receiver(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    path = short_dir / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield Receiver(sock, str(path))
    sock.close()


@pytest.fixture
def abstract_receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    name = f"bridged-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield Receiver(sock, "@" + name)
    sock.close()


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest) -> Receiver:
    fixture = "path_receiver" if request.param == "path" else "abstract_receiver"
    result: Receiver = request.getfixturevalue(fixture)
    return result


# ---------------------------------------------------------------------- the notifier


def test_every_message_is_one_exact_datagram(receiver: Receiver) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled
    assert notifier.ready()
    assert receiver.recv() == "READY=1"
    assert notifier.status("ready: 2 socket(s), 1 open")
    assert receiver.recv() == "STATUS=ready: 2 socket(s), 1 open"
    assert notifier.watchdog()
    assert receiver.recv() == "WATCHDOG=1"
    assert notifier.stopping()
    assert receiver.recv() == "STOPPING=1"
    assert notifier.ready("ready again")
    assert receiver.recv() == "READY=1\nSTATUS=ready again"
    assert notifier.stopping("stopping: closing SSL sockets")
    assert receiver.recv() == "STOPPING=1\nSTATUS=stopping: closing SSL sockets"
    notifier.close()
    assert receiver.drain() == []


def test_reloading_carries_monotonic_usec(receiver: Receiver) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert SystemdNotifier().reloading()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, stamp = receiver.recv().split("\n")
    assert reloading == "RELOADING=1"
    key, value = stamp.split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after


def test_status_is_kept_on_one_line(path_receiver: Receiver) -> None:
    SystemdNotifier().status("module lost:\nserial connection lost\r\n")
    assert path_receiver.recv() == "STATUS=module lost: serial connection lost"


def test_no_notify_socket_means_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.watchdog() and not notifier.stopping()
    daemon = StandIn()
    assert daemon.install(Clock()) is not None
    assert daemon.state_observers == []


@pytest.mark.parametrize("value", ["", "relative/path", "@", "vsock:2:1234"])
def test_unusable_notify_socket_values_are_ignored(value: str) -> None:
    assert not SystemdNotifier({"NOTIFY_SOCKET": value}).enabled


def test_a_vanished_socket_is_not_an_error(short_dir: Path) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(short_dir / "gone")})
    assert notifier.enabled
    assert notifier.ready() is False  # logged, not raised
    assert notifier.watchdog() is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "x"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "500000"}, 0.25),
    ],
)
def test_watchdog_interval_is_half_the_period(env: dict[str, str], expected: float | None) -> None:
    assert SystemdNotifier(env).watchdog_interval() == expected


def test_state_values_match_the_modem() -> None:
    assert ModemState.SERIAL_DOWN.value == snapshot.SERIAL_DOWN
    assert ModemState.INITIALISING.value == snapshot.INITIALISING
    assert ModemState.READY.value == snapshot.READY


# ---------------------------------------------------------------------- the daemon's side


@dataclass
class Modem:
    state: ModemState = ModemState.SERIAL_DOWN
    healthy: bool = True

    def snapshot(self) -> ModemSnapshot:
        return ModemSnapshot("/dev/ttyBC26", 115200, self.state.value, self.healthy, 0)


@dataclass
class Bridge:
    state: ChannelState = ChannelState.CLOSED


@dataclass
class StandIn:
    """A daemon as the notifier meets it: announcements, and snapshots to read."""

    modem: Modem = field(default_factory=Modem)
    bridges: list[Bridge] = field(default_factory=lambda: [Bridge(), Bridge()])
    ready_once: defer.Deferred[None] = field(default_factory=defer.Deferred)
    state_observers: list[Callable[[str], None]] = field(default_factory=list)
    listening: bool = False

    @property
    def ready(self) -> bool:
        return self.modem.state is ModemState.READY and self.listening

    def snapshot(self) -> DaemonSnapshot:
        sockets = [
            SocketSnapshot(n, "on-demand", f"127.0.0.1:{17100 + n}", "example.com:443", b.state,
                           client_peer=None, queued_bytes=0, recv_buffered_bytes=0,
                           idle_timeout=0.0)
            for n, b in enumerate(self.bridges)
        ]  # fmt: skip
        return DaemonSnapshot(
            modem=self.modem.snapshot(),
            engine=None,
            ready=self.ready,
            listening=self.listening,
            send_chunks=0,
            sockets=tuple(sockets),
        )

    def install(self, clock: Clock) -> SystemdNotifier:
        return install_systemd_notify(clock, self.snapshot, self.state_observers, self.ready_once)

    def announce(self, status: str) -> None:
        for listener in list(self.state_observers):
            listener(status)

    def become_ready(self) -> None:
        self.modem.state = ModemState.READY
        self.listening = True
        self.announce("ready")
        if not self.ready_once.called:
            self.ready_once.callback(None)


WATCHDOG_SEC = 10.0  # so the ping interval is 5 s and re-checks every second


@pytest.fixture
def watched(path_receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> tuple[Receiver, Clock]:
    monkeypatch.setenv("WATCHDOG_USEC", str(int(WATCHDOG_SEC * 1_000_000)))
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    return path_receiver, Clock()


def test_lifecycle_datagrams(watched: tuple[Receiver, Clock]) -> None:
    rx, clock = watched
    daemon = StandIn()
    notifier = daemon.install(clock)
    # Serial port not open yet: the modem retries by itself, so the watchdog is fed.
    assert rx.drain() == ["STATUS=starting: waiting for the serial device", "WATCHDOG=1"]

    daemon.modem.state = ModemState.INITIALISING
    clock.advance(5)
    assert rx.drain() == ["STATUS=starting: initialising the module", "WATCHDOG=1"]

    daemon.become_ready()
    assert rx.drain() == ["READY=1\nSTATUS=ready: 2 socket(s), 0 open"]

    # A socket opening is no daemon-level event: the next tick brings STATUS= up to date.
    daemon.bridges[0].state = ChannelState.OPEN
    clock.advance(5)
    assert rx.drain() == ["STATUS=ready: 2 socket(s), 1 open", "WATCHDOG=1"]
    clock.advance(5)
    assert rx.drain() == ["WATCHDOG=1"]  # nothing changed: no STATUS= repeated

    daemon.modem.state = ModemState.SERIAL_DOWN
    daemon.bridges[0].state = ChannelState.CLOSED
    daemon.announce("module lost: serial connection lost")
    assert rx.drain() == [
        "STATUS=module lost: serial connection lost; waiting for the serial device"
    ]
    clock.advance(5)
    assert rx.drain() == ["WATCHDOG=1"]

    # Back: READY=1 is sent once only; later readiness is a STATUS= change.
    daemon.modem.state = ModemState.INITIALISING
    clock.advance(5)
    assert rx.drain() == [
        "STATUS=module lost: serial connection lost; initialising the module",
        "WATCHDOG=1",
    ]
    daemon.become_ready()
    assert rx.drain() == ["STATUS=ready: 2 socket(s), 0 open"]

    daemon.announce("stopping")
    assert rx.drain() == ["STOPPING=1\nSTATUS=stopping: closing SSL sockets"]
    clock.advance(5)
    assert rx.drain() == ["WATCHDOG=1"]  # still alive while closing sockets
    hook = notifier.daemon_hook
    assert hook is not None
    hook.stop()
    clock.advance(50)
    assert rx.drain() == []
    assert clock.getDelayedCalls() == []


def test_watchdog_is_held_back_while_the_engine_is_wedged(watched: tuple[Receiver, Clock]) -> None:
    rx, clock = watched
    daemon = StandIn(modem=Modem(ModemState.READY), listening=True)
    notifier = daemon.install(clock)
    assert rx.drain() == ["STATUS=ready: 2 socket(s), 0 open", "WATCHDOG=1"]
    hook = notifier.daemon_hook
    assert hook is not None

    daemon.modem.healthy = False  # a command timed out; resync running
    clock.advance(5)
    assert rx.drain() == [
        "STATUS=ready: 2 socket(s), 0 open (module not answering, resynchronising)"
    ]
    # Re-checked every second (interval / 4 capped at 1 s): no ping while unhealthy...
    for _ in range(3):
        clock.advance(1)
        assert rx.drain() == []
    # ...and one as soon as the resync succeeds, well inside systemd's 10 s deadline.
    daemon.modem.healthy = True
    clock.advance(1)
    assert rx.drain() == ["WATCHDOG=1"]
    clock.advance(1)  # the re-check stopped with that ping; the 5 s rhythm carries on
    assert rx.drain() == ["STATUS=ready: 2 socket(s), 0 open", "WATCHDOG=1"]
    clock.advance(4)
    assert rx.drain() == []
    clock.advance(1)
    assert rx.drain() == ["WATCHDOG=1"]

    # A wedged engine that stays wedged: no ping at all, so systemd's watchdog fires.
    daemon.modem.healthy = False
    pings, held_back = hook.pings, hook.held_back
    for _ in range(int(WATCHDOG_SEC * 3)):
        clock.advance(1)
    assert hook.pings == pings
    assert [d for d in rx.drain() if d == "WATCHDOG=1"] == []
    assert hook.held_back - held_back == 6  # every tick of the 30 s


def test_watchdog_ok_decisions() -> None:
    assert watchdog_ok(Modem(ModemState.SERIAL_DOWN).snapshot())  # never opened: retrying
    assert watchdog_ok(Modem(ModemState.SERIAL_DOWN, healthy=False).snapshot())  # unplugged
    assert watchdog_ok(Modem(ModemState.INITIALISING).snapshot())
    assert watchdog_ok(Modem(ModemState.READY).snapshot())
    assert not watchdog_ok(Modem(ModemState.READY, healthy=False).snapshot())
    assert not watchdog_ok(Modem(ModemState.INITIALISING, healthy=False).snapshot())


def test_ready_once_alone_also_sends_ready(watched: tuple[Receiver, Clock]) -> None:
    rx, clock = watched
    daemon = StandIn(modem=Modem(ModemState.READY), listening=True)
    daemon.install(clock)
    rx.drain()
    daemon.ready_once.callback(None)
    assert rx.drain() == ["READY=1\nSTATUS=ready: 2 socket(s), 0 open"]
    daemon.announce("ready")
    assert rx.drain() == []  # neither READY=1 nor an unchanged STATUS= again


def test_without_watchdog_usec_no_loop_runs(path_receiver: Receiver) -> None:
    clock = Clock()
    StandIn().install(clock)
    assert path_receiver.drain() == ["STATUS=starting: waiting for the serial device"]
    assert clock.getDelayedCalls() == []


# ---------------------------------------------------------------------- a real daemon


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest_twisted.ensureDeferred
async def test_real_daemon_on_the_emulator_notifies_ready_and_stopping(
    short_dir: Path, abstract_receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet import reactor

    from bridged.config import load_config
    from bridged.emulator import FAST, Emulator
    from bridged.shell.daemon import Daemon, Readout
    from tests.support.waiting import wait_until

    emulator = Emulator(short_dir / "ttyBC26", profile=FAST, seed=1)
    emulator.start()
    port_a, port_b = _free_ports(2)
    config_path = short_dir / "bridged.yaml"
    config_path.write_text(
        f"""
serial: {{device: {emulator.device_path}}}
ssl: {{seclevel: 0}}
sockets:
  - {{connect_id: 0, listen: "127.0.0.1:{port_a}", remote: "example.com:8883", mode: on-demand}}
  - {{connect_id: 1, listen: "127.0.0.1:{port_b}", remote: "example.com:443", mode: on-demand}}
metrics: {{enabled: false}}
"""
    )
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # 0.2 s pings, to see a few in the test
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon = Daemon(reactor, load_config(str(config_path)))
    notifier = install_systemd_notify(
        reactor, Readout(daemon), daemon.state_observers, daemon.ready_once
    )
    hook = notifier.daemon_hook
    assert hook is not None
    seen: list[str] = []

    def got(prefix: str) -> bool:
        seen.extend(abstract_receiver.drain())
        return any(d.startswith(prefix) for d in seen)

    try:
        daemon.start()
        await wait_until(lambda: got("READY=1"), timeout=20, what="READY=1")
        assert "READY=1\nSTATUS=ready: 2 socket(s), 0 open" in seen
        assert seen[0].startswith("STATUS=starting: ")
        await wait_until(lambda: hook.pings >= 3, timeout=5, what="watchdog pings")
        await daemon.stop()
        assert got("STOPPING=1")
        assert "STOPPING=1\nSTATUS=stopping: closing SSL sockets" in seen
        assert "WATCHDOG=1" in seen
    finally:
        hook.stop()
        notifier.close()
        await daemon.stop()  # a no-op if already stopped
        emulator.stop()


def test_watchdog_follows_the_lifecycle_not_only_the_session() -> None:
    """A recovery ladder that cannot make progress stops the pings, even while the AT
    session itself says healthy (nothing is in resync): a reset whose boot sign never
    comes, say. The watchdog reads the real Modem's ``healthy`` (lifecycle and session)."""
    from bridged.shell.modem import Modem as RealModem
    from bridged.shell.modem import ModemOptions
    from bridged.shell.snapshots import modem_snapshot

    modem = RealModem(Clock(), ModemOptions(device="/dev/null"), [])  # type: ignore[arg-type]
    life = modem.lifecycle
    life.opened(0.0)
    modem.state = ModemState.INITIALISING
    assert watchdog_ok(modem_snapshot(modem))
    life.ready(life.generation, 1.0)
    modem.state = ModemState.READY
    assert watchdog_ok(modem_snapshot(modem))
    # The module stops answering: the ladder is climbed; the session has nothing in
    # flight and says healthy, but the modem is not.
    life.unresponsive(2.0)
    assert modem.engine is not None and modem.engine.healthy
    assert not modem.healthy
    assert not watchdog_ok(modem_snapshot(modem))
    # Ready again: the pings resume.
    life.opened(3.0)
    life.ready(life.generation, 4.0)
    assert watchdog_ok(modem_snapshot(modem))
