"""The module's six SSL sockets: state, real TLS links, latency, URCs they cause."""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.error import (
    ConnectingCancelledError,
    ConnectionRefusedError,
    DNSLookupError,
    TimeoutError,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.module_profile import ModuleProfile
from bridged.emulator.cert_store import CertStore
from bridged.emulator.faults import FaultPlan
from bridged.emulator.profiles import EmulatorProfile
from bridged.emulator.results import ResultCode
from bridged.emulator.ssl_settings import SocketSettings
from bridged.emulator.stats import EmulatorStats
from bridged.emulator.timeline import Timeline, TimelineHandle
from bridged.emulator.tls_link import ReadGate, TlsLink
from bridged.tools import module_tls

_log = Logger()


def written_code(module: ModuleProfile, code: int) -> int:
    """A result code as this module writes it (the BC660K's note: without the sign)."""
    return abs(code) if module.unsigned_results else code


class SocketState(Enum):
    CLOSED = "closed"
    OPENING = "opening"
    OPEN = "open"


class Uplink:
    """The radio's uplink, shared by all sockets: one payload after another."""

    def __init__(self, timeline: Timeline, rate: float | None) -> None:
        self._timeline = timeline
        self._rate = rate
        self._free_at = 0.0

    def reserve(self, nbytes: int) -> float:
        """When ``nbytes`` queued now will have left the module (reactor seconds)."""
        start = max(self._timeline.now(), self._free_at)
        self._free_at = start + (nbytes / self._rate if self._rate else 0.0)
        return self._free_at

    def reset(self) -> None:
        self._free_at = 0.0


@dataclass
class SocketEnv:
    """What every socket shares."""

    reactor: Any  # IReactorTCP & IReactorTime; HostnameEndpoint wants both
    timeline: Timeline
    rng: random.Random
    profile: EmulatorProfile
    #: The module model: recv limits and quoting, open result codes, suites.
    module: ModuleProfile
    stats: EmulatorStats
    faults: FaultPlan
    certs: CertStore
    uplink: Uplink
    emit_urc: Callable[[bytes], None]
    #: Closed while the serial output is backlogged: received data waits in TCP.
    read_gate: ReadGate | None = None


def _code_for_profile_error(exc: module_tls.ModuleTlsError) -> ResultCode:
    if isinstance(exc, module_tls.UnsupportedSslVersion):
        return ResultCode.CIPHER  # a server would refuse SSL 3.0 in the handshake
    if isinstance(exc, module_tls.CaCertError | module_tls.ClientCertError):
        return ResultCode.CERTIFICATE
    if isinstance(exc, module_tls.ClientKeyError):
        return ResultCode.CLIENT_KEY
    return ResultCode.OTHER


class _AttemptEvents:
    """Routes one connection attempt's link events; stale attempts are ignored."""

    def __init__(self, socket: ModuleSocket, attempt: int) -> None:
        self._socket = socket
        self._attempt = attempt

    def handshake_done(self, result: ResultCode, situation: str | None = None) -> None:
        self._socket._handshake_done(self._attempt, self._socket._profile_code(result, situation))

    def data_received(self, data: bytes) -> None:
        self._socket._link_data(self._attempt, data)

    def closed(self) -> None:
        self._socket._link_closed(self._attempt)


class ModuleSocket:
    """One connectID. Every connection attempt gets a number; events from an older
    attempt (after a close, a reboot, a timeout) are dropped."""

    def __init__(self, connect_id: int, env: SocketEnv) -> None:
        self.connect_id = connect_id
        self._env = env
        self.settings = SocketSettings()
        self.state = SocketState.CLOSED
        self._attempt = 0
        self._link: TlsLink | None = None
        self._open_timer: TimelineHandle | None = None
        self._connecting: Deferred[Any] | None = None
        # The attempt whose +QSSLOPEN result is already decided (first cause wins).
        self._decided_attempt = 0
        self._report_not_before = 0.0
        # Arrived while opening, shown after +QSSLOPEN.
        self._early_data: list[bytes] = []
        self._closed_while_opening = False
        #: Sends accepted (OK after the data) whose ``+QSSLSEND`` result is not out yet.
        self.unconfirmed_sends = 0

    # -- commands (called once OK is on the line) -----------------------------------
    def open(self, host: str, port: int) -> None:
        env = self._env
        env.stats.opens += 1
        attempt = self._new_attempt()
        self.state = SocketState.OPENING
        low, high = env.profile.open_latency
        self._report_not_before = env.timeline.now() + env.rng.uniform(low, high)
        forced = env.faults.take_open_failure()
        if forced is not None:
            self._handshake_done(attempt, forced)
            return
        try:
            context = self._client_context()
        except module_tls.ModuleTlsError as exc:
            _log.info("socket {id}: {err}", id=self.connect_id, err=exc)
            self._handshake_done(attempt, _code_for_profile_error(exc))
            return
        timeout = self.settings.timeout * env.profile.timeout_scale
        link = TlsLink(context, host, _AttemptEvents(self, attempt), env.read_gate)
        self._link = link
        self._open_timer = env.timeline.after(timeout, lambda: self._open_timed_out(attempt))
        endpoint = HostnameEndpoint(env.reactor, host, port, timeout=max(1, int(timeout)))
        connecting: Deferred[Any] = connectProtocol(endpoint, link)  # type: ignore[no-untyped-call]
        connecting.addErrback(self._connect_failed, attempt)
        self._connecting = connecting

    def send(self, payload: bytes) -> None:
        """Queue on the uplink; ``+QSSLSEND`` once it left (and was acked)."""
        env = self._env
        attempt, link = self._attempt, self._link
        left_at = env.uplink.reserve(len(payload))
        half_rtt = env.profile.rtt / 2
        delivered = [False]

        def write() -> None:
            if attempt == self._attempt and link is not None and self.state is SocketState.OPEN:
                delivered[0] = link.write(payload)

        self.unconfirmed_sends += 1

        def report() -> None:
            if attempt != self._attempt:
                # The connection ended first (AT+QSSLCLOSE, its "closed" URC, a reset):
                # its sends get no result after that, never one on a later connection
                # (results carry only the connectID; our guess, pinned by a test).
                return
            self.unconfirmed_sends = max(0, self.unconfirmed_sends - 1)
            code = ResultCode.SUCCESS if delivered[0] else ResultCode.CONNECTION
            env.emit_urc(
                b"+QSSLSEND: %d,%d,%d"
                % (env.module.context_id, self.connect_id, written_code(env.module, code))
            )

        env.timeline.at(left_at + half_rtt, write)
        env.timeline.at(left_at + env.profile.rtt, report)

    def close(self) -> None:
        """QSSLCLOSE: orderly close, no closed URC, ``+QSSLCLOSE`` shortly after."""
        self._drop_link(orderly=True)
        self._env.timeline.after(
            self._env.profile.close_latency,
            lambda: self._env.emit_urc(
                b"+QSSLCLOSE: %d,%d,0" % (self._env.module.context_id, self.connect_id)
            ),
        )

    # -- faults and lifecycle -----------------------------------------------------------
    def drop_from_network(self) -> None:
        """The peer vanishes (TCP reset); an open socket reports "closed"."""
        if self._link is not None:
            self._link.abort(silently=False)

    def reset(self) -> None:
        """Reboot: connection gone without a word, settings and certificates lost."""
        self._drop_link(orderly=False)
        self.settings = SocketSettings()

    # -- internals ------------------------------------------------------------------------
    def _new_attempt(self) -> int:
        self._attempt += 1
        self.unconfirmed_sends = 0
        self._early_data = []
        self._closed_while_opening = False
        return self._attempt

    def _drop_link(self, orderly: bool) -> None:
        self._new_attempt()
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        self._stop_connecting()
        link, self._link = self._link, None
        if link is not None:
            if orderly:
                link.close()
            else:
                link.abort(silently=True)
        self.state = SocketState.CLOSED

    def _stop_connecting(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None and not connecting.called:
            connecting.cancel()

    def _client_context(self) -> ssl.SSLContext:
        s = self.settings
        paths = {
            name: self._env.certs.write(self.connect_id, name, pem)
            for name, pem in s.certs.items()
            if pem
        }
        return module_tls.client_context(
            s.sslversion,
            s.seclevel,
            paths.get("cacert"),
            paths.get("clientcert"),
            paths.get("clientkey"),
            suites=self._env.module.cipher_suites,
        )

    def _profile_code(self, natural: ResultCode, situation: str | None) -> ResultCode | int:
        """The module profile's code for a failure whose situation is known."""
        if situation == "refused_after_hello":
            # Without a client certificate of ours, what the server refused is its absence.
            situation = "client_cert_missing" if self.settings.seclevel < 2 else None
        if situation is None:
            return natural
        return self._env.module.open_result(situation)

    def _connect_failed(self, failure: Failure, attempt: int) -> None:
        if isinstance(failure.value, ConnectingCancelledError | CancelledError):
            return
        timed_out = isinstance(failure.value, TimeoutError)
        code: ResultCode | int = ResultCode.TIMEOUT if timed_out else ResultCode.CONNECTION
        if isinstance(failure.value, DNSLookupError):
            code = self._env.module.open_result("dns_failure")
        elif isinstance(failure.value, ConnectionRefusedError):
            code = self._env.module.open_result("port_closed")
        _log.info(
            "socket {id}: connect failed: {err}", id=self.connect_id, err=failure.getErrorMessage()
        )
        self._handshake_done(attempt, code)

    def _open_timed_out(self, attempt: int) -> None:
        if attempt == self._attempt and self.state is SocketState.OPENING:
            self._handshake_done(attempt, ResultCode.TIMEOUT)

    def _handshake_done(self, attempt: int, result: ResultCode | int) -> None:
        if attempt != self._attempt or attempt == self._decided_attempt:
            return
        self._decided_attempt = attempt
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        if result != ResultCode.SUCCESS:
            # Stop the link now; report at the profile's pace.
            self._stop_connecting()
            link, self._link = self._link, None
            if link is not None:
                link.abort(silently=True)
        self._env.timeline.at(self._report_not_before, lambda: self._report_open(attempt, result))

    def _report_open(self, attempt: int, result: ResultCode | int) -> None:
        if attempt != self._attempt or self.state is not SocketState.OPENING:
            return
        env = self._env
        if result == ResultCode.SUCCESS:
            self.state = SocketState.OPEN
        else:
            self.state = SocketState.CLOSED
            env.stats.open_failures += 1
        env.emit_urc(
            b"+QSSLOPEN: %d,%d,%d"
            % (env.module.context_id, self.connect_id, written_code(env.module, result))
        )
        early, self._early_data = self._early_data, []
        for data in early:
            self._emit_recv(data)
        if self._closed_while_opening and self.state is SocketState.OPEN:
            self._report_closed()

    def _link_data(self, attempt: int, data: bytes) -> None:
        if attempt != self._attempt:
            return

        def deliver() -> None:
            if attempt != self._attempt:
                return
            if self.state is SocketState.OPENING:
                self._early_data.append(data)
            elif self.state is SocketState.OPEN:
                self._emit_recv(data)

        self._env.timeline.after(self._env.profile.rtt / 2, deliver)

    def _link_closed(self, attempt: int) -> None:
        if attempt != self._attempt:
            return

        def deliver() -> None:
            if attempt != self._attempt:
                return
            if self.state is SocketState.OPENING:
                self._closed_while_opening = True
            elif self.state is SocketState.OPEN:
                self._report_closed()

        self._env.timeline.after(self._env.profile.rtt / 2, deliver)

    def _report_closed(self) -> None:
        self._link = None
        self._new_attempt()
        self.state = SocketState.CLOSED
        self._env.stats.closed_urcs += 1
        self._env.emit_urc(
            b'+QSSLURC: "closed",%d,%d' % (self._env.module.context_id, self.connect_id)
        )

    def _emit_recv(self, data: bytes) -> None:
        hex_format = self.settings.recv_hex
        limit = self._env.module.max_recv(hex_format)
        quote = b'"' if self._env.module.recv_quoted else b""
        for start in range(0, len(data), limit):
            part = data[start : start + limit]
            body = part.hex().upper().encode("ascii") if hex_format else part
            head = b'+QSSLURC: "recv",%d,%d,%d,' % (
                self._env.module.context_id,
                self.connect_id,
                len(part),
            )
            self._env.stats.recv_urcs += 1
            self._env.stats.received_payload_bytes += len(part)
            self._env.emit_urc(head + quote + body + quote)
