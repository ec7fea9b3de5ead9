"""The QSSL commands as data: their command lines, the module's result codes and their names,
and the checks on what the module answers. Pure; :class:`bridged.shell.qssl.QsslClient`
runs them over the AT engine and waits for their asynchronous results.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridged.core.at_codec import CTRL_Z, ESC, DataFormatSetting, quote
from bridged.core.at_session_types import ATError, CommandError

# The spec's result-code table; names are also metric label values.
ERROR_NAMES: dict[int, str] = {
    0: "ok",
    -1: "exception",
    -2: "connection_error",
    -3: "cert_error",
    -4: "key_error",
    -5: "cipher_error",
    -6: "state_error",
    -7: "timeout",
    -9: "other",
}
ERROR_DESCRIPTIONS: dict[int, str] = {
    -1: "exception error",
    -2: "connection error",
    -3: "CA or client certificate error",
    -4: "client key error",
    -5: "cipher suite error",
    -6: "state error",
    -7: "timeout",
    -9: "other error",
}

CertKind = Literal["cacert", "clientcert", "clientkey"]

# How long past the module's own "timeout" setting we wait for an async result: the note
# says "plus network delay" without a number.
NETWORK_MARGIN = 30.0
CLOSE_RESULT_WAIT = 1.0  # the note's 300 ms, with slack
# The initialisation steps after the module answers AT, as data: echo off, numeric
# errors, no sleep (sleep would erase the SSL settings).
INIT_COMMANDS: tuple[str, ...] = ("ATE0", "AT+CMEE=1", "AT+QSCLK=0")


def error_name(code: int) -> str:
    return ERROR_NAMES.get(code, "unknown")


class QsslError(ATError):
    """An SSL socket operation failed: ``name`` is a stable label, ``code`` the module's."""

    def __init__(
        self, connect_id: int, operation: str, name: str, code: int | None, detail: str = ""
    ) -> None:
        described = ERROR_DESCRIPTIONS.get(code, f"unknown error {code}") if code else detail
        super().__init__(
            f"socket {connect_id}: {operation} failed: {described}"
            + (f" ({code})" if code is not None else "")
        )
        self.connect_id = connect_id
        self.operation = operation
        self.name = name
        self.code = code


class SendRefused(QsslError):
    """The module answered ``AT+QSSLSEND`` itself with ERROR, before ``>``: it took none
    of the chunk and no ``+QSSLSEND`` result follows. On a pipelined send that is a module
    refusing more than one send in flight: the chunk may be sent again."""

    def __init__(self, connect_id: int, answer: str) -> None:
        detail = f"module answered {answer} before '>'"
        super().__init__(connect_id, "send", "refused", None, detail)


def send_refusal(connect_id: int, error: BaseException | None) -> SendRefused | None:
    """What a failed ``AT+QSSLSEND`` means: a :class:`SendRefused` if the module refused
    the command before ``>`` (no data taken), else None (the send failed)."""
    if isinstance(error, CommandError) and not error.prompted:
        return SendRefused(connect_id, error.final.text)
    return None


class RemoteClosed(ATError):
    """A ``"closed"`` URC arrived while an operation on that socket was pending."""


class ModuleRebooted(ATError):
    """The module printed a boot sign: every socket and setting is gone."""


class UploadMismatch(ATError):
    """The module counted a different number of certificate bytes than we sent."""


@dataclass(frozen=True, slots=True)
class SslSocketSettings:
    """What QSSLCFG writes for one socket."""

    seclevel: int
    sslversion: int
    #: The send format (chunk encoding) and the recv format (how the codec reads URCs).
    dataformat: DataFormatSetting
    timeout: int
    debug: int


# --------------------------------------------------------------------------- command lines


def configure_lines(context_id: int, connect_id: int, settings: SslSocketSettings) -> list[str]:
    """Every QSSLCFG write of one socket (they are lost on reboot and wake), in order."""
    writes = [
        f'"seclevel",{settings.seclevel}',
        f'"sslversion",{settings.sslversion}',
        f'"dataformat",{settings.dataformat.digits}',
        f'"timeout",{settings.timeout}',
        f'"debug",{settings.debug}',
    ]
    return [f"AT+QSSLCFG={context_id},{connect_id},{write}" for write in writes]


def upload_line(context_id: int, connect_id: int, kind: CertKind, pem: bytes) -> str:
    """The command that uploads a certificate or key (its PEM follows the prompt, ended by
    Ctrl+Z); refuses a PEM holding Ctrl+Z or Esc, which would end or cancel the upload."""
    if CTRL_Z in pem or ESC in pem:
        raise ValueError(f"{kind} contains Ctrl+Z or Esc, which would end the upload")
    return f'AT+QSSLCFG={context_id},{connect_id},"{kind}"'


def check_upload_count(
    lines: list[str], context_id: int, connect_id: int, kind: CertKind, sent: int
) -> None:
    """The upload's answer must count every byte sent; :class:`UploadMismatch` if not."""
    prefix = f'+QSSLCFG: {context_id},{connect_id},"{kind}",'
    counts = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
    if not counts or not counts[0].strip().isdigit():
        raise UploadMismatch(f"socket {connect_id}: {kind} upload: no byte count in reply")
    if int(counts[0]) != sent:
        raise UploadMismatch(
            f"socket {connect_id}: {kind} upload: module counted {counts[0]} bytes, sent {sent}"
        )


def open_line(context_id: int, connect_id: int, host: str, port: int) -> str:
    """Open an SSL connection (access mode 0: buffer, data reported by recv URCs)."""
    return f"AT+QSSLOPEN={context_id},{connect_id},{quote(host)},{port},0"


def send_line(context_id: int, connect_id: int, length: int) -> str:
    """A fixed-length send of ``length`` payload bytes (the data follows the prompt)."""
    return f"AT+QSSLSEND={context_id},{connect_id},{length}"


def send_answer_size(context_id: int, connect_id: int) -> int:
    """Bytes the module answers a send's data with when all goes well: ``OK``, then the
    result (which the module sends as soon as the data is on its way; a later one only
    costs the shell a read more)."""
    return len(f"\r\nOK\r\n\r\n+QSSLSEND: {context_id},{connect_id},0\r\n")


def close_line(context_id: int, connect_id: int) -> str:
    return f"AT+QSSLCLOSE={context_id},{connect_id}"
