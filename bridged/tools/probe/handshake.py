"""One module-like TLS handshake, made from this machine: blocking ``ssl`` over a
:class:`ssl.MemoryBIO` on a plain socket, the server's bytes also read by
:class:`~bridged.tools.probe.tls_wire.ServerFlight`; and :class:`Prober`, which makes the
handshakes a module with a given profile would make (each identical attempt once)."""

from __future__ import annotations

import contextlib
import enum
import socket
import ssl
import time
from dataclasses import dataclass, field

from bridged.config import Endpoint
from bridged.core.module_profile import BC26, ModuleProfile
from bridged.tools.module_tls import MODULE_CIPHER_SUITES, CipherSuite, client_context
from bridged.tools.probe.ssl_settings import SslUnderTest
from bridged.tools.probe.tls_wire import ServerFlight, alert_name


class Outcome(enum.StrEnum):
    OK = "ok"
    REFUSED = "refused"  # TLS failed: an alert from the server, or our own check
    CLOSED = "closed"  # the connection ended mid-handshake without an alert
    NOT_TLS = "not_tls"
    UNREACHABLE = "unreachable"  # no TCP connection
    TIMEOUT = "timeout"


@dataclass(frozen=True)
class Handshake:
    outcome: Outcome
    detail: str = ""
    flight: ServerFlight = field(default_factory=ServerFlight)
    version: str | None = None  # as ssl reports it: "TLSv1.2"
    cipher: str | None = None  # OpenSSL's name
    peer_der: bytes | None = None
    verify_error: str | None = None  # the server's chain did not verify

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK

    @property
    def leaf(self) -> bytes | None:
        return self.peer_der or (self.flight.chain[0] if self.flight.chain else None)

    @property
    def suite(self) -> CipherSuite | None:
        """The module suite the server chose, even if the handshake failed later."""
        return suite_by_code(self.flight.cipher_code)

    @property
    def negotiated_suite(self) -> CipherSuite | None:
        """The module suite in use: by OpenSSL's name after a handshake, else the
        ServerHello's choice."""
        return suite_by_openssl_name(self.cipher) or self.suite

    def suite_label(self) -> str:
        """The suite's IANA name, else what OpenSSL called it."""
        suite = self.negotiated_suite
        return suite.iana_name if suite else (self.cipher or "?")

    @property
    def got_server_hello(self) -> bool:
        return self.flight.cipher_code is not None or self.ok

    def failure(self) -> str:
        """A short human description of why it failed."""
        if self.flight.alert is not None:
            return f"server sent alert {alert_name(self.flight.alert)}"
        return self.detail


def suite_by_code(code: int | None) -> CipherSuite | None:
    return next((s for s in MODULE_CIPHER_SUITES if s.code == code), None)


def suite_by_openssl_name(name: str | None) -> CipherSuite | None:
    return next((s for s in MODULE_CIPHER_SUITES if name and s.openssl_name == name), None)


def handshake(
    host: str, port: int, context: ssl.SSLContext, sni: str | None, timeout: float
) -> Handshake:
    """Connect and run one TLS handshake, within ``timeout`` seconds overall."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except TimeoutError:
        return Handshake(Outcome.TIMEOUT, f"no TCP connection within {timeout:g} s")
    except OSError as exc:
        return Handshake(Outcome.UNREACHABLE, f"TCP connection failed: {exc.strerror or exc}")
    with sock:
        return _drive(sock, context, sni, deadline, timeout)


def _drive(
    sock: socket.socket, context: ssl.SSLContext, sni: str | None, deadline: float, timeout: float
) -> Handshake:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_side=False, server_hostname=sni)
    flight = ServerFlight()
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                data = _receive(sock, deadline)
                flight.feed(data)
                if data:
                    incoming.write(data)
                else:
                    incoming.write_eof()
    except ssl.SSLCertVerificationError as exc:
        _send_quietly(sock, outgoing)  # our alert, as mbedTLS would send it
        verify = exc.verify_message or exc.reason or "verification failed"
        return Handshake(Outcome.REFUSED, verify, flight, verify_error=verify)
    except ssl.SSLError as exc:
        _send_quietly(sock, outgoing)
        return Handshake(_failed_outcome(exc, flight), exc.reason or str(exc), flight)
    except TimeoutError:
        return Handshake(Outcome.TIMEOUT, f"no handshake within {timeout:g} s", flight)
    except OSError as exc:  # reset, broken pipe
        return Handshake(Outcome.CLOSED, f"connection lost: {exc.strerror or exc}", flight)
    _send_quietly(sock, outgoing)
    cipher = tls.cipher()
    done = Handshake(
        Outcome.OK,
        flight=flight,
        version=tls.version(),
        cipher=cipher[0] if cipher else None,
        peer_der=tls.getpeercert(binary_form=True),
    )
    with contextlib.suppress(ssl.SSLError):
        tls.unwrap()  # queue our close_notify; we do not wait for theirs
    _send_quietly(sock, outgoing)
    return done


def _receive(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    sock.settimeout(remaining)
    return sock.recv(16384)


def _send_quietly(sock: socket.socket, outgoing: ssl.MemoryBIO) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(outgoing.read())


def _failed_outcome(exc: ssl.SSLError, flight: ServerFlight) -> Outcome:
    if flight.not_tls:
        return Outcome.NOT_TLS
    if flight.alert is not None:
        return Outcome.REFUSED
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return Outcome.CLOSED
    return Outcome.REFUSED


@dataclass(frozen=True)
class Attempt:
    """One module-like handshake: settings, suites offered, SNI or not."""

    ssl: SslUnderTest
    suites: tuple[CipherSuite, ...] = ()  # empty: the module's whole offer
    sni: bool = True
    # False: present the client identity but do not check the server's chain, to learn
    # whether the server accepts our certificate when the chain check would stop us first.
    verify_server: bool = True


class Prober:
    """Runs handshakes against one server; identical attempts run once."""

    def __init__(self, target: Endpoint, timeout: float, profile: ModuleProfile = BC26) -> None:
        self.target = target
        self.timeout = timeout
        self.profile = profile
        self._done: dict[Attempt, Handshake] = {}

    def module(self, attempt: Attempt) -> Handshake:
        """Raises :class:`ModuleTlsError` for settings the module rejects before connecting."""
        if attempt not in self._done:
            s = attempt.ssl
            context = client_context(
                s.sslversion,
                s.seclevel,
                s.cacert,
                s.clientcert,
                s.clientkey,
                suites=attempt.suites or self.profile.cipher_suites,
            )
            if not attempt.verify_server:
                context.verify_mode = ssl.CERT_NONE
            self._done[attempt] = self._run(context, attempt.sni)
        return self._done[attempt]

    def modern(self, cafile: str | None = None) -> Handshake:
        """A handshake as today's clients make it (TLS 1.3, ECDHE): what the server speaks.
        With ``cafile``, the server chain is checked against it (the host name is not,
        as the module does not check it)."""
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = False
        if cafile is None:
            context.verify_mode = ssl.CERT_NONE
        return self._run(context, sni=True)

    def _run(self, context: ssl.SSLContext, sni: bool) -> Handshake:
        host = self.target.host
        return handshake(host, self.target.port, context, host if sni else None, self.timeout)
