"""One SSL socket's real TLS connection: ``ssl.SSLObject`` over a Twisted TCP client.

``ssl.MemoryBIO`` keeps the TLS engine off the socket, so everything runs in the
reactor and the context comes straight from :mod:`bridged.tools.module_tls`.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from bridged.emulator.results import ResultCode

#: OpenSSL reasons (alerts the server sent, or local checks) → the module's codes.
_CERTIFICATE_REASONS = {
    "CERTIFICATE_VERIFY_FAILED",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "TLSV1_ALERT_UNKNOWN_CA",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
}
# A server that wants TLS 1.3 only answers protocol_version: for the module that is a
# failed negotiation like a missing common suite, hence the cipher code.
_NEGOTIATION_REASONS = {
    "SSLV3_ALERT_HANDSHAKE_FAILURE",
    "TLSV1_ALERT_PROTOCOL_VERSION",
    "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    "NO_SHARED_CIPHER",
    "NO_CIPHERS_AVAILABLE",
    "NO_PROTOCOLS_AVAILABLE",
    "UNSUPPORTED_PROTOCOL",
    "WRONG_SSL_VERSION",
}


def classify_handshake_error(exc: ssl.SSLError) -> ResultCode:
    """The ``+QSSLOPEN`` code for a failed handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ResultCode.CERTIFICATE
    reason = exc.reason or ""
    if reason in _CERTIFICATE_REASONS:
        return ResultCode.CERTIFICATE
    if reason in _NEGOTIATION_REASONS:
        return ResultCode.CIPHER
    # Not TLS at all, reset mid-handshake, …: the connection failed.
    return ResultCode.CONNECTION


class TlsLinkEvents(TypingProtocol):
    """What a link tells its socket. Exactly one ``handshake_done``; ``closed`` only
    after a successful handshake and only when the peer or network ended it."""

    def handshake_done(self, result: ResultCode, situation: str | None = None) -> None: ...

    def data_received(self, data: bytes) -> None: ...

    def closed(self) -> None: ...


class ReadGate:
    """Whether the module reads its TCP connections now. While the serial output to the
    host is backlogged the module stops reading, TCP flow control slows the servers, and
    nothing is lost; a module that kept reading would have to drop bytes instead."""

    def __init__(self) -> None:
        self.paused = False
        self._links: set[TlsLink] = set()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        for link in list(self._links):
            link.apply_gate()

    def add(self, link: TlsLink) -> None:
        self._links.add(link)
        link.apply_gate()

    def discard(self, link: TlsLink) -> None:
        self._links.discard(link)


class TlsLink(Protocol):
    def __init__(
        self,
        context: ssl.SSLContext,
        server_hostname: str,
        events: TlsLinkEvents,
        gate: ReadGate | None = None,
    ):
        self._context = context
        self._server_hostname = server_hostname
        self._events = events
        self._gate = gate
        self._reading_paused = False
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None
        self._handshake_reported = False
        self._established = False
        self._local_close = False
        self._gone = False

    @property
    def established(self) -> bool:
        return self._established and not self._gone

    # -- Twisted protocol ---------------------------------------------------------
    def connectionMade(self) -> None:
        self._tls = self._context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=self._sni()
        )
        if self._gate is not None:
            self._gate.add(self)
        self._advance_handshake()

    def dataReceived(self, data: bytes) -> None:
        self._incoming.write(data)
        if not self._established:
            self._advance_handshake()
        if self._established:
            self._read_plaintext()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._gate is not None:
            self._gate.discard(self)
        already_gone, self._gone = self._gone, True
        if not self._handshake_reported:
            self._report_handshake(ResultCode.CONNECTION)
        elif self._established and not already_gone and not self._local_close:
            self._events.closed()

    # -- used by the socket ----------------------------------------------------------
    def apply_gate(self) -> None:
        """Pause or resume reading from the server as the gate says (not mid-handshake)."""
        paused = self._gate is not None and self._gate.paused and self._established
        if paused == self._reading_paused or self.transport is None or self._gone:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def write(self, data: bytes) -> bool:
        """Encrypt and send; False if the connection is no longer usable."""
        if not self.established or self._tls is None:
            return False
        try:
            self._tls.write(data)
        except ssl.SSLError:
            self._fail()
            return False
        self._flush()
        return True

    def close(self) -> None:
        """Orderly close from our side (QSSLCLOSE): close_notify, then FIN. No events."""
        self._local_close = True
        if self._tls is not None and self._established and not self._gone:
            # SSLWantReadError: our close_notify is queued; we don't wait for theirs.
            with contextlib.suppress(ssl.SSLError):
                self._tls.unwrap()
            self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self, silently: bool) -> None:
        """Drop the TCP connection at once; ``silently`` suppresses the closed event."""
        if silently:
            self._local_close = True
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    # -- internals -----------------------------------------------------------------
    def _sni(self) -> str | None:
        # OpenSSL sends no SNI for an IP address; Python does the same check.
        return self._server_hostname or None

    def _advance_handshake(self) -> None:
        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush()
            return
        except ssl.SSLError as exc:
            self._flush()  # send our alert, as mbedTLS would
            self._report_handshake(classify_handshake_error(exc), self._situation(exc))
            self.abort(silently=True)
            return
        self._flush()
        self._established = True
        self._report_handshake(ResultCode.SUCCESS)
        self.apply_gate()

    def _situation(self, exc: ssl.SSLError) -> str | None:
        """Which module-profile open situation this failure is, as far as we can tell:
        our own check of the server's chain failed ("wrong_ca"), or the server aborted
        after a suite was chosen ("refused_after_hello": its CertificateRequest went
        unanswered, or it refused our certificate)."""
        assert self._tls is not None
        if isinstance(exc, ssl.SSLCertVerificationError):
            return "wrong_ca"
        if "ALERT" in (exc.reason or "") and self._tls.cipher() is not None:
            return "refused_after_hello"
        return None

    def _report_handshake(self, result: ResultCode, situation: str | None = None) -> None:
        if not self._handshake_reported:
            self._handshake_reported = True
            self._events.handshake_done(result, situation)

    def _read_plaintext(self) -> None:
        assert self._tls is not None
        while not self._gone:
            try:
                data = self._tls.read(16384)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:  # includes SSLZeroReturnError
                self._fail()
                break
            if not data:  # SSLObject.read returns b"" once close_notify has come
                self._answer_close_notify()
                break
            self._events.data_received(data)
        self._flush()

    def _answer_close_notify(self) -> None:
        """The server closed properly: answer in kind, then FIN. connectionLost reports
        the close."""
        assert self._tls is not None
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()
        self._flush()
        if self.transport is not None:
            self.transport.loseConnection()

    def _fail(self) -> None:
        """The connection ended from the far side (or broke): one closed event."""
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]
        # connectionLost reports closed; it comes later, from the reactor.

    def _flush(self) -> None:
        data = self._outgoing.read()
        if data and self.transport is not None:
            self.transport.write(data)
