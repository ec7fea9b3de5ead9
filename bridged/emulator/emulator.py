"""The emulated module as one object: a pty, the AT interpreter, six SSL sockets,
fault injection and counters."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from bridged.core.module_profile import BC26, ModuleProfile
from bridged.emulator.at_server import AtServer, LineMode, frame
from bridged.emulator.basic_commands import BasicCommands
from bridged.emulator.cert_store import CertStore
from bridged.emulator.faults import FaultPlan, SendErrorStage, UrcRelease
from bridged.emulator.paced_writer import PacedWriter
from bridged.emulator.profiles import FAST, PROFILES, EmulatorProfile
from bridged.emulator.pty_port import PtyPort
from bridged.emulator.results import ResultCode
from bridged.emulator.ssl_commands import SslCommands
from bridged.emulator.ssl_socket import ModuleSocket, SocketEnv, SocketState, Uplink
from bridged.emulator.stats import EmulatorStats
from bridged.emulator.timeline import Timeline
from bridged.emulator.tls_link import ReadGate

_log = Logger()

DEFAULT_BAUD = 115200
#: Serial output waiting for the line above which the module stops reading its TLS
#: connections, and at or below which it reads again (bytes of AT output).
OUTPUT_BACKLOG_HIGH = 16384
OUTPUT_BACKLOG_LOW = 4096


class Emulator:
    """A BC26 on a pty at ``device_path``. Runs in the caller's reactor.

    ``start()`` powers it on (boot banner, then ``RDY`` and ``+CPIN: READY``);
    ``when_ready()`` fires after that; ``stop()`` tears everything down.
    """

    def __init__(
        self,
        device_path: str | Path,
        *,
        baud: int = DEFAULT_BAUD,
        profile: EmulatorProfile | str = FAST,
        reactor: Any = None,
        seed: int | None = None,
        echo_line_end: bytes = b"\r\n",
        module_profile: ModuleProfile = BC26,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        # ``profile`` is timing (fast / nbiot); ``module_profile`` is what the module
        # model does where the note is silent (bridged.core.module_profile).
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.module_profile = module_profile
        prompt_max_delay = self.profile.prompt_max_delay
        if prompt_max_delay is None:
            prompt_max_delay = module_profile.prompt_delay
        self.stats = EmulatorStats()
        self.faults = FaultPlan()
        self._reactor = reactor
        self._rng = random.Random(seed)
        self._timeline = Timeline(reactor)
        self._certs = CertStore()
        self._uplink = Uplink(self._timeline, self.profile.uplink_rate)
        self._writer = PacedWriter(reactor, baud, self._count_out, self._count_dropped)
        self._read_gate = ReadGate()
        self._writer.set_backlog_listener(
            OUTPUT_BACKLOG_HIGH, OUTPUT_BACKLOG_LOW, self._read_gate.set_paused
        )
        self._at = AtServer(
            reactor,
            self._rng,
            self._writer,
            self.stats,
            self.faults,
            prompt_max_delay,
            echo_line_end,
        )
        env = SocketEnv(
            reactor=reactor,
            timeline=self._timeline,
            rng=self._rng,
            profile=self.profile,
            module=module_profile,
            stats=self.stats,
            faults=self.faults,
            certs=self._certs,
            uplink=self._uplink,
            emit_urc=self._at.emit_urc,
            read_gate=self._read_gate,
        )
        self.sockets = [ModuleSocket(connect_id, env) for connect_id in module_profile.connect_ids]
        self._basic = BasicCommands(
            self._at.terminal,
            baud,
            self._set_baud_when_drained,
            self._reboot_when_drained,
            model=module_profile.label,
        )
        ssl = SslCommands(
            self.sockets, self.profile, module_profile, self.stats, self.faults, self._at.emit_urc
        )
        self._at.register(self._basic.handlers())
        self._at.register(ssl.handlers())
        self._port = PtyPort(reactor, Path(device_path), self._at.feed, baud)
        self._line_return: IDelayedCall | None = None
        self._started = False

    # -- lifecycle -------------------------------------------------------------------
    @property
    def device_path(self) -> Path:
        """The stable symlink the host opens."""
        return self._port.link_path

    @property
    def slave_name(self) -> str | None:
        """The current pty (``/dev/pts/N``); changes on every hang-up."""
        return self._port.slave_name

    @property
    def line_mode(self) -> LineMode:
        return self._at.mode

    @property
    def echo(self) -> bool:
        return self._at.terminal.echo

    @property
    def output_backlog(self) -> int:
        """Bytes queued for the host, not yet on the wire."""
        return self._writer.pending()

    def start(self) -> None:
        """Make the pty and symlink and power the module on."""
        if self._started:
            raise RuntimeError("emulator already started")
        self._started = True
        self._port.open()
        self._writer.attach(self._port.master_fd)
        self._at.power_on(self.profile.boot_time, self.profile.sim_ready_delay)

    def when_ready(self) -> Deferred[None]:
        """Fires once the module has booted and printed ``+CPIN: READY``."""
        return self._at.when_ready()

    def stop(self) -> None:
        """Close connections, pty and symlink; remove uploaded certificates."""
        if self._line_return is not None and self._line_return.active():
            self._line_return.cancel()
        self._timeline.clear()
        for socket in self.sockets:
            socket.reset()
        self._at.stop()
        self._writer.stop()
        self._port.close(remove_link=True)
        self._certs.remove()
        self._started = False

    # -- fault injection ----------------------------------------------------------------
    def reboot(self) -> None:
        """Power cycle: sockets dropped silently, settings and certificates lost, echo
        on, CMEE 0, boot banner; input is ignored until ``RDY``."""
        self.stats.reboots += 1
        _log.info("module reboots")
        self._timeline.clear()
        self._uplink.reset()
        for socket in self.sockets:
            socket.reset()
        self._certs.forget()
        self._basic.device.reset()
        self._writer.clear()
        self._at.power_on(self.profile.boot_time, self.profile.sim_ready_delay)

    def hang(self) -> None:
        """The firmware wedges: input is ignored and nothing is answered, URCs included,
        until a power cycle (``reboot()``, standing in for the gateway's GPIO)."""
        _log.info("module firmware hangs")
        self._at.hung = True
        self._timeline.clear()
        self._writer.clear()

    def hangup(self, downtime: float = 1.0, reboot: bool = False) -> Deferred[None]:
        """The serial line disappears (the host's fd sees EOF/EIO, the path is gone) and
        comes back at the same path after ``downtime`` on a new pty. ``reboot``: the
        module lost power too. The Deferred fires when the line is back."""
        self.stats.hangups += 1
        _log.info("line hangs up for {t}s", t=downtime)
        self._writer.attach(None)
        self._port.close(remove_link=True)
        returned: Deferred[None] = Deferred()

        def line_returns() -> None:
            self._line_return = None
            self._port.open()
            self._writer.attach(self._port.master_fd)
            if reboot:
                self.reboot()
            returned.callback(None)

        self._line_return = self._reactor.callLater(downtime, line_returns)
        return returned

    def close_from_network(self, connect_id: int) -> None:
        """The server side vanishes: an open socket reports ``+QSSLURC: "closed"``."""
        self.sockets[connect_id].drop_from_network()

    def inject_bytes(self, data: bytes) -> None:
        """Raw bytes to the host, outside any framing (line noise)."""
        self._at.write_raw(data)

    def inject_line(self, text: bytes) -> None:
        """A framed line the host did not ask for (``\\r\\n<text>\\r\\n``)."""
        self._at.write_raw(frame(text))

    def fail_next_sends(
        self, count: int = 1, stage: SendErrorStage = SendErrorStage.COMMAND
    ) -> None:
        """The next ``count`` QSSLSENDs answer ERROR at ``stage``."""
        self.faults.fail_next_sends(count, stage)

    def fail_next_open(self, code: ResultCode | int) -> None:
        """The next QSSLOPEN answers OK then ``+QSSLOPEN: 1,<id>,<code>``, no network."""
        self.faults.fail_next_open(ResultCode(code))

    def release_urcs_in_next_response(self, where: UrcRelease = UrcRelease.BEFORE_FINAL) -> None:
        """Hold URCs from now on and write them inside the next response (after its
        first line or just before its final result) that comes while some are held."""
        self.faults.urc_release = where

    def set_prompt_delay(self, seconds: float | None) -> None:
        """Data mode begins exactly ``seconds`` after ``>``; None: random again."""
        self.faults.prompt_delay = seconds

    def answer_next_data_slowly(self, seconds: float) -> None:
        """The next fixed-length QSSLSEND's data is answered ``seconds`` late."""
        self.faults.slow_answer = seconds

    def prompt_late(self, seconds: float) -> None:
        """The next QSSLSEND's ``>`` comes ``seconds`` late (after the host stopped
        waiting): the module then counts what arrives as payload until data mode ends."""
        self.faults.late_prompt = seconds

    def stray_ok(self) -> None:
        """An ``OK`` nobody asked for, between two responses."""
        self._at.emit_urc(b"OK")

    def use_max_prompt_delay(self) -> None:
        self.set_prompt_delay(self._at.prompt_max_delay)

    def socket_state(self, connect_id: int) -> SocketState:
        return self.sockets[connect_id].state

    # -- internals ---------------------------------------------------------------------
    def _count_out(self, count: int) -> None:
        self.stats.bytes_out += count

    def _count_dropped(self, count: int) -> None:
        self.stats.output_dropped_bytes += count

    def _set_baud_when_drained(self, baud: int) -> None:
        def switch(_: object) -> None:
            self._writer.set_baud(baud)
            self._port.set_baud(baud)

        self._writer.when_drained().addCallback(switch)

    def _reboot_when_drained(self) -> None:
        self._writer.when_drained().addCallback(lambda _: self.reboot())
