"""The BC26 AT dialect's vocabulary: the control bytes, the data formats, the events the
decoder (:mod:`bridged.core.at_codec`) makes of the module's bytes (final results, ``>``,
echo, information lines, URCs, protocol errors), and the encoders of what the host writes.
Pure; re-exported by :mod:`bridged.core.at_codec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from bridged.core.module_profile import BC26

CTRL_Z = b"\x1a"
ESC = b"\x1b"


class DataFormat(Enum):
    """How payload bytes travel on the serial line, in one direction.

    The one mapping of the three ways a format is named: the member's value is the
    module's digit in ``AT+QSSLCFG=<ctx>,<id>,"dataformat",<send>,<recv>`` (0 text, 1 hex),
    :attr:`word` is the configuration's name (``text`` / ``hex``).
    """

    TEXT = 0
    HEX = 1

    @property
    def word(self) -> str:
        """The configuration's name: ``hex`` or ``text``."""
        return self.name.lower()

    @classmethod
    def from_word(cls, word: str) -> DataFormat:
        """``hex`` / ``text`` (case-insensitive); ValueError for anything else."""
        for member in cls:
            if member.word == word.lower():
                return member
        raise ValueError(f"{word!r} is not a data format (hex or text)")

    @property
    def digit(self) -> int:
        """The module's digit in ``"dataformat",<send>,<recv>``."""
        return self.value

    @classmethod
    def from_digit(cls, digit: int | str | bytes) -> DataFormat:
        """The format a ``"dataformat"`` digit selects: 1 hex, else text (the module
        takes only 0 and 1 and refuses the rest; a refused write leaves text, the
        module's default)."""
        return cls.HEX if int(digit) == cls.HEX.value else cls.TEXT

    @property
    def max_send(self) -> int:
        """Largest fixed-length QSSLSEND of the default module (BC26), in payload bytes."""
        return BC26.max_send(self is DataFormat.HEX)

    @property
    def max_recv(self) -> int:
        """Largest payload one recv URC of the default module (BC26) carries."""
        return BC26.max_recv(self is DataFormat.HEX)

    @property
    def bytes_per_payload_byte(self) -> int:
        return 2 if self is DataFormat.HEX else 1


@dataclass(frozen=True, slots=True)
class DataFormatSetting:
    """One socket's ``"dataformat"`` setting: the format of each direction, as
    ``AT+QSSLCFG=<ctx>,<id>,"dataformat",<send>,<recv>`` writes it."""

    send: DataFormat
    recv: DataFormat

    @classmethod
    def both(cls, data_format: DataFormat) -> DataFormatSetting:
        return cls(data_format, data_format)

    @property
    def digits(self) -> str:
        """``<send>,<recv>`` as the command writes them, e.g. ``0,1``."""
        return f"{self.send.digit},{self.recv.digit}"

    def __str__(self) -> str:
        if self.send is self.recv:
            return self.send.word
        return f"send {self.send.word}, recv {self.recv.word}"


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class FinalResult:
    """``OK``, ``ERROR`` or ``+CME ERROR: <code>``: the end of a command's response."""

    ok: bool
    cme_error: str | None = None  # the code as sent (numeric on the BC26 with CMEE=1)

    @property
    def text(self) -> str:
        if self.ok:
            return "OK"
        return "ERROR" if self.cme_error is None else f"+CME ERROR: {self.cme_error}"


@dataclass(frozen=True, slots=True)
class InfoLine:
    """A response line that is neither a final result nor a known URC."""

    text: str


@dataclass(frozen=True, slots=True)
class Echo:
    """The module echoing a command line back (echo is on until ``ATE0``)."""

    text: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """``>``: the module wants data (certificate upload or QSSLSEND)."""


@dataclass(frozen=True, slots=True)
class RecvUrc:
    """``+QSSLURC: "recv",1,<id>,<len>,<data>``: payload received on a socket."""

    connect_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ClosedUrc:
    """``+QSSLURC: "closed",1,<id>``: the module is closing the socket by itself."""

    connect_id: int


@dataclass(frozen=True, slots=True)
class OpenResult:
    """``+QSSLOPEN: 1,<id>,<err>``."""

    connect_id: int
    err: int


@dataclass(frozen=True, slots=True)
class SendResult:
    """``+QSSLSEND: 1,<id>,<err>``."""

    connect_id: int
    err: int


@dataclass(frozen=True, slots=True)
class CloseResult:
    """``+QSSLCLOSE: 1,<id>,<err>``."""

    connect_id: int
    err: int


@dataclass(frozen=True, slots=True)
class BootSign:
    """A line the module prints while (re)booting: it has lost all SSL settings."""

    text: str


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Bytes that break the dialect. Reported, counted, never fatal.

    ``connect_id`` names the socket whose received data was lost, when the broken bytes
    were a recv URC for a known socket: its client has a gap in its stream. ``touches``
    names every socket whose stream the damage could have touched when it cannot be
    attributed to one (a damaged URC prefix or connectID, a line that may have been a
    recv, a text-format length that may have swallowed other lines).
    """

    kind: str
    detail: str
    connect_id: int | None = None
    touches: tuple[int, ...] = ()

    @property
    def sockets(self) -> tuple[int, ...]:
        """The sockets whose received stream this damage breaks."""
        if self.connect_id is not None:
            return (self.connect_id,)
        return self.touches


Urc = RecvUrc | ClosedUrc | OpenResult | SendResult | CloseResult | BootSign
Event = FinalResult | InfoLine | Echo | Prompt | Urc | ProtocolError

URC_TYPES: tuple[type, ...] = (RecvUrc, ClosedUrc, OpenResult, SendResult, CloseResult, BootSign)


# --------------------------------------------------------------------------- encoders


def encode_command(command: str) -> bytes:
    """One command line, terminated by CR. Refuses what would break the framing."""
    if not command[:2].upper() == "AT":
        raise ValueError(f"AT command must start with AT: {command!r}")
    if any(c in command for c in "\r\n\x1a\x1b") or not command.isascii():
        raise ValueError(f"AT command must be one line of ASCII: {command!r}")
    return command.encode("ascii") + b"\r"


def quote(text: str) -> str:
    """A string parameter. The dialect has no escape for '"', so it is refused."""
    if '"' in text or not text.isprintable() or not text.isascii():
        raise ValueError(f"cannot pass {text!r} as an AT string parameter")
    return f'"{text}"'


def encode_payload(payload: bytes, data_format: DataFormat) -> bytes:
    """Payload bytes as the module expects them after the prompt of a fixed-length send."""
    if data_format is DataFormat.HEX:
        return payload.hex().upper().encode("ascii")
    return payload
