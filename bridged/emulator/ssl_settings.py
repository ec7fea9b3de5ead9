"""QSSLCFG settings of one SSL socket: names, aliases, ranges, defaults."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

#: Integer settings and their allowed values. Defaults are the note's where it has one
#: (timeout 90) and the least surprising otherwise.
INT_SETTING_RANGES: dict[str, range] = {
    "seclevel": range(0, 3),
    "sslversion": range(0, 5),
    "timeout": range(10, 301),
    "debug": range(0, 5),
}
DATAFORMAT_VALUES = range(0, 2)
CERT_SETTINGS: tuple[str, ...] = ("cacert", "clientcert", "clientkey")
#: The note spells "seclevel" three ways; the module answers with the name it was asked.
SETTING_ALIASES: dict[str, str] = {"secllevel": "seclevel", "secclevel": "seclevel"}
#: Order of ``AT+QSSLCFG=1,<id>`` (read all) and of ``AT+QSSLCFG=?``.
SETTING_ORDER: tuple[str, ...] = (
    "seclevel",
    "sslversion",
    "dataformat",
    "timeout",
    "debug",
    *CERT_SETTINGS,
)
#: Largest PEM the emulator keeps; a real module's limit is not documented.
MAX_CERT_BYTES = 8192


def canonical_setting(name: str) -> str | None:
    """The setting ``name`` stands for (case-insensitive), None if unknown."""
    lowered = name.lower()
    lowered = SETTING_ALIASES.get(lowered, lowered)
    return lowered if lowered in SETTING_ORDER else None


@dataclass
class SocketSettings:
    """Settings of one (contextID 1, connectID) pair; lost on reboot."""

    seclevel: int = 0
    sslversion: int = 4
    send_hex: bool = False
    recv_hex: bool = False
    timeout: int = 90
    debug: int = 0
    certs: dict[str, bytes] = field(default_factory=dict)

    def value_text(self, name: str) -> str:
        """The ``<value>`` part of ``+QSSLCFG: 1,<id>,"<name>",<value>``."""
        if name == "dataformat":
            return f"{int(self.send_hex)},{int(self.recv_hex)}"
        if name in CERT_SETTINGS:
            return str(len(self.certs.get(name, b"")))
        return str(getattr(self, name))

    def set_int(self, name: str, value: int) -> bool:
        """Store an integer setting if in range; False (unchanged) otherwise."""
        if value not in INT_SETTING_RANGES[name]:
            return False
        setattr(self, name, value)
        return True

    def set_dataformat(self, send: int, recv: int) -> bool:
        if send not in DATAFORMAT_VALUES or recv not in DATAFORMAT_VALUES:
            return False
        self.send_hex, self.recv_hex = bool(send), bool(recv)
        return True


def supported_range_lines(contexts: Sequence[int], sockets: Sequence[int]) -> list[str]:
    """``AT+QSSLCFG=?`` info lines."""
    prefix = f"+QSSLCFG: ({_span(contexts)}),({_span(sockets)})"
    lines = [prefix]
    for name in SETTING_ORDER:
        if name == "dataformat":
            lines.append(f'{prefix},"dataformat",(0,1),(0,1)')
        elif name in INT_SETTING_RANGES:
            lines.append(f'{prefix},"{name}",({_span(INT_SETTING_RANGES[name])})')
        else:
            lines.append(f'{prefix},"{name}"')
    return lines


def _span(values: Sequence[int]) -> str:
    return f"{values[0]}-{values[-1]}"
