"""Link health: what the module says about the radio, polled at low priority.

Every ``modem.health_interval`` seconds while the module is ready, three commands go out
one after the other at :attr:`~bridged.shell.at_engine.Priority.LOW`, so none of them is ever
written ahead of a queued open, send or close:

- ``AT+CSQ`` → ``+CSQ: <rssi>,<ber>``: rssi 0..31 is -113 + 2·rssi dBm, 99 unknown;
- ``AT+CEREG?`` → ``+CEREG: <n>,<stat>[,...]``: stat 1 (home) or 5 (roaming) is registered;
- ``AT+QENG=0`` → ``+QENG: 0,<sc_EARFCN>,<sc_EARFCN_offset>,<sc_pci>,"<sc_cellID>",
  [<sc_RSRP>],[<sc_RSRQ>],[<sc_RSSI>],[<sc_SINR>],<sc_band>,"<sc_TAC>",[<sc_ECL>],
  [<sc_Tx_pwr>][,<operation_mode>]`` (neighbour cells, if listed, as ``+QENG: 1,...``).

Units of ``+QENG``: the BC26 (and its successor BC260Y/BC660K) reports RSRP, RSRQ, RSSI
and SINR as whole dBm / dB, e.g. ``+QENG: 0,2507,2,146,"772F253",-90,-8,-83,16,5,"785F",
0,140,3`` from Quectel's QuecOpen sample code; they are not tenths (the older BC95's
``AT+NUESTATS`` is the one that reports tenths). A value outside the range 3GPP TS 36.133
can report (RSRP -156..-31 dBm, RSRQ -34..3 dB, SINR -30..50 dB, ECL 0..2) is taken as
"not measured" and left absent rather than shown wrong.

A command the module answers with ``ERROR`` (or that times out), or an empty field, leaves
that value ``None``, which the metrics leave absent rather than zero. Values are cleared
when the module is lost: they describe a radio that may no longer be there.

The parsing functions are pure; :class:`LinkHealth` is the Twisted glue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.shell.at_engine import ATError, CommandError, CommandTimeout, Priority
from bridged.shell.modem import Modem, ModemState

if TYPE_CHECKING:
    from bridged.shell.daemon import Daemon
    from bridged.shell.qssl import QsslClient

log = Logger(namespace="bridged.link")

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
class LinkSnapshot:
    """The last poll's results; a field is None when that command failed or said nothing."""

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


# --------------------------------------------------------------------------- polling

POLL_COMMANDS = ("AT+CSQ", "AT+CEREG?", "AT+QENG=0")


class LinkHealth:
    """Polls the link while the module is ready; ``snapshot`` holds the latest values.

    Attach with :meth:`start` (it subscribes to the modem's ready/lost listeners) and
    detach with :meth:`stop`. ``interval`` 0 disables polling: the snapshot stays empty.
    """

    def __init__(
        self,
        clock: IReactorTime,
        modem: Modem,
        interval: float,
        command_timeout: float = 5.0,
    ) -> None:
        self.clock = clock
        self.modem = modem
        self.interval = interval
        self.command_timeout = command_timeout
        self.snapshot = LinkSnapshot()
        self.polls = 0  # polls completed (each of the three commands answered or failed)
        self.updated_at: float | None = None  # clock time of the last completed poll
        self.change_listeners: list[Callable[[LinkSnapshot], None]] = []
        self._loop: task.LoopingCall | None = None
        self._generation = 0  # bumped when the module is lost: late answers are dropped
        self._started = False

    # ------------------------------------------------------------------ control

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if self._started or not self.enabled:
            return
        self._started = True
        self.modem.ready_listeners.append(self._module_ready)
        self.modem.lost_listeners.append(self._module_lost)
        if self.modem.state is ModemState.READY:
            self._start_loop()

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self._stop_loop()
        self._generation += 1
        for listeners, listener in (
            (self.modem.ready_listeners, self._module_ready),
            (self.modem.lost_listeners, self._module_lost),
        ):
            if listener in listeners:
                listeners.remove(listener)  # type: ignore[arg-type]

    def _module_ready(self, _qssl: QsslClient) -> None:
        self._start_loop()

    def _module_lost(self, _reason: str) -> None:
        self._stop_loop()
        self._generation += 1
        self.updated_at = None
        self._set(LinkSnapshot())

    def _start_loop(self) -> None:
        self._stop_loop()
        self._generation += 1  # a poll of an earlier loop stops at its next step
        loop = task.LoopingCall(self._poll)
        loop.clock = self.clock
        self._loop = loop
        # A poll still running when the next is due makes LoopingCall skip that one.
        loop.start(self.interval, now=True).addErrback(self._loop_failed)

    @staticmethod
    def _loop_failed(failure: Failure) -> None:
        log.failure("link health polling stopped", failure)

    def _stop_loop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    # ------------------------------------------------------------------ one poll

    def _poll(self) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(self.poll_once())

    async def poll_once(self) -> None:
        """Ask the three commands one after another (never queued together, so data
        queued meanwhile goes first) and publish what they say."""
        generation = self._generation
        results: list[list[str] | None] = []
        for line in POLL_COMMANDS:
            engine = self.modem.engine
            if engine is None or self.modem.state is not ModemState.READY:
                return
            try:
                response = await engine.command(
                    line, timeout=self.command_timeout, priority=Priority.LOW
                )
            except (CommandError, CommandTimeout) as e:
                log.debug("link health: {error}", error=e)
                results.append(None)
                continue
            except ATError as e:  # serial lost, module restarting: this poll is moot
                log.debug("link health poll abandoned: {error}", error=e)
                return
            if generation != self._generation:
                return
            results.append(response.lines)
        if generation != self._generation:
            return
        csq, cereg, qeng = results
        self.polls += 1
        self.updated_at = self.clock.seconds()
        self._set(
            LinkSnapshot(
                signal=parse_csq(csq) if csq is not None else None,
                registration=parse_cereg(cereg) if cereg is not None else None,
                cell=parse_qeng(qeng) if qeng is not None else None,
            )
        )

    def _set(self, snapshot: LinkSnapshot) -> None:
        old, self.snapshot = self.snapshot, snapshot
        if old == snapshot:
            return
        self._log_change(old, snapshot)
        for listener in list(self.change_listeners):
            try:
                listener(snapshot)
            except Exception:
                log.failure("link health listener failed")

    @staticmethod
    def _log_change(old: LinkSnapshot, new: LinkSnapshot) -> None:
        was = old.registration.registered if old.registration else None
        now = new.registration.registered if new.registration else None
        if was != now and new.registration is not None:
            status = new.registration.status
            text = REGISTRATION_STATUS_NAMES.get(status, f"status {status}")
            if now:
                log.info("network registration: {text}", text=text)
            else:
                log.warn("network registration: {text}", text=text)
        old_cell = old.cell.cell_id if old.cell else None
        new_cell = new.cell.cell_id if new.cell else None
        if new_cell is not None and new_cell != old_cell:
            cell = new.cell
            assert cell is not None
            log.info(
                "serving cell {cell_id} (pci {pci}, band {band}): RSRP {rsrp} dBm, ECL {ecl}",
                cell_id=new_cell,
                pci=cell.pci,
                band=cell.band,
                rsrp=cell.rsrp_dbm,
                ecl=cell.ecl,
            )


def start_link_health(daemon: Daemon, reactor: IReactorTime) -> LinkHealth | None:
    """Poll the link at ``config.modem.health_interval`` seconds; None when it is 0."""
    modem_config = daemon.config.modem
    if modem_config.health_interval <= 0:
        return None
    health = LinkHealth(
        reactor,
        daemon.modem,
        modem_config.health_interval,
        command_timeout=modem_config.command_timeout,
    )
    health.start()
    return health


__all__ = [
    "LinkHealth",
    "LinkSnapshot",
    "Registration",
    "ServingCell",
    "SignalQuality",
    "csq_to_dbm",
    "parse_cereg",
    "parse_csq",
    "parse_qeng",
    "split_fields",
    "start_link_health",
]
