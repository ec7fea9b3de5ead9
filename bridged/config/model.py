"""The validated configuration: frozen dataclasses with plain value equality.

Where a setting is what a runtime part takes, the configuration holds that part's own
type, built by validation (bridged.config.build): a socket's ``reconnect`` is the
channel's :class:`~bridged.core.channel_types.ReconnectPolicy`, its ``queue`` the channel's
:class:`~bridged.core.channel_types.QueueLimits`, its timeouts the channel's
:class:`~bridged.core.channel_types.Timeouts`, ``serial.reopen_backoff`` a
:class:`~bridged.core.backoff.BackoffBounds`, ``ssl.dataformat`` the codec's
:class:`~bridged.core.at_codec.DataFormatSetting`. Nothing is copied field by field later.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from bridged.core.at_codec import DataFormat, DataFormatSetting
from bridged.core.backoff import BackoffBounds
from bridged.core.channel_types import Mode, QueueLimits, ReconnectPolicy, Timeouts
from bridged.core.module_profile import BC26, ModuleProfile

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "SEND_TEXT_RECV_HEX",
    "Config",
    "ControlConfig",
    "Endpoint",
    "LogConfig",
    "LogLevelName",
    "MetricsConfig",
    "ModemConfig",
    "SerialConfig",
    "SocketConfig",
    "SslSettings",
    "check_host_name",
    "socket_timeouts",
]

#: ``log.level``: the names bridged.ops.logs maps to twisted's LogLevel.
LogLevelName = Literal["debug", "info", "warn", "error"]

_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def check_host_name(host: str) -> None:
    """Accept an IPv4 literal or a DNS name; the module gets it inside quotes in AT+QSSLOPEN."""
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name or IPv4 address")
    if host.rstrip(".").rsplit(".", 1)[-1].isdigit():  # 1.2.3.999: a bad IP, not a name
        raise ValueError(f"{host!r} is not a valid IPv4 address")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ``host:port`` address; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``host:port`` / ``[v6]:port``; raise ValueError saying what is wrong."""
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"{text!r} is not '[ipv6]:port'")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"{text!r} has no port; expected 'host:port'")
            if ":" in host:
                raise ValueError(f"IPv6 addresses need brackets, e.g. '[{host}]:{port_text}'")
            if not host:
                raise ValueError(f"{text!r} has no host; expected 'host:port'")
            check_host_name(host)
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port {port_text!r} is not a number in 1..65535")
        return cls(host, int(port_text))


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialConfig:
    device: str
    baudrate: int = 115200
    reopen_backoff: BackoffBounds = field(default_factory=BackoffBounds)
    #: Serial trace file (bridged.core.serial_trace); None: no trace.
    trace: Path | None = None
    trace_payload: bool = True
    trace_max_bytes: int = 10_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ModemConfig:
    #: bridged.core.module_profile.MODEL_CHOICES; "auto" asks the module at start.
    model: str = "bc26"
    #: A module profile file (bridged selftest writes one); wins over ``model``.
    profile_file: Path | None = None
    #: Seconds to wait after ``>``; None (not written): the module profile's.
    prompt_delay: float | None = None
    command_timeout: float = 5.0
    init_retries: int = 3
    guard_time: float = 0.0  # the note asks for no gap; 0.02 cost 3-4 % (docs/performance.md)
    health_interval: float = 60.0  # 0 disables link-health polling
    max_consecutive_timeouts: int = 3
    allow_reset: bool = True  # may escalate to AT+QRST=1

    def prompt_delay_for(self, profile: ModuleProfile | None) -> float:
        """The wait after ``>``: ``prompt_delay`` as written wins; else the module
        profile's (a profile file's measured value); with ``model: auto`` (no profile
        before start) the BC26's, which every built-in profile shares."""
        if self.prompt_delay is not None:
            return self.prompt_delay
        return (profile or BC26).prompt_delay


#: ``ssl.dataformat``'s default: text sends, hex receive (``"dataformat",0,1``). A
#: fixed-length text send is delimited by its length, so any byte is safe in it, and it
#: carries 1460 bytes per prompt wait where hex carries 730: twice the upload. Receive stays
#: hex: a damaged length field in a text recv would desynchronise the parser.
SEND_TEXT_RECV_HEX: Final = DataFormatSetting(send=DataFormat.TEXT, recv=DataFormat.HEX)


@dataclass(frozen=True, slots=True, kw_only=True)
class SslSettings:
    """AT+QSSLCFG settings of one socket. Certificate paths are absolute (or None)."""

    seclevel: int = 1  # default: always verify the server; seclevel 0 must be explicit
    sslversion: int = 4
    dataformat: DataFormatSetting = SEND_TEXT_RECV_HEX
    timeout: int = 90
    debug: int = 0
    cacert: Path | None = None
    clientcert: Path | None = None
    clientkey: Path | None = None


#: ``idle_timeout`` when not written: on-demand 300 s (an idle connection costs airtime
#: and battery); persistent 0, never (being connected is the point).
DEFAULT_IDLE_TIMEOUT: Final[Mapping[Mode, float]] = {"on-demand": 300.0, "persistent": 0.0}


def socket_timeouts(mode: Mode, **written: float) -> Timeouts:
    """The channel's timeouts of a socket: what was written, else the defaults for its mode."""
    return Timeouts(**{"idle": DEFAULT_IDLE_TIMEOUT[mode], **written})


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketConfig:
    connect_id: int
    listen: Endpoint
    remote: Endpoint
    mode: Mode = "on-demand"
    allow_remote: bool = False
    ssl: SslSettings = SslSettings()  # effective: defaults merged with this socket's overrides
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    queue: QueueLimits = field(default_factory=QueueLimits)
    #: idle_timeout, half_close_timeout, handover_wait, send_stall_timeout as the channel
    #: takes them. Validation builds them for the socket's mode (socket_timeouts); the
    #: default here is an on-demand socket's.
    timeouts: Timeouts = field(default_factory=lambda: socket_timeouts("on-demand"))


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    listen: Endpoint = Endpoint("127.0.0.1", 9464)
    allow_remote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: LogLevelName = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    socket: Path = Path("/run/bridged/control.sock")
    group: str | None = None
    mode: int = 0o660


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration. Plain value equality, so a reload can diff old and new."""

    serial: SerialConfig
    sockets: tuple[SocketConfig, ...]
    modem: ModemConfig = ModemConfig()
    ssl: SslSettings = SslSettings()  # the defaults as written; sockets carry merged copies
    metrics: MetricsConfig | None = MetricsConfig()  # None: metrics disabled
    log: LogConfig = LogConfig()
    control: ControlConfig = ControlConfig()
