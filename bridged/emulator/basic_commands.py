"""General commands: AT, ATE, ATI, CGMM, CMEE, QSCLK, CSQ, CEREG, QENG, CPIN, IPR, QRST."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridged.emulator.at_parse import Command, CommandKind
from bridged.emulator.at_server import Handler, TerminalSettings
from bridged.emulator.replies import Reply

REVISION_LINES = ("Quectel_Ltd", "Quectel_BC26", "Revision: BC26NBR01A10")


def revision_lines(model: str) -> tuple[str, ...]:
    """What ``ATI`` answers on ``model`` (a module profile's title, e.g. "BC660K-GL")."""
    if model == "BC26":
        return REVISION_LINES
    return ("Quectel", model, f"Revision: {model.replace('-', '')}R01A01")


SUPPORTED_BAUD_RATES = (4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
# A plausible serving cell (band 8): earfcn, offset, pci, cell id, RSRP, RSRQ, RSSI,
# SINR, band, TAC, ECL, TX power.
ENGINEERING_LINE = '+QENG: 0,3736,2,246,"0F4C7A21",-87,-9,-80,12,8,"2F4A",0,23'
SIGNAL_QUALITY_LINE = "+CSQ: 22,99"


@dataclass
class DeviceState:
    """Settings of the general commands that a reboot resets (baud rate excepted)."""

    sleep_mode: int = 1  # AT+QSCLK; sleep is enabled out of reset
    cereg_mode: int = 0

    def reset(self) -> None:
        self.sleep_mode, self.cereg_mode = 1, 0


class BasicCommands:
    def __init__(
        self,
        terminal: TerminalSettings,
        baud: int,
        set_baud: Callable[[int], None],
        request_reboot: Callable[[], None],
        model: str = "BC26",
    ) -> None:
        self._model = model
        self._terminal = terminal
        self.device = DeviceState()
        self.baud = baud
        self._set_baud = set_baud
        self._request_reboot = request_reboot

    def handlers(self) -> dict[str, Handler]:
        return {
            "AT": lambda c: Reply.ok() if c.kind is CommandKind.EXEC else Reply.fail(),
            "ATE": self._echo,
            "ATI": self._identify,
            "AT+CGMM": lambda c: (
                Reply.ok(self._model) if c.kind is CommandKind.EXEC else Reply.fail()
            ),
            "AT+CMEE": self._cmee,
            "AT+QSCLK": self._sleep,
            "AT+CSQ": self._signal_quality,
            "AT+CEREG": self._registration,
            "AT+CGATT": self._attach,
            "AT+QENG": self._engineering,
            "AT+CPIN": self._sim,
            "AT+IPR": self._baud_rate,
            "AT+QRST": self._reset,
        }

    def _echo(self, c: Command) -> Reply:
        value = c.int_arg(0) if c.args else 0
        if value not in (0, 1):
            return Reply.fail()
        self._terminal.echo = value == 1
        return Reply.ok()

    def _identify(self, c: Command) -> Reply:
        if c.args and c.int_arg(0) != 0:
            return Reply.fail()
        return Reply.ok(*revision_lines(self._model))

    def _cmee(self, c: Command) -> Reply:
        return self._int_setting(c, "+CMEE", range(0, 3), self._terminal, "cmee")

    def _sleep(self, c: Command) -> Reply:
        return self._int_setting(c, "+QSCLK", range(0, 3), self.device, "sleep_mode")

    def _registration(self, c: Command) -> Reply:
        if c.kind is CommandKind.READ:
            return Reply.ok(f"+CEREG: {self.device.cereg_mode},1")  # 1: registered, home
        return self._int_setting(c, "+CEREG", range(0, 6), self.device, "cereg_mode")

    def _int_setting(
        self, c: Command, label: str, allowed: range, owner: object, attribute: str
    ) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok(f"{label}: ({allowed.start}-{allowed.stop - 1})")
        if c.kind is CommandKind.READ:
            return Reply.ok(f"{label}: {getattr(owner, attribute)}")
        value = c.int_arg(0)
        if c.kind is not CommandKind.WRITE or len(c.args) != 1 or value not in allowed:
            return Reply.fail()
        setattr(owner, attribute, value)
        return Reply.ok()

    def _signal_quality(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok("+CSQ: (0-31,99),(99)")
        return Reply.ok(SIGNAL_QUALITY_LINE) if c.kind is CommandKind.EXEC else Reply.fail()

    def _attach(self, c: Command) -> Reply:
        if c.kind is CommandKind.READ:
            return Reply.ok("+CGATT: 1")
        return Reply.ok("+CGATT: (0,1)") if c.kind is CommandKind.TEST else Reply.fail()

    def _engineering(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok("+QENG: (0)")
        if c.kind is CommandKind.WRITE and len(c.args) == 1 and c.int_arg(0) == 0:
            return Reply.ok(ENGINEERING_LINE)
        return Reply.fail()

    def _sim(self, c: Command) -> Reply:
        if c.kind is CommandKind.READ:
            return Reply.ok("+CPIN: READY")
        return Reply.ok() if c.kind is CommandKind.TEST else Reply.fail()

    def _baud_rate(self, c: Command) -> Reply:
        if c.kind is CommandKind.READ:
            return Reply.ok(f"+IPR: {self.baud}")
        if c.kind is CommandKind.TEST:
            rates = ",".join(str(r) for r in SUPPORTED_BAUD_RATES)
            return Reply.ok(f"+IPR: (),({rates})")
        rate = c.int_arg(0)
        if c.kind is not CommandKind.WRITE or len(c.args) != 1 or rate not in SUPPORTED_BAUD_RATES:
            return Reply.fail()
        self.baud = rate
        # The new rate applies after OK has gone out at the old one.
        return Reply.ok(then=lambda: self._set_baud(rate))

    def _reset(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok("+QRST: (1)")
        if c.kind is CommandKind.WRITE and len(c.args) == 1 and c.int_arg(0) == 1:
            return Reply.ok(then=self._request_reboot)
        return Reply.fail()
