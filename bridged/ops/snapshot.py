"""What operations read of the running daemon: one snapshot of plain values.

``/metrics``, ``/healthz``, ``bridged status`` and the systemd notifier read a
:class:`DaemonSnapshot` and nothing else; the composition root
(:mod:`bridged.shell.daemon`) fills it from its parts at the moment it is asked, in the
reactor thread, so one scrape or status reply is one consistent picture. Nothing here
refers back into the daemon: these modules do not import the shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bridged.core.channel import ChannelState
from bridged.core.link_readings import LinkReadings, ModuleInfo

# bridged.shell.modem.ModemState values (tests/test_sdnotify.py checks that they match).
SERIAL_DOWN = "serial-down"
INITIALISING = "initialising"
READY = "ready"


@dataclass(frozen=True, slots=True)
class ModemSnapshot:
    device: str
    baudrate: int
    state: str  # the modem's state: serial-down, initialising, ready
    healthy: bool  # lifecycle (recovery ladder) and AT session together
    serial_reopens: int  # times the port was lost and reopened
    restarts: Mapping[str, int] = field(default_factory=dict)  # by reason

    @property
    def serial_up(self) -> bool:
        return self.state != SERIAL_DOWN

    @property
    def module_ready(self) -> bool:
        return self.state == READY


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """The current AT engine (one per serial connection)."""

    connected: bool
    healthy: bool  # False from a timeout until the module answers again
    pending: int  # commands queued or in flight


@dataclass(frozen=True, slots=True)
class Histogram:
    """A histogram's buckets, cumulative (``le`` label, count), and its sum."""

    buckets: tuple[tuple[str, float], ...]
    total: float


@dataclass(frozen=True, slots=True)
class ATTotals:
    """AT traffic over every engine the modem has had."""

    commands: Mapping[tuple[str, str], int]  # (command, result)
    durations: Mapping[str, Histogram]  # by command
    timeouts: Mapping[str, int]  # by command
    urcs: Mapping[str, int]  # by type
    protocol_errors: Mapping[str, int]  # by kind
    bytes_in: int
    bytes_out: int


@dataclass(frozen=True, slots=True)
class SocketSnapshot:
    """One configured socket: its settings, its SSL connection, its client, its counters."""

    connect_id: int
    mode: str
    listen: str
    remote: str
    state: ChannelState
    client_peer: str | None  # the attached local client, None when there is none
    queued_bytes: int  # accepted from the client, not yet confirmed sent
    recv_buffered_bytes: int  # received, held for a client not connected
    idle_timeout: float  # s without traffic before the connection is closed; 0: never
    tx_bytes: int = 0
    rx_bytes: int = 0
    rx_dropped_bytes: int = 0
    tx_lost_bytes: int = 0
    remote_closes: int = 0
    send_failures: int = 0
    opens: Mapping[str, int] = field(default_factory=dict)  # by result name
    client_connections: Mapping[str, int] = field(default_factory=dict)  # by outcome
    streams_broken: Mapping[str, int] = field(default_factory=dict)  # by reason
    # Wall-clock seconds from the reactor:
    state_since: float | None = None
    client_since: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """Link-health polling: the last readings and when the module gave them."""

    readings: LinkReadings
    read_at: float | None  # None: no completed poll since the module became ready


@dataclass(frozen=True, slots=True)
class DaemonSnapshot:
    modem: ModemSnapshot
    engine: EngineSnapshot | None  # None before the first serial connection
    ready: bool  # module ready and listening
    listening: bool
    send_chunks: int  # AT+QSSLSEND commands issued
    sockets: tuple[SocketSnapshot, ...]
    link: LinkSnapshot | None = None  # None: link health polling is off
    module: ModuleInfo = field(default_factory=ModuleInfo)
    at: ATTotals | None = None  # None: AT traffic is not counted (no metrics endpoint)


__all__ = [
    "ATTotals",
    "DaemonSnapshot",
    "EngineSnapshot",
    "Histogram",
    "LinkSnapshot",
    "ModemSnapshot",
    "SocketSnapshot",
]
