"""``bridged probe HOST:PORT``: will this TLS server accept the module's handshake?

The module is a :class:`~bridged.core.module_profile.ModuleProfile` (``--model``, or the
configuration's ``modem.model`` / ``modem.profile_file`` with ``-c``): its suites and TLS
versions are what the handshakes offer (a BC660K-GL offers three suites, no SSL 3.0).

From the machine it runs on, the probe makes the handshakes the module would make, with
the module's one client profile (:mod:`bridged.tools.module_tls`): each of its suites alone at
each TLS version, then the whole offer as each ``sslversion`` setting would send it, then
each configured socket's own settings. It reports what the server accepts, its key, its
client-certificate and SNI behaviour, and per socket a verdict: works, or the
``+QSSLOPEN`` error code the module would most likely report and what to change.

Blocking ``ssl`` over a :class:`ssl.MemoryBIO` on a plain socket: the bytes the server
sends are also parsed here, because a TLS <= 1.2 handshake is readable up to the server's
ChangeCipherSpec, and that shows what Python's ``ssl`` hides: a CertificateRequest, the
server's alerts, and its certificate chain even when verification failed.

Which code the module reports for which failure is our reading of the application note
(which gives the codes but not the mapping); see :func:`diagnose`.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from bridged.config import (
    Config,
    ConfigError,
    Endpoint,
    SocketConfig,
    load_config,
    module_profile,
)
from bridged.core.module_profile import BC26, BUILTIN_PROFILES, ModuleProfile, ModuleProfileError
from bridged.core.qssl_commands import ERROR_DESCRIPTIONS, ERROR_NAMES
from bridged.tools.module_tls import (
    MODULE_CIPHER_SUITES,
    CipherSuite,
    ClientKeyError,
    ModuleTlsError,
    available_suites,
    client_context,
)

__all__ = ["probe_main", "run_probe"]

EXIT_ALL_WORK = 0
EXIT_SOME_FAIL = 1
EXIT_USAGE = 2

DEFAULT_TIMEOUT = 10.0

#: ``sslversion`` settings that pin one TLS version, and how the report names them.
TLS_VERSIONS: dict[int, str] = {1: "TLS1.0", 2: "TLS1.1", 3: "TLS1.2"}
SSLVERSION_LABELS: dict[int, str] = {
    0: "SSL3.0",
    1: "TLS1.0",
    2: "TLS1.1",
    3: "TLS1.2",
    4: "any",
}
#: The TLS versions each ``sslversion`` setting lets the module negotiate.
SSLVERSION_ALLOWS: dict[int, tuple[int, ...]] = {0: (), 1: (1,), 2: (2,), 3: (3,), 4: (1, 2, 3)}
SECLEVEL_LABELS: dict[int, str] = {0: "no auth", 1: "server auth", 2: "mutual"}

OK = 0
CONNECTION_ERROR = -2
CERT_ERROR = -3
KEY_ERROR = -4
CIPHER_ERROR = -5
TIMEOUT = -7

# RFC 5246 / 8446 alert descriptions a server may send during a handshake.
ALERT_NAMES: dict[int, str] = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
}


def alert_name(alert: int) -> str:
    return ALERT_NAMES.get(alert, f"alert {alert}")


# --------------------------------------------------------------------------- the wire


_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA = 20, 21, 22, 23
_SERVER_HELLO, _CERTIFICATE, _CERTIFICATE_REQUEST, _SERVER_HELLO_DONE = 2, 11, 13, 14
_FATAL = 2
PROTOCOL_VERSION_ALERT = 70


@dataclass
class ServerFlight:
    """What the server sent in the clear: TLS <= 1.2 handshake messages and alerts."""

    cipher_code: int | None = None  # the suite its ServerHello chose
    chain: list[bytes] = field(default_factory=list)  # DER, leaf first
    certificate_request: bool = False
    hello_done: bool = False
    alert: int | None = None  # a fatal alert
    not_tls: bool = False
    _records: bytearray = field(default_factory=bytearray, repr=False)
    _messages: bytearray = field(default_factory=bytearray, repr=False)
    _encrypted: bool = field(default=False, repr=False)

    def feed(self, data: bytes) -> None:
        if self.not_tls or self._encrypted:
            return
        self._records += data
        while len(self._records) >= 5 and not (self.not_tls or self._encrypted):
            kind, major = self._records[0], self._records[1]
            if (
                kind not in (_CHANGE_CIPHER_SPEC, _ALERT, _HANDSHAKE, _APPLICATION_DATA)
                or major != 3
            ):
                self.not_tls = True  # e.g. an HTTP server's "HTTP/1.1 400"
                return
            length = int.from_bytes(self._records[3:5], "big")
            if len(self._records) < 5 + length:
                return
            body = bytes(self._records[5 : 5 + length])
            del self._records[: 5 + length]
            self._record(kind, body)

    def _record(self, kind: int, body: bytes) -> None:
        if kind == _HANDSHAKE:
            self._messages += body
            self._split_messages()
        elif kind == _ALERT and len(body) >= 2 and body[0] == _FATAL:
            self.alert = body[1]
        elif kind in (_CHANGE_CIPHER_SPEC, _APPLICATION_DATA):
            self._encrypted = True  # all that follows is unreadable to us

    def _split_messages(self) -> None:
        while len(self._messages) >= 4:
            length = int.from_bytes(self._messages[1:4], "big")
            if len(self._messages) < 4 + length:
                return
            kind, body = self._messages[0], bytes(self._messages[4 : 4 + length])
            del self._messages[: 4 + length]
            with contextlib.suppress(IndexError):  # malformed: keep what we understood
                self._message(kind, body)

    def _message(self, kind: int, body: bytes) -> None:
        if kind == _SERVER_HELLO:
            session_id_length = body[34]  # after version (2) and random (32)
            start = 35 + session_id_length
            self.cipher_code = int.from_bytes(body[start : start + 2], "big")
        elif kind == _CERTIFICATE:
            self.chain = _certificate_list(body)
        elif kind == _CERTIFICATE_REQUEST:
            self.certificate_request = True
        elif kind == _SERVER_HELLO_DONE:
            self.hello_done = True


def _certificate_list(body: bytes) -> list[bytes]:
    end = 3 + int.from_bytes(body[0:3], "big")
    certificates, position = [], 3
    while position + 3 <= end:
        length = int.from_bytes(body[position : position + 3], "big")
        certificates.append(body[position + 3 : position + 3 + length])
        position += 3 + length
    return certificates


# --------------------------------------------------------------------------- one handshake


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


# --------------------------------------------------------------------------- attempts


@dataclass(frozen=True)
class SslUnderTest:
    """The QSSLCFG settings a verdict is about; certificate paths as given."""

    seclevel: int
    sslversion: int
    cacert: str | None = None
    clientcert: str | None = None
    clientkey: str | None = None

    def describe(self) -> str:
        return (
            f"seclevel {self.seclevel} ({SECLEVEL_LABELS[self.seclevel]}), "
            f"sslversion {self.sslversion} ({SSLVERSION_LABELS[self.sslversion]})"
        )


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


NO_AUTH = SslUnderTest(seclevel=0, sslversion=4)


# --------------------------------------------------------------------------- server facts


@dataclass(frozen=True)
class ServerKey:
    algorithm: str  # RSA, EC, Ed25519, …
    bits: int
    curve: str | None
    subject: str
    issuer: str
    not_after: str

    def label(self) -> str:
        if self.curve:
            return f"{self.algorithm} {self.curve} ({self.bits} bits)"
        return f"{self.algorithm} {self.bits} bits"


def describe_certificate(der: bytes) -> ServerKey | None:
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    key = cert.public_key()
    curve: str | None = None
    if isinstance(key, rsa.RSAPublicKey):
        algorithm, bits = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        algorithm, bits, curve = "EC", key.curve.key_size, key.curve.name
    elif isinstance(key, dsa.DSAPublicKey):
        algorithm, bits = "DSA", key.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        algorithm, bits = "Ed25519", 256
    elif isinstance(key, ed448.Ed448PublicKey):
        algorithm, bits = "Ed448", 456
    else:
        algorithm, bits = type(key).__name__, 0
    return ServerKey(
        algorithm=algorithm,
        bits=bits,
        curve=curve,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_after=cert.not_valid_after_utc.isoformat(),
    )


class Cell(enum.StrEnum):
    """One suite at one TLS version."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    NOT_IN_VERSION = "not_in_version"  # e.g. a SHA-256 suite below TLS 1.2
    NOT_TESTABLE = "not_testable"
    NO_ANSWER = "no_answer"  # the connection itself failed


@dataclass(frozen=True)
class SuiteRow:
    suite: CipherSuite
    cells: dict[int, Cell]  # pinned sslversion (1..3) → result
    details: dict[int, str]  # why, for refused cells


def testable_suites() -> dict[int, int]:
    """Suite code → lowest pinned ``sslversion`` it exists in, for the module's suites
    this machine can offer: RSA key exchange only. OpenSSL lists PSK suites but sends
    them only with a PSK callback, which Python's ``ssl`` lacks before 3.13; OpenSSL
    builds leave the 3DES suites out unless configured with enable-weak-ssl-ciphers."""
    offered = {s.code for s in available_suites()}
    lowest: dict[int, int] = {}
    for cipher in client_context(4, 0, None, None, None).get_ciphers():
        code = cipher["id"] & 0xFFFF
        if code in offered and cipher["kea"] == "kx-rsa":
            lowest[code] = 3 if cipher["protocol"] == "TLSv1.2" else 1
    return lowest


def probe_suites(prober: Prober) -> list[SuiteRow]:
    testable = testable_suites()
    rows = []
    for suite in prober.profile.cipher_suites:
        if suite.openssl_name is None:
            continue  # the renegotiation SCSV is a signal, not a suite
        cells: dict[int, Cell] = {}
        details: dict[int, str] = {}
        for version in TLS_VERSIONS:
            if suite.code not in testable:
                cells[version] = Cell.NOT_TESTABLE
            elif version < testable[suite.code]:
                cells[version] = Cell.NOT_IN_VERSION
            else:
                pinned = SslUnderTest(seclevel=0, sslversion=version)
                result = prober.module(Attempt(pinned, suites=(suite,)))
                cells[version] = _cell(result)
                if cells[version] is Cell.REFUSED:
                    details[version] = result.failure()
        rows.append(SuiteRow(suite, cells, details))
    return rows


def _cell(result: Handshake) -> Cell:
    if result.ok or result.suite is not None:
        return Cell.ACCEPTED  # chosen; what fails later (a client cert) is another matter
    if result.outcome in (Outcome.UNREACHABLE, Outcome.TIMEOUT):
        return Cell.NO_ANSWER
    return Cell.REFUSED


@dataclass(frozen=True)
class VersionRow:
    sslversion: int
    result: Handshake | None  # None: not testable here (SSL 3.0)


def probe_sslversions(prober: Prober) -> list[VersionRow]:
    versions = prober.profile.ssl_versions
    rows = [VersionRow(0, None)] if 0 in versions else []
    for sslversion in (v for v in (1, 2, 3, 4) if v in versions):
        rows.append(VersionRow(sslversion, prober.module(Attempt(SslUnderTest(0, sslversion)))))
    return rows


class ClientAuth(enum.StrEnum):
    NOT_REQUESTED = "not_requested"
    OPTIONAL = "optional"  # CertificateRequest, but the handshake goes on without one
    REQUIRED = "required"
    UNKNOWN = "unknown"  # no module handshake got that far


def client_auth_of(result: Handshake) -> ClientAuth:
    """From a handshake that sent no client certificate."""
    if not result.flight.certificate_request:
        return ClientAuth.NOT_REQUESTED if result.flight.hello_done else ClientAuth.UNKNOWN
    if result.ok:
        return ClientAuth.OPTIONAL
    return ClientAuth.REQUIRED if result.flight.hello_done else ClientAuth.UNKNOWN


@dataclass(frozen=True)
class SniReport:
    applicable: bool
    summary: str
    with_sni: Handshake | None = None
    without_sni: Handshake | None = None


def probe_sni(prober: Prober) -> SniReport:
    host = prober.target.host
    if _is_ip_address(host):
        return SniReport(False, f"not applicable: {host} is an IP address, so no SNI is sent")
    with_sni = prober.module(Attempt(NO_AUTH))
    without = prober.module(Attempt(NO_AUTH, sni=False))
    return SniReport(True, _compare_sni(host, with_sni, without), with_sni, without)


def _compare_sni(host: str, with_sni: Handshake, without: Handshake) -> str:
    if not with_sni.got_server_hello and not without.got_server_hello:
        return "not determined: the module's handshake fails with and without SNI"
    if not without.got_server_hello:
        return f"fails without SNI ({without.failure()}); the module sends SNI {host!r}"
    if not with_sni.got_server_hello:
        return f"fails with SNI {host!r} ({with_sni.failure()}), works without"
    if with_sni.leaf != without.leaf:
        return f"different certificate without SNI (the module sends SNI {host!r})"
    return "same certificate with and without SNI"


def _is_ip_address(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            socket.inet_pton(family, host.split("%", 1)[0])
            return True
    return False


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class SocketUnderTest:
    label: str  # "socket 0", or "command line"
    ssl: SslUnderTest
    connect_id: int | None = None
    remote: Endpoint | None = None  # the socket's configured remote, if not the target


@dataclass(frozen=True)
class Facts:
    """What the probe learned about the server, for verdicts and advice."""

    target: Endpoint
    modern: Handshake
    server_key: ServerKey | None
    client_auth: ClientAuth
    sni: SniReport
    suites: list[SuiteRow]
    versions: list[VersionRow]
    no_answer: Handshake | None = None  # set when nothing answered: all else is empty
    module: str = "BC26"  # the module model whose handshakes these are (its profile's label)

    def accepted(self) -> list[tuple[CipherSuite, int]]:
        """(suite, pinned sslversion) pairs the server accepted, best version first."""
        pairs = [
            (r.suite, v) for r in self.suites for v, c in r.cells.items() if c is Cell.ACCEPTED
        ]
        return sorted(pairs, key=lambda pair: -pair[1])


@dataclass(frozen=True)
class Diagnosis:
    code: int
    reason: str
    fixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    socket: SocketUnderTest
    diagnosis: Diagnosis
    result: Handshake | None
    chain: str  # verifies / does not verify / not checked
    client_certificate: str
    notes: tuple[str, ...] = ()

    @property
    def works(self) -> bool:
        return self.diagnosis.code == OK


def judge(sut: SocketUnderTest, facts: Facts, prober: Prober) -> Verdict:
    """The verdict for one socket's settings against the probed server."""
    notes = _remote_notes(sut, facts.target)
    s = sut.ssl
    if facts.no_answer is not None:
        diagnosis = diagnose(facts.no_answer, s, facts)
        return Verdict(sut, diagnosis, facts.no_answer, "not checked", "not checked", notes)
    if s.sslversion == 0:
        return Verdict(sut, _ssl3_diagnosis(), None, "not checked", "not checked", notes)
    try:
        result = prober.module(Attempt(s))
    except ModuleTlsError as exc:
        diagnosis = _material_diagnosis(exc)
        return Verdict(sut, diagnosis, None, "not checked", "not checked", notes)
    return Verdict(
        sut,
        diagnose(result, s, facts),
        result,
        _chain_status(result, s, prober),
        _client_certificate_status(result, s, facts, prober),
        notes,
    )


def diagnose(result: Handshake, s: SslUnderTest, facts: Facts) -> Diagnosis:
    """The ``+QSSLOPEN`` code the module would most likely report for ``result``.

    The note gives the codes, not which failure yields which; we follow its names:
    refusals of the server's chain or of our client certificate are -3 ("CA or client
    certificate error"), no agreed suite or version is -5 ("cipher suite error"), no
    TCP or no TLS is -2, no answer in time -7.

    A server that demands a client certificate the socket does not have (seclevel 0/1)
    is -3, not -5: it aborts with handshake_failure only after choosing a suite and
    sending CertificateRequest, so the suites are fine and the certificate is what to
    fix. (mbedTLS only sees "fatal alert", so the real module may say -5 here; the
    reason names the alert either way.)
    """
    if result.ok:
        return Diagnosis(OK, f"{result.version} {_suite_label(result)}")
    if result.outcome is Outcome.TIMEOUT:
        return Diagnosis(
            TIMEOUT, result.detail, ("check that HOST:PORT is reachable from the module's network",)
        )
    if result.outcome is Outcome.UNREACHABLE:
        return Diagnosis(
            CONNECTION_ERROR, result.detail, ("check the host name, port and firewall",)
        )
    if result.outcome is Outcome.NOT_TLS:
        return Diagnosis(
            CONNECTION_ERROR,
            "the server did not answer with TLS",
            ("point the socket's remote at the server's TLS port",),
        )
    if result.verify_error is not None:
        return _chain_diagnosis(result, s, facts)
    if result.flight.certificate_request and result.flight.hello_done:
        return _client_cert_diagnosis(result, s)
    if not result.got_server_hello:
        return _no_suite_diagnosis(result, s, facts)
    return Diagnosis(
        CONNECTION_ERROR, f"the handshake failed after the server's hello: {result.failure()}"
    )


def _suite_label(result: Handshake) -> str:
    suite = suite_by_openssl_name(result.cipher) or result.suite
    return suite.iana_name if suite else (result.cipher or "?")


def _ssl3_diagnosis() -> Diagnosis:
    return Diagnosis(
        CIPHER_ERROR,
        "sslversion 0 (SSL 3.0) cannot be tried here (this OpenSSL has no SSL 3.0), and "
        "servers have refused SSL 3.0 for years (RFC 7568)",
        ("set sslversion 4 (any) or 3 (TLS 1.2) for this socket",),
    )


def _material_diagnosis(exc: ModuleTlsError) -> Diagnosis:
    code = KEY_ERROR if isinstance(exc, ClientKeyError) else CERT_ERROR
    return Diagnosis(
        code,
        f"the module would refuse these files before connecting: {exc}",
        ("fix the socket's cacert/clientcert/clientkey files",),
    )


def _chain_diagnosis(result: Handshake, s: SslUnderTest, facts: Facts) -> Diagnosis:
    key = describe_certificate(result.leaf) if result.leaf else None
    issuer = f" (issued by {key.issuer})" if key else ""
    return Diagnosis(
        CERT_ERROR,
        f"the server's certificate{issuer} does not verify against {s.cacert}: "
        f"{result.verify_error}",
        (
            "set cacert to the CA that issued the server's certificate, or have the server "
            "send its intermediate certificates",
            "(seclevel 0 would connect, but without authenticating the server)",
        ),
    )


def _client_cert_diagnosis(result: Handshake, s: SslUnderTest) -> Diagnosis:
    alert = result.failure()
    if s.seclevel < 2:
        return Diagnosis(
            CERT_ERROR,
            f"the server requires a client certificate and this socket has none ({alert})",
            (
                "set seclevel 2 with a clientcert/clientkey the server trusts, "
                "or make client certificates optional on the server",
            ),
        )
    return Diagnosis(
        CERT_ERROR,
        f"the server rejected our client certificate {s.clientcert} ({alert})",
        ("make the server trust the client certificate's issuer, or use one it trusts",),
    )


def _no_suite_diagnosis(result: Handshake, s: SslUnderTest, facts: Facts) -> Diagnosis:
    versions = _versions_words(SSLVERSION_ALLOWS[s.sslversion])
    if result.outcome is Outcome.CLOSED:
        # mbedTLS sees the connection end, not a refusal: a connection error.
        return Diagnosis(
            CONNECTION_ERROR,
            f"the server closed the connection at the module's hello ({versions}); "
            "usually no common suite or version",
            _suite_fixes(s, facts),
        )
    if result.flight.alert == PROTOCOL_VERSION_ALERT:
        refusal = f"the server refuses {versions}"
    else:
        refusal = f"the server accepts none of the module's suites at {versions}"
    return Diagnosis(CIPHER_ERROR, f"{refusal} ({result.failure()})", _suite_fixes(s, facts))


def _suite_fixes(s: SslUnderTest, facts: Facts) -> tuple[str, ...]:
    fixes: list[str] = []
    key = facts.server_key
    if key is not None and key.algorithm != "RSA":
        fixes.append(
            f"serve an RSA certificate (2048 bits or more) too: all the module's suites use "
            f"RSA key exchange, which cannot work with this {key.label()} key"
        )
    allowed = SSLVERSION_ALLOWS[s.sslversion]
    elsewhere = [(found, v) for found, v in facts.accepted() if v not in allowed]
    if elsewhere:  # the socket pins a version the server refuses: change the socket
        found, version = elsewhere[0]
        fixes.append(
            f"set sslversion 4 (any) for this socket: the server accepts "
            f"{found.iana_name} at {_tls_words(version)}"
        )
        return tuple(fixes)
    best_version = max(allowed)
    suite = _recommended_suite(best_version, [row.suite for row in facts.suites])
    if suite is not None:
        fixes.append(
            f"enable {suite.iana_name} (OpenSSL: {suite.openssl_name}) and "
            f"{_tls_words(best_version)} on the server"
        )
    return tuple(fixes)


def _recommended_suite(version: int, suites: Sequence[CipherSuite]) -> CipherSuite | None:
    """The module's most preferred suite that exists at ``version`` and can be named."""
    lowest = testable_suites()
    for suite in suites:
        if suite.code in lowest and lowest[suite.code] <= version:
            return suite
    return None


def _tls_words(version: int) -> str:
    return TLS_VERSIONS[version].replace("TLS", "TLS ")


def _versions_words(versions: Sequence[int]) -> str:
    if len(versions) == 1:
        return _tls_words(versions[0])
    return f"{_tls_words(min(versions))}-{TLS_VERSIONS[max(versions)][3:]}"


def _chain_status(result: Handshake, s: SslUnderTest, prober: Prober) -> str:
    if s.seclevel == 0:
        return "not checked (seclevel 0)"
    if result.verify_error is not None:
        return f"does not verify against {s.cacert}: {result.verify_error}"
    if result.ok or result.flight.hello_done:
        return f"verifies against {s.cacert}"
    # The module's handshake ended before the chain check: ask a modern client instead,
    # so the operator learns every change at once.
    modern = prober.modern(cafile=s.cacert)
    if modern.verify_error is not None:
        return (
            f"does not verify against {s.cacert}: {modern.verify_error} (seen by a modern client)"
        )
    if modern.ok:
        return f"verifies against {s.cacert} (seen by a modern client)"
    return "not checked (no handshake got that far)"


def _client_certificate_status(
    result: Handshake, s: SslUnderTest, facts: Facts, prober: Prober
) -> str:
    requested = result.flight.certificate_request
    if not requested and not result.flight.hello_done:
        requested = facts.client_auth in (ClientAuth.OPTIONAL, ClientAuth.REQUIRED)
    if not requested:
        if facts.client_auth is ClientAuth.UNKNOWN:
            return "unknown (no module handshake got that far)"
        return "not requested"
    if s.seclevel < 2:
        return "requested, none configured" + (
            " (required)" if facts.client_auth is ClientAuth.REQUIRED else " (optional)"
        )
    if result.ok:
        return f"accepted: {s.clientcert}"
    if result.verify_error is None:
        return f"rejected: {s.clientcert} ({result.failure()})"
    # The chain check stopped us before our certificate went out: try again without it.
    try:
        unverified = prober.module(Attempt(s, verify_server=False))
    except ModuleTlsError:
        return "not checked"
    if unverified.ok:
        return f"accepted: {s.clientcert} (with the server's chain unchecked)"
    return f"rejected: {s.clientcert} ({unverified.failure()})"


def _remote_notes(sut: SocketUnderTest, target: Endpoint) -> tuple[str, ...]:
    if sut.remote is None or _same_endpoint(sut.remote, target):
        return ()
    return (f"{sut.label}'s remote is {sut.remote}; probed {target} with its settings",)


def _same_endpoint(a: Endpoint, b: Endpoint) -> bool:
    return a.host.lower() == b.host.lower() and a.port == b.port


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Report:
    facts: Facts
    verdicts: list[Verdict]

    @property
    def all_work(self) -> bool:
        return all(v.works for v in self.verdicts)


def run_probe(
    target: Endpoint,
    sockets: Sequence[SocketUnderTest],
    timeout: float,
    profile: ModuleProfile = BC26,
) -> Report:
    prober = Prober(target, timeout, profile)
    modern = prober.modern()
    # A modern handshake that times out may be a middlebox choking on its big hello, so
    # the module's own hello gets its chance before we give up.
    base = None if modern.outcome is Outcome.UNREACHABLE else prober.module(Attempt(NO_AUTH))
    if base is None or base.outcome in (Outcome.UNREACHABLE, Outcome.TIMEOUT):
        # Nothing answers: every further handshake would fail (or wait) the same way.
        no_answer = base or modern
        sni = SniReport(False, "not checked")
        facts = Facts(
            target, modern, None, ClientAuth.UNKNOWN, sni, [], [], no_answer, profile.label
        )
        return Report(facts, [judge(s, facts, prober) for s in sockets])
    leaf = base.leaf or modern.leaf
    facts = Facts(
        target=target,
        modern=modern,
        server_key=describe_certificate(leaf) if leaf else None,
        client_auth=client_auth_of(base),
        sni=probe_sni(prober),
        suites=probe_suites(prober),
        versions=probe_sslversions(prober),
        module=profile.label,
    )
    return Report(facts, [judge(s, facts, prober) for s in sockets])


# --------------------------------------------------------------------------- output


def qsslopen_label(code: int) -> str:
    if code == OK:
        return "works"
    name = ERROR_NAMES.get(code, "unknown")
    return f"fails: +QSSLOPEN {code} {name} ({ERROR_DESCRIPTIONS.get(code, 'unknown error')})"


_CELL_TEXT = {
    Cell.ACCEPTED: "accepted",
    Cell.REFUSED: "refused",
    Cell.NOT_IN_VERSION: "-",
    Cell.NOT_TESTABLE: "not testable here",
    Cell.NO_ANSWER: "no answer",
}


_CLIENT_AUTH_TEXT = {
    ClientAuth.NOT_REQUESTED: "not requested",
    ClientAuth.OPTIONAL: "requested, optional",
    ClientAuth.REQUIRED: "required (the server refuses a handshake without one)",
    ClientAuth.UNKNOWN: "unknown (no module handshake got that far)",
}


def render_text(report: Report) -> str:
    facts = report.facts
    lines = [
        f"bridged probe {facts.target}: the {facts.module}'s TLS handshakes, "
        "made from this machine",
        "",
        *_server_lines(facts),
    ]
    if facts.suites:
        lines += ["", *_suite_lines(facts.suites), "", *_version_lines(facts.versions)]
    lines += ["", "verdict:"]
    for verdict in report.verdicts:
        lines += _verdict_lines(verdict)
    return "\n".join(lines) + "\n"


def _server_lines(facts: Facts) -> list[str]:
    key = facts.server_key
    modern = facts.modern
    rows = [
        ("server key", f"{key.label()}, {key.subject}, issued by {key.issuer}" if key else "?"),
        (
            "modern client",
            f"{modern.version} {modern.cipher}" if modern.ok else f"fails: {modern.failure()}",
        ),
        ("client cert", _CLIENT_AUTH_TEXT[facts.client_auth]),
        ("SNI", facts.sni.summary),
    ]
    return [f"{name:<14}{value}" for name, value in rows]


def _suite_lines(rows: list[SuiteRow]) -> list[str]:
    width = max(len(r.suite.iana_name) for r in rows) + 2
    header = "module cipher suite".ljust(width) + "".join(
        f"{label:<10}" for label in TLS_VERSIONS.values()
    )
    lines = [header.rstrip()]
    for row in rows:
        cells = list(row.cells.values())
        if all(c is Cell.NOT_TESTABLE for c in cells):
            text = _CELL_TEXT[Cell.NOT_TESTABLE]
        else:
            text = "".join(f"{_CELL_TEXT[c]:<10}" for c in cells)
        lines.append((row.suite.iana_name.ljust(width) + text).rstrip())
    lines.append("(-: the suite does not exist in that TLS version; not testable here: Python's")
    lines.append(" ssl cannot offer 3DES or PSK suites with this OpenSSL)")
    return lines


def _version_lines(rows: list[VersionRow]) -> list[str]:
    lines = ["sslversion   the module would get"]
    for row in rows:
        label = f"{row.sslversion} {SSLVERSION_LABELS[row.sslversion]}"
        lines.append(f"{label:<13}{_version_result(row)}")
    return lines


def _version_result(row: VersionRow) -> str:
    if row.result is None:
        return "not testable here (this OpenSSL has no SSL 3.0)"
    if row.result.ok:
        return f"{row.result.version} {_suite_label(row.result)}"
    if row.result.flight.certificate_request and row.result.suite:
        return f"{_suite_label(row.result)}, then a client certificate is required"
    return f"refused ({row.result.failure()})"


def _verdict_lines(verdict: Verdict) -> list[str]:
    sut, diagnosis = verdict.socket, verdict.diagnosis
    lines = [f"  {sut.label} ({sut.ssl.describe()}): {qsslopen_label(diagnosis.code)}"]
    lines.append(f"    {'with' if verdict.works else 'why'}: {diagnosis.reason}")
    lines.append(f"    chain: {verdict.chain}")
    lines.append(f"    client cert: {verdict.client_certificate}")
    lines += [f"    fix: {fix}" for fix in diagnosis.fixes]
    lines += [f"    note: {note}" for note in verdict.notes]
    return lines


def to_json(report: Report) -> dict[str, Any]:
    facts = report.facts
    return {
        "target": {"host": facts.target.host, "port": facts.target.port},
        "all_work": report.all_work,
        "server": {
            "key": _key_json(facts.server_key),
            "modern_client": _handshake_json(facts.modern),
            "client_certificate": facts.client_auth.value,
            "sni": {"applicable": facts.sni.applicable, "summary": facts.sni.summary},
        },
        "suites": [_suite_json(row) for row in facts.suites],
        "sslversions": [_version_json(row) for row in facts.versions],
        "verdicts": [_verdict_json(v) for v in report.verdicts],
    }


def _key_json(key: ServerKey | None) -> dict[str, Any] | None:
    if key is None:
        return None
    return {
        "type": key.algorithm,
        "bits": key.bits,
        "curve": key.curve,
        "subject": key.subject,
        "issuer": key.issuer,
        "not_after": key.not_after,
    }


def _handshake_json(result: Handshake | None) -> dict[str, Any] | None:
    if result is None:
        return None
    suite = suite_by_openssl_name(result.cipher) or result.suite
    return {
        "outcome": result.outcome.value,
        "version": result.version,
        "cipher": result.cipher,
        "suite": suite.iana_name if suite else None,
        "alert": alert_name(result.flight.alert) if result.flight.alert is not None else None,
        "detail": result.detail or None,
    }


def _suite_json(row: SuiteRow) -> dict[str, Any]:
    return {
        "suite": row.suite.iana_name,
        "openssl": row.suite.openssl_name,
        "code": f"0x{row.suite.code:04X}",
        "testable": any(c is not Cell.NOT_TESTABLE for c in row.cells.values()),
        "results": {TLS_VERSIONS[v]: c.value for v, c in row.cells.items()},
        "details": {TLS_VERSIONS[v]: d for v, d in row.details.items()},
    }


def _version_json(row: VersionRow) -> dict[str, Any]:
    return {
        "sslversion": row.sslversion,
        "label": SSLVERSION_LABELS[row.sslversion],
        "testable": row.result is not None,
        "works": row.result.ok if row.result is not None else None,
        "handshake": _handshake_json(row.result),
    }


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    sut, diagnosis = verdict.socket, verdict.diagnosis
    s = sut.ssl
    return {
        "socket": sut.label,
        "connect_id": sut.connect_id,
        "settings": {
            "seclevel": s.seclevel,
            "sslversion": s.sslversion,
            "cacert": s.cacert,
            "clientcert": s.clientcert,
            "clientkey": s.clientkey,  # the path only, never the key
        },
        "verdict": "works" if verdict.works else "fails",
        "code": diagnosis.code,
        "error_name": ERROR_NAMES.get(diagnosis.code, "unknown"),
        "error_description": ERROR_DESCRIPTIONS.get(diagnosis.code),
        "reason": diagnosis.reason,
        "fixes": list(diagnosis.fixes),
        "chain": verdict.chain,
        "client_certificate": verdict.client_certificate,
        "handshake": _handshake_json(verdict.result),
        "notes": list(verdict.notes),
    }


# --------------------------------------------------------------------------- command line


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bridged probe",
        description="Try the TLS handshakes a BC26/BC20/BC660K/BC950K module would make "
        "against a server, and say whether each configured socket would connect.",
    )
    parser.add_argument(
        "--model",
        choices=sorted(BUILTIN_PROFILES),
        help="the module model (default: -c CONFIG's modem.model, else bc26)",
    )
    parser.add_argument("target", metavar="HOST:PORT", help="the TLS server, as in remote:")
    parser.add_argument("-c", "--config", help="take the sockets' ssl settings from this file")
    parser.add_argument("--connect-id", type=int, help="with -c: only this socket")
    parser.add_argument("--cacert", help="without -c: CA certificate (seclevel 1)")
    parser.add_argument("--clientcert", help="without -c: client certificate (seclevel 2)")
    parser.add_argument("--clientkey", help="without -c: client key (seclevel 2)")
    parser.add_argument(
        "--sslversion", type=int, choices=range(5), default=4, help="without -c: 0..4 (4)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help=f"seconds per handshake ({DEFAULT_TIMEOUT:g})",
    )
    return parser


def probe_main(argv: list[str]) -> int:
    """``bridged probe ...`` (``argv`` without the subcommand): 0 if every verdict is
    works, 1 if any fails, 2 on usage or configuration errors."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help, or argparse's own usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        target, sockets, profile = _sockets_from_args(args)
    except UsageError as exc:
        print(f"bridged probe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = run_probe(target, sockets, args.timeout, profile)
    if args.json:
        print(json.dumps(to_json(report), indent=2))
    else:
        print(render_text(report), end="")
    return EXIT_ALL_WORK if report.all_work else EXIT_SOME_FAIL


def _sockets_from_args(
    args: argparse.Namespace,
) -> tuple[Endpoint, list[SocketUnderTest], ModuleProfile]:
    try:
        target = Endpoint.parse(args.target)
    except ValueError as exc:
        raise UsageError(f"HOST:PORT: {exc}") from None
    if not 0 < args.timeout <= 300:
        raise UsageError("--timeout must be in (0, 300] seconds")
    if args.config is None:
        if args.connect_id is not None:
            raise UsageError("--connect-id needs -c CONFIG")
        return target, [_command_line_socket(args)], BUILTIN_PROFILES[args.model or "bc26"]
    if any((args.cacert, args.clientcert, args.clientkey)):
        raise UsageError("give certificates either in -c CONFIG or as options, not both")
    config = _load(Path(args.config))
    try:
        configured = module_profile(config)
    except ModuleProfileError as exc:
        raise UsageError(str(exc)) from None
    # --model wins; "auto" in the configuration: the model is known only at start.
    profile = BUILTIN_PROFILES[args.model] if args.model else configured or BC26
    return target, _config_sockets(config, Path(args.config), target, args.connect_id), profile


def _command_line_socket(args: argparse.Namespace) -> SocketUnderTest:
    cacert, clientcert, clientkey = args.cacert, args.clientcert, args.clientkey
    if bool(clientcert) != bool(clientkey):
        raise UsageError("--clientcert and --clientkey go together")
    if clientcert and not cacert:
        raise UsageError("--clientcert needs --cacert: seclevel 2 also verifies the server")
    # The seclevel the files given allow, as the configuration would require them.
    seclevel = 2 if clientcert else 1 if cacert else 0
    for name, path in (
        ("--cacert", cacert),
        ("--clientcert", clientcert),
        ("--clientkey", clientkey),
    ):
        _check_readable(name, path)
    settings = SslUnderTest(seclevel, args.sslversion, cacert, clientcert, clientkey)
    return SocketUnderTest("command line", settings)


def _load(path: Path) -> Config:
    try:
        # Certificate files are checked below, only those the seclevel uses; the rest of
        # check_files (key permissions, control group) is about the gateway, not here.
        return load_config(path, check_files=False)
    except ConfigError as exc:
        raise UsageError(f"configuration errors:\n{exc}") from None


def _config_sockets(
    config: Config, path: Path, target: Endpoint, connect_id: int | None
) -> list[SocketUnderTest]:
    if connect_id is not None:
        chosen = [s for s in config.sockets if s.connect_id == connect_id]
        if not chosen:
            ids = ", ".join(str(s.connect_id) for s in config.sockets)
            raise UsageError(f"{path} has no socket with connect_id {connect_id} (has {ids})")
    else:
        chosen = [s for s in config.sockets if _same_endpoint(s.remote, target)]
        if not chosen:
            remotes = ", ".join(f"{s.connect_id}: {s.remote}" for s in config.sockets)
            raise UsageError(
                f"no socket in {path} has remote {target} ({remotes}); use --connect-id"
            )
    return [_socket_under_test(s) for s in chosen]


def _socket_under_test(sock: SocketConfig) -> SocketUnderTest:
    ssl_settings = sock.ssl

    def used(name: str, level: int) -> str | None:
        value = getattr(ssl_settings, name)
        return str(value) if value is not None and ssl_settings.seclevel >= level else None

    settings = SslUnderTest(
        seclevel=ssl_settings.seclevel,
        sslversion=ssl_settings.sslversion,
        cacert=used("cacert", 1),
        clientcert=used("clientcert", 2),
        clientkey=used("clientkey", 2),
    )
    for name in ("cacert", "clientcert", "clientkey"):
        _check_readable(f"socket {sock.connect_id} {name}", getattr(settings, name))
    return SocketUnderTest(f"socket {sock.connect_id}", settings, sock.connect_id, sock.remote)


def _check_readable(name: str, path: str | None) -> None:
    """A file missing here is this machine's problem, not the server's: usage error."""
    if path is None:
        return
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"{name}: cannot read {path}: {exc.strerror}") from None
