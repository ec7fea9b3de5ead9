"""What the probe learns about the server, whatever the sockets' settings: its key, which
of the module's suites it accepts at each TLS version, what each ``sslversion`` setting
would get, whether it asks for a client certificate, and how it treats SNI."""

from __future__ import annotations

import contextlib
import enum
import socket
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

from bridged.config import Endpoint
from bridged.tools.module_tls import CipherSuite, available_suites, client_context
from bridged.tools.probe.handshake import Attempt, Handshake, Outcome, Prober
from bridged.tools.probe.ssl_settings import NO_AUTH, TLS_VERSIONS, SslUnderTest


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


def probe_sni(prober: Prober) -> SniReport:
    host = prober.target.host
    if _is_ip_address(host):
        return SniReport(False, f"not applicable: {host} is an IP address, so no SNI is sent")
    with_sni = prober.module(Attempt(NO_AUTH))
    without = prober.module(Attempt(NO_AUTH, sni=False))
    return SniReport(True, _compare_sni(host, with_sni, without))


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
