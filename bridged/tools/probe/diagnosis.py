"""Per socket, a verdict: works, or the ``+QSSLOPEN`` error code the module would most
likely report, why, and what to change.

Which code the module reports for which failure is our reading of the application note
(which gives the codes but not the mapping); see :func:`diagnose`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridged.config import Endpoint
from bridged.tools.module_tls import CipherSuite, ClientKeyError, ModuleTlsError
from bridged.tools.probe.handshake import Attempt, Handshake, Outcome, Prober
from bridged.tools.probe.server_facts import (
    ClientAuth,
    Facts,
    describe_certificate,
    testable_suites,
)
from bridged.tools.probe.ssl_settings import (
    SSLVERSION_ALLOWS,
    SslUnderTest,
    tls_words,
    versions_words,
)
from bridged.tools.probe.tls_wire import PROTOCOL_VERSION_ALERT

OK = 0
CONNECTION_ERROR = -2
CERT_ERROR = -3
KEY_ERROR = -4
CIPHER_ERROR = -5
TIMEOUT = -7


@dataclass(frozen=True)
class SocketUnderTest:
    label: str  # "socket 0", or "command line"
    ssl: SslUnderTest
    connect_id: int | None = None
    remote: Endpoint | None = None  # the socket's configured remote, if not the target


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
        return Diagnosis(OK, f"{result.version} {result.suite_label()}")
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
    versions = versions_words(SSLVERSION_ALLOWS[s.sslversion])
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
            f"{found.iana_name} at {tls_words(version)}"
        )
        return tuple(fixes)
    best_version = max(allowed)
    suite = _recommended_suite(best_version, [row.suite for row in facts.suites])
    if suite is not None:
        fixes.append(
            f"enable {suite.iana_name} (OpenSSL: {suite.openssl_name}) and "
            f"{tls_words(best_version)} on the server"
        )
    return tuple(fixes)


def _recommended_suite(version: int, suites: Sequence[CipherSuite]) -> CipherSuite | None:
    """The module's most preferred suite that exists at ``version`` and can be named."""
    lowest = testable_suites()
    for suite in suites:
        if suite.code in lowest and lowest[suite.code] <= version:
            return suite
    return None


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
    if sut.remote is None or same_endpoint(sut.remote, target):
        return ()
    return (f"{sut.label}'s remote is {sut.remote}; probed {target} with its settings",)


def same_endpoint(a: Endpoint, b: Endpoint) -> bool:
    return a.host.lower() == b.host.lower() and a.port == b.port
