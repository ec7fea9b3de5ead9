"""``bridged status``: one screen saying what the daemon is doing, like ``mmcli -m 0``.

Three layers, so each can be tested alone:

- :class:`Status` and its parts: a small tree of frozen dataclasses with plain values (no
  reference into the daemon). Times are wall-clock seconds; ``now`` is the daemon's, so ages
  are computed against the clock that stamped them.
- :func:`read_status`: a :class:`~bridged.ops.snapshot.DaemonSnapshot` (which the
  composition root fills) into a :class:`Status`.
- :func:`render_status`: pure, :class:`Status` to text.

The daemon answers ``STATUS`` on its control socket (the AT passthrough's) with the status
as one line of JSON, then ``OK``; :func:`status_client_main` is the client.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from bridged import __version__
from bridged.core.link_readings import ModuleInfo, registration_text
from bridged.ops.snapshot import DaemonSnapshot, SocketSnapshot

log = Logger(namespace="bridged.status")

STATUS_REQUEST = "STATUS"

# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class SerialStatus:
    device: str
    baudrate: int
    state: str  # the modem's state: serial-down, initialising, ready
    reopens: int  # times the port was lost and reopened


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


# --------------------------------------------------------------------------- reading


def read_status(snapshot: DaemonSnapshot, *, now: float, started_at: float) -> Status:
    """The status tree of one snapshot."""
    link = None
    if snapshot.link is not None:
        reg, cell = snapshot.link.readings.registration, snapshot.link.readings.cell
        link = LinkStatus(
            registration=registration_text(reg.status) if reg else None,
            registered=reg.registered if reg else None,
            rsrp_dbm=cell.rsrp_dbm if cell else None,
            sinr_db=cell.sinr_db if cell else None,
            ecl=cell.ecl if cell else None,
            read_at=snapshot.link.read_at,
        )
    modem = snapshot.modem
    return Status(
        version=__version__,
        now=now,
        started_at=started_at,
        serial=SerialStatus(
            device=modem.device,
            baudrate=modem.baudrate,
            state=modem.state,
            reopens=modem.serial_reopens,
        ),
        module=snapshot.module,
        link=link,
        sockets=tuple(socket_status(s) for s in snapshot.sockets),
    )


def socket_status(s: SocketSnapshot) -> SocketStatus:
    return SocketStatus(
        connect_id=s.connect_id,
        listen=s.listen,
        remote=s.remote,
        mode=s.mode,
        state=s.state.name.lower(),
        state_since=s.state_since,
        client=ClientStatus(s.client_peer, s.client_since) if s.client_peer is not None else None,
        tx_bytes=s.tx_bytes,
        rx_bytes=s.rx_bytes,
        queued_bytes=s.queued_bytes,
        opens=s.opens.get("ok", 0),
        open_failures=sum(n for result, n in s.opens.items() if result != "ok"),
        last_error=s.last_error,
        last_error_at=s.last_error_at,
        idle_timeout=s.idle_timeout,
        idle_closes=s.streams_broken.get("idle_timeout", 0),
    )


def install_status(
    snapshot: Callable[[], DaemonSnapshot], clock: IReactorTime
) -> Callable[[], Status]:
    """What answers a status request: the status now, with the uptime counted from here."""
    started_at = clock.seconds()

    def current() -> Status:
        return read_status(snapshot(), now=clock.seconds(), started_at=started_at)

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
    "ModuleInfo",
    "SerialStatus",
    "SocketStatus",
    "Status",
    "format_age",
    "install_status",
    "read_status",
    "render_status",
    "status_client_main",
]
