"""What the module says about itself and the radio, parsed: pure functions, no I/O.

The poller (:mod:`bridged.shell.link_health`) asks, at low priority:

- ``AT+CSQ`` → ``+CSQ: <rssi>,<ber>``: rssi 0..31 is -113 + 2·rssi dBm, 99 unknown;
- ``AT+CEREG?`` → ``+CEREG: <n>,<stat>[,...]``: stat 1 (home) or 5 (roaming) is registered;
- ``AT+QENG=0`` → ``+QENG: 0,<sc_EARFCN>,<sc_EARFCN_offset>,<sc_pci>,"<sc_cellID>",
  [<sc_RSRP>],[<sc_RSRQ>],[<sc_RSSI>],[<sc_SINR>],<sc_band>,"<sc_TAC>",[<sc_ECL>],
  [<sc_Tx_pwr>][,<operation_mode>]`` (neighbour cells, if listed, as ``+QENG: 1,...``);
- ``ATI`` → manufacturer, model and ``Revision: <firmware>``.

Units of ``+QENG``: the BC26 (and its successor BC260Y/BC660K) reports RSRP, RSRQ, RSSI
and SINR as whole dBm / dB, e.g. ``+QENG: 0,2507,2,146,"772F253",-90,-8,-83,16,5,"785F",
0,140,3`` from Quectel's QuecOpen sample code; they are not tenths (the older BC95's
``AT+NUESTATS`` is the one that reports tenths). A value outside the range 3GPP TS 36.133
can report (RSRP -156..-31 dBm, RSRQ -34..3 dB, SINR -30..50 dB, ECL 0..2) is taken as
"not measured" and left absent rather than shown wrong.

An empty or missing field leaves that value ``None``, which the metrics leave absent
rather than zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

CSQ_UNKNOWN = 99
REGISTERED_STATUSES = frozenset({1, 5})  # 1 registered, home network; 5 registered, roaming
REGISTRATION_STATUS_NAMES: dict[int, str] = {
    0: "not registered, not searching",
    1: "registered, home network",
    2: "not registered, searching",
    3: "registration denied",
    4: "unknown",
    5: "registered, roaming",
}

# What 3GPP TS 36.133 lets a UE report (extended ranges for NB-IoT coverage enhancement).
RSRP_RANGE = (-156, -31)
RSRQ_RANGE = (-34, 3)
SINR_RANGE = (-30, 50)
QENG_RSSI_RANGE = (-130, 0)
ECL_RANGE = (0, 2)


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class SignalQuality:
    """``+CSQ``: received signal strength; ``rssi_dbm`` None when 99 (unknown)."""

    rssi: int | None  # the raw 0..31 index
    rssi_dbm: int | None


@dataclass(frozen=True, slots=True)
class Registration:
    """``+CEREG`` read: EPS network registration status."""

    mode: int | None  # <n>, the URC setting
    status: int

    @property
    def registered(self) -> bool:
        return self.status in REGISTERED_STATUSES


@dataclass(frozen=True, slots=True)
class ServingCell:
    """``+QENG: 0,...``: the serving cell. Every measurement may be absent."""

    earfcn: int | None
    earfcn_offset: int | None
    pci: int | None
    cell_id: str | None
    rsrp_dbm: int | None
    rsrq_db: int | None
    rssi_dbm: int | None
    sinr_db: int | None
    band: int | None
    tac: str | None
    ecl: int | None


@dataclass(frozen=True, slots=True)
class LinkReadings:
    """One poll's results; a field is None when that command failed or said nothing."""

    signal: SignalQuality | None = None
    registration: Registration | None = None
    cell: ServingCell | None = None


# --------------------------------------------------------------------------- parsing


def split_fields(text: str) -> list[str]:
    """``a,"b,c", d`` → ``['a', 'b,c', 'd']``: commas split except inside quotes; quotes
    removed, blanks around fields stripped. An empty field stays an empty string."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    fields.append("".join(current).strip())
    return fields


def _info_fields(lines: Sequence[str], prefix: str) -> list[list[str]]:
    """The fields of every line starting with ``prefix`` (``+CSQ:``), in order."""
    found = []
    for line in lines:
        text = line.strip()
        if text.upper().startswith(prefix.upper()):
            found.append(split_fields(text[len(prefix) :]))
    return found


def _int(field: str | None) -> int | None:
    if field is None:
        return None
    text = field.strip()
    if not text:
        return None
    try:
        return int(text, 10)
    except ValueError:
        return None


def _in_range(value: int | None, bounds: tuple[int, int]) -> int | None:
    if value is None or not bounds[0] <= value <= bounds[1]:
        return None
    return value


def _field(fields: Sequence[str], index: int) -> str | None:
    return fields[index] if index < len(fields) else None


def _text(field: str | None) -> str | None:
    return field if field else None


def csq_to_dbm(rssi: int) -> int | None:
    """27.007 ``<rssi>`` 0..31 → dBm (0 is -113 dBm or less, 31 is -51 or more); 99 None."""
    if 0 <= rssi <= 31:
        return -113 + 2 * rssi
    return None


def parse_csq(lines: Sequence[str]) -> SignalQuality | None:
    """``AT+CSQ`` response lines → signal quality; None if there is no ``+CSQ:`` line."""
    found = _info_fields(lines, "+CSQ:")
    if not found:
        return None
    rssi = _int(_field(found[0], 0))
    if rssi is None or rssi == CSQ_UNKNOWN:
        return SignalQuality(rssi=None, rssi_dbm=None)
    dbm = csq_to_dbm(rssi)
    return SignalQuality(rssi=rssi if dbm is not None else None, rssi_dbm=dbm)


def parse_cereg(lines: Sequence[str]) -> Registration | None:
    """``AT+CEREG?`` response lines → registration; None without a usable ``<stat>``."""
    found = _info_fields(lines, "+CEREG:")
    if not found:
        return None
    fields = found[0]
    status = _int(_field(fields, 1))
    if status is None or status < 0:
        return None
    return Registration(mode=_int(_field(fields, 0)), status=status)


def parse_qeng(lines: Sequence[str]) -> ServingCell | None:
    """``AT+QENG=0`` response lines → the serving cell; None without a ``+QENG: 0,`` line.

    Neighbour-cell lines (``+QENG: 1,...``) are skipped. Fields may be empty or missing at
    the end (the module leaves out what it has not measured): those values are None.
    """
    for fields in _info_fields(lines, "+QENG:"):
        if _int(_field(fields, 0)) != 0:
            continue
        return ServingCell(
            earfcn=_int(_field(fields, 1)),
            earfcn_offset=_int(_field(fields, 2)),
            pci=_int(_field(fields, 3)),
            cell_id=_text(_field(fields, 4)),
            rsrp_dbm=_in_range(_int(_field(fields, 5)), RSRP_RANGE),
            rsrq_db=_in_range(_int(_field(fields, 6)), RSRQ_RANGE),
            rssi_dbm=_in_range(_int(_field(fields, 7)), QENG_RSSI_RANGE),
            sinr_db=_in_range(_int(_field(fields, 8)), SINR_RANGE),
            band=_int(_field(fields, 9)),
            tac=_text(_field(fields, 10)),
            ecl=_in_range(_int(_field(fields, 11)), ECL_RANGE),
        )
    return None


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True, slots=True)
class ModuleInfo:
    """What ``ATI`` says; None until the module has answered it once."""

    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None


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


def registration_text(status: int) -> str:
    """``<stat>`` of ``+CEREG`` in words, as the log and ``bridged status`` show it."""
    return REGISTRATION_STATUS_NAMES.get(status, f"status {status}")


__all__ = [
    "LinkReadings",
    "ModuleInfo",
    "Registration",
    "ServingCell",
    "SignalQuality",
    "csq_to_dbm",
    "parse_ati",
    "parse_cereg",
    "parse_csq",
    "parse_qeng",
    "registration_text",
    "split_fields",
]
