"""What a TLS server sends in the clear, read off the wire: a TLS <= 1.2 handshake is
readable up to the server's ChangeCipherSpec, and that shows what Python's ``ssl`` hides —
the suite its ServerHello chose, a CertificateRequest, the server's fatal alert, and its
certificate chain even when verification failed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

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
