"""``bridged status``: one screen saying what the daemon is doing, like ``mmcli -m 0``.

Three layers, so each can be tested alone:

- :class:`Status` and its parts: a small tree of frozen dataclasses with plain values (no
  reference into the daemon). Times are wall-clock seconds; ``now`` is the daemon's, so ages
  are computed against the clock that stamped them.
- :func:`read_status`: reads the daemon's parts (modem, socket bridges, link health, the
  module identity) into a :class:`Status`. Read-only; the only function that knows them.
- :func:`render_status`: pure, :class:`Status` to text.

The daemon answers ``STATUS`` on its control socket (the AT passthrough's) with the status
as one line of JSON, then ``OK``; :func:`status_client_main` is the client.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bridged import __version__

if TYPE_CHECKING:
    from bridged.shell.bridge import SocketBridge
    from bridged.shell.daemon import Daemon
    from bridged.shell.link_health import LinkHealth
    from bridged.shell.modem import Modem
    from bridged.shell.qssl import QsslClient

log = Logger(namespace="bridged.status")

STATUS_REQUEST = "STATUS"
IDENTIFY_TIMEOUT = 5.0

# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class SerialStatus:
    device: str
    baudrate: int
    state: str  # the modem's state: serial-down, initialising, ready
    reopens: int  # times the port was lost and reopened


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What ``ATI`` says; None until the module has answered it once."""

    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None


@dataclass(frozen=True, slots=True)
class LinkStatus:
    registration: str | None  # "registered, home network", ...
    registered: bool | None
    rsrp_dbm: int | None
    sinr_db: int | None
    ecl: int | None
    read_at: float | None  # when the module last answered the poll; None: not yet


@dataclass(frozen=True, slots=True)
class ClientStatus:
    peer: str
    connected_at: float | None


@dataclass(frozen=True, slots=True)
class SocketStatus:
    connect_id: int
    listen: str
    remote: str
    mode: str
    state: str
    state_since: float | None
    client: ClientStatus | None
    tx_bytes: int  # confirmed sent to the network
    rx_bytes: int  # received from the network
    queued_bytes: int  # accepted from the client, not yet confirmed
    opens: int  # successful AT+QSSLOPEN
    open_failures: int
    last_error: str | None
    last_error_at: float | None
    idle_timeout: float = 0.0  # s without traffic before the SSL connection is closed; 0: never
    idle_closes: int = 0  # connections closed for being idle


@dataclass(frozen=True, slots=True)
class Status:
    version: str
    now: float
    started_at: float
    serial: SerialStatus
    module: ModuleInfo
    link: LinkStatus | None  # None: link health polling is off
    sockets: tuple[SocketStatus, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Status:
        """The inverse of :meth:`to_json` (the client rebuilds the tree to render it)."""
        sockets = []
        for s in data["sockets"]:
            client = s.get("client")
            sockets.append(
                SocketStatus(**{**s, "client": ClientStatus(**client) if client else None})
            )
        link = data.get("link")
        return cls(
            version=data["version"],
            now=data["now"],
            started_at=data["started_at"],
            serial=SerialStatus(**data["serial"]),
            module=ModuleInfo(**data["module"]),
            link=LinkStatus(**link) if link else None,
            sockets=tuple(sockets),
        )


# --------------------------------------------------------------------------- module identity


def parse_ati(lines: Iterable[str]) -> ModuleInfo:
    """``ATI`` → ``Quectel_Ltd`` / ``Quectel_BC26`` / ``Revision: BC26NBR01A10``."""
    texts = [line.strip() for line in lines if line.strip()]
    firmware = None
    others = []
    for text in texts:
        if text.lower().startswith("revision:"):
            firmware = text.split(":", 1)[1].strip() or None
        else:
            others.append(text)
    manufacturer = others[0] if others else None
    model = others[1] if len(others) > 1 else None
    return ModuleInfo(manufacturer=manufacturer, model=model, firmware=firmware)


class ModuleIdentity:
    """Asks ``ATI`` (low priority) each time the module becomes ready; keeps the answer."""

    def __init__(self, modem: Modem) -> None:
        self.modem = modem
        self.info = ModuleInfo()
        modem.ready_listeners.append(self._module_ready)

    def _module_ready(self, _qssl: QsslClient) -> None:
        from bridged.shell.at_engine import ATError, Priority

        engine = self.modem.engine
        if engine is None:
            return
        d = engine.command("ATI", timeout=IDENTIFY_TIMEOUT, priority=Priority.LOW)

        def answered(response: Any) -> None:
            info = parse_ati(response.lines)
            if info != self.info:
                log.info(
                    "module {model}, firmware {firmware}",
                    model=info.model or "?",
                    firmware=info.firmware or "?",
                )
            self.info = info

        def failed(failure: Any) -> None:
            failure.trap(ATError)
            log.debug("ATI not answered: {why}", why=failure.getErrorMessage())

        d.addCallbacks(answered, failed)


# --------------------------------------------------------------------------- reading


def read_status(
    *,
    now: float,
    started_at: float,
    modem: Modem,
    bridges: Sequence[SocketBridge],
    link_health: LinkHealth | None,
    module: ModuleInfo,
) -> Status:
    """A snapshot of the daemon's parts. Reads only; call in the reactor thread."""
    from bridged.shell.link_health import REGISTRATION_STATUS_NAMES

    link = None
    if link_health is not None:
        snap = link_health.snapshot
        reg, cell = snap.registration, snap.cell
        link = LinkStatus(
            registration=(
                REGISTRATION_STATUS_NAMES.get(reg.status, f"status {reg.status}") if reg else None
            ),
            registered=reg.registered if reg else None,
            rsrp_dbm=cell.rsrp_dbm if cell else None,
            sinr_db=cell.sinr_db if cell else None,
            ecl=cell.ecl if cell else None,
            read_at=link_health.updated_at,
        )
    return Status(
        version=__version__,
        now=now,
        started_at=started_at,
        serial=SerialStatus(
            device=modem.options.device,
            baudrate=modem.options.baudrate,
            state=modem.state.value,
            reopens=modem.serial_reopens,
        ),
        module=module,
        link=link,
        sockets=tuple(socket_status(b) for b in bridges),
    )


def socket_status(bridge: SocketBridge) -> SocketStatus:
    stats = bridge.stats
    client = bridge.client
    return SocketStatus(
        connect_id=bridge.connect_id,
        listen=str(bridge.config.listen),
        remote=str(bridge.config.remote),
        mode=bridge.config.mode,
        state=bridge.state.name.lower(),
        state_since=stats.state_since,
        client=ClientStatus(client.peer, stats.client_since) if client is not None else None,
        tx_bytes=stats.tx_bytes,
        rx_bytes=stats.rx_bytes,
        queued_bytes=bridge.channel.queued_bytes,
        opens=stats.opens.get("ok", 0),
        open_failures=sum(n for result, n in stats.opens.items() if result != "ok"),
        last_error=stats.last_error,
        last_error_at=stats.last_error_at,
        idle_timeout=bridge.config.timeouts.idle,
        idle_closes=stats.streams_broken.get("idle_timeout", 0),
    )


def install_status(
    daemon: Daemon, clock: IReactorTime, link_health: LinkHealth | None
) -> Callable[[], Status]:
    """Start tracking the module's identity; return what answers a status request."""
    started_at = clock.seconds()
    identity = ModuleIdentity(daemon.modem)

    def current() -> Status:
        return read_status(
            now=clock.seconds(),
            started_at=started_at,
            modem=daemon.modem,
            bridges=daemon.bridges,
            link_health=link_health,
            module=identity.info,
        )

    return current


def status_reply(current: Callable[[], Status]) -> list[str]:
    """The control socket's answer to ``STATUS``: one JSON line, then ``OK``."""
    try:
        return [json.dumps(current().to_json(), separators=(",", ":")), "OK"]
    except Exception:
        log.failure("reading the status failed")
        return ["UNAVAILABLE: reading the status failed; see the bridged log"]


# --------------------------------------------------------------------------- rendering


def format_age(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``, ``3d04h``: how long ago, to the useful precision."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _ago(now: float, when: float | None) -> str:
    return "" if when is None else f" {format_age(now - when)} ago"


def _since(now: float, when: float | None) -> str:
    return "" if when is None else f" for {format_age(now - when)}"


def _value(value: int | None, unit: str) -> str:
    return "?" if value is None else f"{value}{unit}"


def render_status(status: Status) -> str:
    """The text ``bridged status`` prints: daemon, serial, module, network, each socket."""
    now = status.now
    serial, module, link = status.serial, status.module, status.link
    lines = [
        f"bridged {status.version}, up {format_age(now - status.started_at)}",
        f"serial   {serial.device} at {serial.baudrate} baud: {serial.state}"
        + (f" (reopened {serial.reopens} times)" if serial.reopens else ""),
    ]
    if module.model is None and module.firmware is None:
        lines.append("module   not identified yet")
    else:
        lines.append(f"module   {module.model or '?'}, firmware {module.firmware or '?'}")
    if link is None:
        lines.append("network  not polled (modem.health_interval is 0)")
    elif link.read_at is None:
        lines.append("network  no reading yet")
    else:
        lines.append(
            f"network  {link.registration or 'registration unknown'}; "
            f"RSRP {_value(link.rsrp_dbm, ' dBm')}, SINR {_value(link.sinr_db, ' dB')}, "
            f"ECL {_value(link.ecl, '')} (read{_ago(now, link.read_at)})"
        )
    for s in status.sockets:
        lines.append("")
        lines.append(f"socket {s.connect_id} {s.listen} -> {s.remote} ({s.mode})")
        lines.append(f"  state   {s.state}{_since(now, s.state_since)}")
        if s.client is None:
            lines.append("  client  none")
        else:
            lines.append(
                f"  client  {s.client.peer}, connected{_since(now, s.client.connected_at)}"
            )
        queued = f", {format_bytes(s.queued_bytes)} queued" if s.queued_bytes else ""
        lines.append(
            f"  bytes   {format_bytes(s.tx_bytes)} sent, {format_bytes(s.rx_bytes)} "
            f"received{queued}"
        )
        lines.append(f"  opens   {s.opens} ok, {s.open_failures} failed")
        if s.idle_timeout > 0:
            lines.append(
                f"  idle    closed after {format_age(s.idle_timeout)} without traffic"
                f" ({s.idle_closes} so far)"
            )
        if s.last_error is not None:
            lines.append(f"  error   {s.last_error}{_ago(now, s.last_error_at)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- client


def fetch_status(socket_path: str, timeout: float) -> Status:
    """Ask the daemon at ``socket_path``; raises OSError or ValueError with a reason."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        sock.sendall(STATUS_REQUEST.encode() + b"\n")
        buffer = b""
        lines: list[str] = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                raise ValueError("the daemon closed the connection")
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                text = raw.decode("utf-8", "replace").rstrip("\r")
                if text == "OK" and lines:
                    return Status.from_json(json.loads(lines[0]))
                if text.startswith("REFUSED:"):
                    raise ValueError(f"this bridged does not serve status ({text})")
                if text.startswith("UNAVAILABLE:"):
                    raise ValueError(text)
                lines.append(text)


def status_client_main(socket_path: str, as_json: bool, timeout: float = 10.0) -> int:
    """``bridged status``: print the status; 0 when shown, 2 when the daemon is unreachable."""
    try:
        status = fetch_status(socket_path, timeout)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"bridged status: cannot get the status from {socket_path}: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(status.to_json(), indent=2))
    else:
        sys.stdout.write(render_status(status))
    return 0


__all__ = [
    "ClientStatus",
    "LinkStatus",
    "ModuleIdentity",
    "ModuleInfo",
    "SerialStatus",
    "SocketStatus",
    "Status",
    "format_age",
    "install_status",
    "parse_ati",
    "read_status",
    "render_status",
    "status_client_main",
]
