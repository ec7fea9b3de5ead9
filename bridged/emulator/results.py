"""The module's ``<err>`` result codes (note chapter 4) and CME error numbers."""

from __future__ import annotations

from enum import IntEnum


class ResultCode(IntEnum):
    """``<err>`` of ``+QSSLOPEN``, ``+QSSLSEND`` and ``+QSSLCLOSE``."""

    SUCCESS = 0
    EXCEPTION = -1
    CONNECTION = -2
    CERTIFICATE = -3
    CLIENT_KEY = -4
    CIPHER = -5
    STATE = -6
    TIMEOUT = -7
    OTHER = -9


class CmeError(IntEnum):
    """``+CME ERROR: <n>`` numbers (3GPP TS 27.007 section 9.2) the emulator uses."""

    OPERATION_NOT_ALLOWED = 3
    OPERATION_NOT_SUPPORTED = 4
    INCORRECT_PARAMETERS = 50
    UNKNOWN = 100


#: Text of ``AT+CMEE=2`` verbose errors.
CME_TEXT: dict[CmeError, str] = {
    CmeError.OPERATION_NOT_ALLOWED: "operation not allowed",
    CmeError.OPERATION_NOT_SUPPORTED: "operation not supported",
    CmeError.INCORRECT_PARAMETERS: "incorrect parameters",
    CmeError.UNKNOWN: "unknown",
}
