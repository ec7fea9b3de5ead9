"""A serial trace: every byte on the line, with a time and a direction, as text.

Pure: :class:`TraceRecorder` turns what the host wrote and what the module sent (each
with the time it happened) into trace lines; :func:`parse_trace` reads them back.
Writing them to a file (bounded, rotated) and tapping a Twisted serial port is in
:mod:`bridged.shell.serial_tap`.

Format (one record per line, UTF-8, ``#`` lines are comments)::

    # bridged serial trace v1
    1764640000.123456 H |AT+QSSLSEND=1,0,5\\r
    1764640000.125001 M |\\r\\n>
    1764640000.626001 H [payload 10]
    1764640000.640000 M |\\r\\nOK\\r\\n
    1764640001.000000 H [redacted 1187]
    1764640002.000000 * port opened

``H`` the host wrote, ``M`` the module sent, ``*`` a note from the host side. After
``|`` the bytes, escaped (printable ASCII as is, ``\\\\``, ``\\r``, ``\\n``, ``\\xNN``);
``[payload N]`` and ``[recv N]`` stand for N bytes left out (``trace_payload: false``);
``[redacted N]`` for N bytes of a certificate or key upload, always left out.

The recorder recognises the data phases itself. A certificate/key upload is recognised
from the host side alone: after the host's ``AT+QSSLCFG=<c>,<id>,"cacert"`` (or
``clientcert`` / ``clientkey``) line, every byte the host writes up to and including the
Ctrl+Z or Esc that ends the upload is redacted (the module answering a final result
before any ``>`` ends it early: the host then sends no certificate). With payloads off,
QSSLSEND data (host bytes after ``>`` until the module's final result) and recv URC data
(counted by the URC's length field and the socket's data format, which the recorder
follows from the host's ``"dataformat"`` commands) are replaced by their length. Which
module speaks (its contextID, sockets, recv limits) is read off the host's QSSL commands
(:func:`module_of_command`): nobody need tell the recorder the model.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from bridged.core.at_codec import ATDecoder, DataFormat, FinalResult, Prompt
from bridged.core.module_profile import BUILTIN_PROFILES, ModuleProfile

HEADER = "# bridged serial trace v1"
HOST = "H"
MODULE = "M"
NOTE = "*"

_UPLOAD_COMMAND = re.compile(
    rb'AT\+QSSLCFG=\s*\d+\s*,\s*\d+\s*,\s*"(cacert|clientcert|clientkey)"\s*$', re.IGNORECASE
)
_SEND_COMMAND = re.compile(rb"AT\+QSSLSEND=", re.IGNORECASE)
_DATAFORMAT_COMMAND = re.compile(
    rb'AT\+QSSLCFG=\s*\d+\s*,\s*(\d+)\s*,\s*"dataformat"\s*,\s*(\d)\s*,\s*(\d)\s*$', re.IGNORECASE
)
_QSSL_CONTEXT = re.compile(rb"AT\+QSSL[A-Z]+=\s*(\d+)\s*,", re.IGNORECASE)
_RECV_PREFIX = b'+QSSLURC: "recv",'
_RECV_HEADER = re.compile(rb"\s*\d+\s*,\s*(\d+)\s*,\s*(\d+)\s*,")
_RECV_HEADER_MAX = 24
_ESCAPES = {0x5C: "\\\\", 0x0D: "\\r", 0x0A: "\\n"}


def escape(data: bytes) -> str:
    """Bytes as one line of text; :func:`unescape` reverses it."""
    out = []
    for b in data:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    if out and out[-1] == " ":
        out[-1] = "\\x20"  # a trailing space would not survive an editor
    return "".join(out)


_UNESCAPE = re.compile(r"\\(\\|r|n|x[0-9a-fA-F]{2})")


def unescape(text: str) -> bytes:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "\\":
            return "\\"
        if code == "r":
            return "\r"
        if code == "n":
            return "\n"
        return chr(int(code[1:], 16))

    return _UNESCAPE.sub(one, text).encode("latin-1")


def module_of_command(line: bytes, current: ModuleProfile) -> ModuleProfile:
    """The module a host command line shows: a QSSL command names the module's contextID,
    so when it is not ``current``'s, the built-in profile with that context replaces it
    (a BC26's 1, a BC660K-GL's 0); any other line leaves ``current``."""
    match = _QSSL_CONTEXT.match(line)
    if match is None or int(match.group(1)) == current.context_id:
        return current
    context_id = int(match.group(1))
    return next((p for p in BUILTIN_PROFILES.values() if p.context_id == context_id), current)


class _HostPhase(Enum):
    COMMAND = "command"
    UPLOAD_ASKED = "upload_asked"  # upload line sent, no '>' yet: redact anyway
    UPLOAD = "upload"  # after '>': redact up to Ctrl+Z / Esc whatever the module says
    SEND_ASKED = "send_asked"
    SEND_DATA = "send_data"


class TraceRecorder:
    """Host and module bytes in (with their time), trace lines out."""

    def __init__(self, *, keep_payload: bool = True) -> None:
        self.keep_payload = keep_payload
        self._phase = _HostPhase.COMMAND
        self._host_line = bytearray()
        # Module side: final results and '>' end the host's data phases.
        self._decoder = ATDecoder()
        self._recv_hex: dict[int, bool] = {}
        self._recv_scan = bytearray()  # module bytes that may start a recv URC header
        self._recv_left = 0  # raw payload bytes of a recv URC still to elide
        self._recv_quote_next = False
        self._recv_hex_now = True

    # -- inputs ------------------------------------------------------------------
    def host_wrote(self, data: bytes, now: float) -> list[str]:
        lines: list[str] = []
        i = 0
        while i < len(data):
            phase = self._phase
            if phase in (_HostPhase.UPLOAD_ASKED, _HostPhase.UPLOAD):
                end = _find_any(data, b"\x1a\x1b", i)
                stop = len(data) if end < 0 else end + 1
                lines.append(_record(now, HOST, f"[redacted {stop - i}]"))
                if end >= 0:
                    self._phase = _HostPhase.COMMAND
                i = stop
            elif phase is _HostPhase.SEND_DATA and not self.keep_payload:
                lines.append(_record(now, HOST, f"[payload {len(data) - i}]"))
                i = len(data)
            else:
                end = data.find(b"\r", i)
                stop = len(data) if end < 0 else end + 1
                chunk = data[i:stop]
                lines.append(_record(now, HOST, "|" + escape(chunk)))
                if phase is _HostPhase.COMMAND:
                    self._host_line += chunk
                    if end >= 0:
                        self._command_line(bytes(self._host_line[:-1]).lstrip(b"\n"))
                        self._host_line.clear()
                i = stop
        return lines

    def module_sent(self, data: bytes, now: float) -> list[str]:
        for event in self._decoder.feed(data):
            if isinstance(event, Prompt):
                if self._phase is _HostPhase.UPLOAD_ASKED:
                    self._phase = _HostPhase.UPLOAD
                elif self._phase is _HostPhase.SEND_ASKED:
                    self._phase = _HostPhase.SEND_DATA
            elif isinstance(event, FinalResult) and self._phase in (
                _HostPhase.UPLOAD_ASKED,
                _HostPhase.SEND_ASKED,
                _HostPhase.SEND_DATA,
            ):
                self._phase = _HostPhase.COMMAND
        if self.keep_payload:
            return [_record(now, MODULE, "|" + escape(data))]
        return [_record(now, MODULE, text) for text in self._elide_recv(data)]

    def note(self, text: str, now: float) -> list[str]:
        """A host-side event worth seeing in the trace (port opened, closed)."""
        if text.startswith("reset"):
            self._decoder.reset()
        return [_record(now, NOTE, text.replace("\n", " "))]

    # -- internals -------------------------------------------------------------------
    def _command_line(self, line: bytes) -> None:
        module = module_of_command(line, self._decoder.profile)
        if module is not self._decoder.profile:
            self._decoder.set_profile(module)  # which forgets the formats: tell them again
            for connect_id in self._recv_hex:
                self._tell_recv_format(connect_id)
        if _UPLOAD_COMMAND.match(line):
            self._phase = _HostPhase.UPLOAD_ASKED
        elif _SEND_COMMAND.match(line):
            self._phase = _HostPhase.SEND_ASKED
        elif m := _DATAFORMAT_COMMAND.match(line):
            connect_id = int(m.group(1))
            self._recv_hex[connect_id] = DataFormat.from_digit(m.group(3)) is DataFormat.HEX
            self._tell_recv_format(connect_id)

    def _tell_recv_format(self, connect_id: int) -> None:
        recv_hex = self._recv_hex[connect_id]
        self._decoder.set_recv_format(connect_id, DataFormat.HEX if recv_hex else DataFormat.TEXT)

    def _elide_recv(self, data: bytes) -> Iterator[str]:
        """Module bytes with recv URC data replaced by ``[recv N]`` records."""
        buf = self._recv_scan + data
        self._recv_scan = bytearray()
        raw = bytearray()
        i = 0
        while i < len(buf):
            if self._recv_quote_next:
                self._recv_quote_next = False
                if buf[i] == 0x22:  # the opening quote is framing: kept
                    raw.append(0x22)
                    i += 1
                continue
            if self._recv_left:
                take = min(self._recv_left, len(buf) - i)
                if self._recv_hex_now:
                    # Hex digits hold no line end: as the codec, stop at one.
                    end = _find_any(bytes(buf[i : i + take]), b"\r\n", 0)
                    if end >= 0:
                        take, self._recv_left = end, end
                if raw and take:
                    yield "|" + escape(bytes(raw))
                    raw.clear()
                if take:
                    yield f"[recv {take}]"
                self._recv_left -= take
                i += take
                continue
            start = buf.find(_RECV_PREFIX, i)
            if start < 0:
                # Keep a tail that could be the start of the prefix.
                keep = _partial_prefix(buf, i)
                raw += buf[i : len(buf) - keep]
                self._recv_scan = bytearray(buf[len(buf) - keep :])
                break
            header = _RECV_HEADER.match(buf, start + len(_RECV_PREFIX))
            if header is None:
                if len(buf) - start < len(_RECV_PREFIX) + _RECV_HEADER_MAX:
                    raw += buf[i:start]
                    self._recv_scan = bytearray(buf[start:])
                    break
                raw += buf[i : start + len(_RECV_PREFIX)]  # malformed: pass it through
                i = start + len(_RECV_PREFIX)
                continue
            raw += buf[i : header.end()]
            connect_id, length = int(header.group(1)), int(header.group(2))
            hex_format = self._recv_hex.get(connect_id, True)
            fmt = DataFormat.HEX if hex_format else DataFormat.TEXT
            if 1 <= length <= fmt.max_recv:  # else the codec skips the line: keep it all
                self._recv_left = length * fmt.bytes_per_payload_byte
                self._recv_hex_now = hex_format
                self._recv_quote_next = True  # an optional opening quote comes first
            i = header.end()
        if raw:
            yield "|" + escape(bytes(raw))


def _record(now: float, direction: str, body: str) -> str:
    return f"{now:.6f} {direction} {body}\n"


def _find_any(data: bytes, chars: bytes, start: int) -> int:
    found = [i for i in (data.find(bytes([c]), start) for c in chars) if i >= 0]
    return min(found) if found else -1


def _partial_prefix(buf: bytes | bytearray, start: int) -> int:
    """Length of the longest tail of ``buf[start:]`` that begins the recv prefix."""
    for n in range(min(len(_RECV_PREFIX) - 1, len(buf) - start), 0, -1):
        if buf.endswith(_RECV_PREFIX[:n]):
            return n
    return 0


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class TraceEntry:
    """One record: ``data`` is the bytes (fill bytes for a left-out part), ``elided``
    says what was left out (None: the real bytes), ``text`` for notes."""

    time: float
    direction: str
    data: bytes = b""
    elided: str | None = None
    text: str = ""


class TraceFormatError(ValueError):
    pass


_ELIDED = re.compile(r"\[(payload|recv|redacted) (\d+)\]")


def parse_trace(lines: Iterator[str] | list[str], source: str = "<trace>") -> Iterator[TraceEntry]:
    """Records of a trace; left-out bytes come back as that many ``0`` bytes (valid
    hex digits and valid text, so a replay keeps every length right)."""
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line or line.startswith("#"):
            continue
        try:
            stamp, direction, body = line.split(" ", 2)
            time = float(stamp)
        except ValueError:
            raise TraceFormatError(
                f"{source}:{number}: not a trace record: {line[:60]!r}"
            ) from None
        if direction == NOTE:
            yield TraceEntry(time, NOTE, text=body)
        elif direction not in (HOST, MODULE):
            raise TraceFormatError(f"{source}:{number}: unknown direction {direction!r}")
        elif body.startswith("|"):
            yield TraceEntry(time, direction, unescape(body[1:]))
        elif m := _ELIDED.fullmatch(body):
            yield TraceEntry(time, direction, b"0" * int(m.group(2)), elided=m.group(1))
        else:
            raise TraceFormatError(f"{source}:{number}: bad record body {body[:40]!r}")
