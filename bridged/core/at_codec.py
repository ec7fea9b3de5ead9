"""The BC26 AT dialect as a pure codec: module bytes in, events out; commands in, bytes out.

No reactor, no I/O, no clocks. Feed whatever the serial line delivered, in chunks of any
size, to :meth:`ATDecoder.feed`; it returns the events completed by those bytes. The same
byte stream split differently yields the same events.

What it recognises (after the Zephyr ``modem_chat`` idea of match tables, applied to every
line wherever it falls, so a URC between the lines of a response is still a URC):

- final results ``OK``, ``ERROR``, ``+CME ERROR: <n>``;
- the data-mode prompt ``>`` (with or without a trailing space), without waiting for a
  line end, because the module sends none;
- command echo (lines starting with ``AT``);
- URCs: ``+QSSLURC: "recv"`` (read **by length**, never by scanning for a quote or line
  end), ``+QSSLURC: "closed"``, the asynchronous results ``+QSSLOPEN:``, ``+QSSLSEND:``,
  ``+QSSLCLOSE:``, and boot signs;
- anything else as an information line, which the engine gives to the command in flight
  or reports as unsolicited.

Malformed input becomes a :class:`ProtocolError` event and the decoder resynchronises at
the next line end. Buffers are bounded: a line longer than ``max_line`` is discarded.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from bridged.core.at_dialect import (
    CTRL_Z,
    ESC,
    URC_TYPES,
    BootSign,
    ClosedUrc,
    CloseResult,
    DataFormat,
    DataFormatSetting,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    OpenResult,
    Prompt,
    ProtocolError,
    RecvUrc,
    SendResult,
    Urc,
    encode_command,
    encode_payload,
    quote,
)
from bridged.core.module_profile import BC26, ModuleProfile

__all__ = [
    "CTRL_Z",
    "ESC",
    "URC_TYPES",
    "ATDecoder",
    "BootSign",
    "CloseResult",
    "ClosedUrc",
    "DataFormat",
    "DataFormatSetting",
    "Echo",
    "Event",
    "FinalResult",
    "InfoLine",
    "OpenResult",
    "Prompt",
    "ProtocolError",
    "RecvUrc",
    "SendResult",
    "Urc",
    "encode_command",
    "encode_payload",
    "quote",
]

# --------------------------------------------------------------------------- decoder

_RECV_PREFIX = b'+QSSLURC: "recv",'
_RECV_HEADER_MAX = 24  # "1,5,1300," and some slack
# _fast_recv's answers: consumed one URC, wait for more bytes, take the general way.
_DONE, _WAIT, _GENERAL = object(), object(), object()
# The canonical header, after the prefix: contextID, connectID, length.
_RECV_FAST = re.compile(rb"([0-9]{1,2}),([0-9]{1,2}),([0-9]{1,4}),")
_RECV_HEADER = re.compile(rb"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,")
_ASYNC_RESULT = re.compile(rb"\+QSSL(OPEN|SEND|CLOSE): ?(\d+),(\d+),(-?\d+)")
_ASYNC_RESULT_TYPES: dict[bytes, type[OpenResult | SendResult | CloseResult]]
_ASYNC_RESULT_TYPES = {b"OPEN": OpenResult, b"SEND": SendResult, b"CLOSE": CloseResult}
_CLOSED_URC = re.compile(rb'\+QSSLURC: ?"closed",(\d+),(\d+)')
_CME_ERROR = re.compile(rb"\+CME ERROR: ?(\S+)")
_BOOT_SIGNS = (b"RDY", b"+CPIN: READY", b"Leaving the BROM")
_LINE_ENDS = b"\r\n"


@dataclass(slots=True)
class _PendingRecv:
    """A recv URC whose header is parsed and whose payload is still arriving."""

    connect_id: int
    length: int
    data_format: DataFormat
    quoted: bool | None = None  # unknown until the first payload byte is seen


class ATDecoder:
    """Incremental parser of what the module sends."""

    def __init__(self, max_line: int = 4096, profile: ModuleProfile = BC26) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._recv: _PendingRecv | None = None
        self._skipping_line = False  # discarding the rest of a bad or over-long line
        # A hex recv URC _fast_recv waits for: (connect_id, begin, stop, quoted, scanned).
        self._hex_wait: tuple[int, int, int, bool, int] | None = None
        self.set_profile(profile)

    def set_profile(self, profile: ModuleProfile) -> None:
        """Which module speaks: its context and socket ids, its recv limits."""
        self.profile = profile
        self.context_id = profile.context_id
        self.connect_ids = frozenset(profile.connect_ids)
        self.all_sockets: tuple[int, ...] = profile.connect_ids
        self._max_recv = {f: profile.max_recv(f is DataFormat.HEX) for f in DataFormat}
        self._formats: dict[int, DataFormat] = dict.fromkeys(profile.connect_ids, DataFormat.HEX)

    def set_recv_format(self, connect_id: int, data_format: DataFormat) -> None:
        """Tell the decoder how the module encodes recv data for this socket."""
        self._formats[connect_id] = data_format

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a line or payload."""
        return len(self._buf)

    @property
    def awaiting(self) -> int:
        """Bytes still to come before the recv URC in progress is complete, as its checked
        header announced (0: none is), before which nothing else can arrive; errs short
        (a quote not seen yet is not counted). See :mod:`bridged.core.read_pacing`."""
        if (waiting := self._hex_wait) is not None:  # digits, quote, line end
            return max(0, waiting[2] + waiting[3] + 1 - len(self._buf))
        if (pending := self._recv) is None:
            return 0
        need = pending.length + (1 if pending.quoted else 0)  # data, closing quote
        if pending.data_format is DataFormat.HEX:
            need += pending.length + 1  # two digits a byte, then the line end
        return max(0, need - len(self._buf))

    def reset(self) -> None:
        """Forget partial input (after a serial reopen or a module reboot)."""
        self._buf.clear()
        self._recv = None
        self._skipping_line = False
        self._hex_wait = None

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        buf = self._buf
        while buf:
            if self._skipping_line:
                if not self._skip_to_line_end():
                    break
                continue
            if self._recv is not None:
                if not self._read_recv_payload(events):
                    break
                continue
            # Line ends between lines (and the space after a prompt) carry nothing.
            start = 0
            while start < len(buf) and buf[start] in b"\r\n ":
                start += 1
            if start:
                del buf[:start]
                continue
            if buf[0] == 0x3E:  # '>': the prompt has no line end after it
                del buf[:1]
                events.append(Prompt())
                continue
            if buf.startswith(_RECV_PREFIX):
                step = self._fast_recv(events)
                if step is _WAIT:
                    break
                if step is _DONE:
                    continue
                if not self._read_recv_header(events):
                    break
                continue
            end = _find_line_end(buf)
            if end < 0:
                if len(buf) > self.max_line:
                    events.append(self._line_too_long())
                    buf.clear()
                    self._skipping_line = True
                break
            line = bytes(buf[:end])
            del buf[: end + 1]
            if len(line) > self.max_line:
                events.append(self._line_too_long())
                continue
            events.append(_classify(line, self.context_id, self.all_sockets))
        return events

    # -- the pieces of feed()

    def _line_too_long(self) -> ProtocolError:
        detail = f"line longer than {self.max_line} bytes"
        return ProtocolError("line_too_long", detail, touches=self.all_sockets)

    def _fast_recv(self, events: list[Event]) -> object:
        """A well-formed recv URC at the start of the buffer, in one step: ``_DONE``.

        The common case of a download (one regex, one slice, no intermediate objects).
        ``_WAIT`` while the rest of a hex URC has not arrived yet, where the general way
        below would wait too (its header is kept, not parsed again on the next read); an
        incomplete text URC continues in the general way's payload state. Anything else
        (unusual spacing, out of range, damaged) is ``_GENERAL``: the general way, which
        produces exactly the same events and errors, so this changes speed only. Consumes
        exactly what the general way would: through the line end after hex data, through
        the closing quote after text."""
        buf = self._buf
        waiting = self._hex_wait
        if waiting is None:
            match = _RECV_FAST.match(buf, len(_RECV_PREFIX))
            if match is None:
                return _GENERAL
            connect_id = int(match[2])
            if int(match[1]) != self.context_id or connect_id not in self.connect_ids:
                return _GENERAL  # the general way reports the unknown socket
            length = int(match[3])
            data_format = self._formats[connect_id]
            # A dict of the profile's limits: an enum property costs more.
            if not 1 <= length <= self._max_recv[data_format]:
                return _GENERAL
            start = match.end()
            quoted = start < len(buf) and buf[start] == 0x22
            begin = start + quoted
            if data_format is DataFormat.TEXT:
                stop = begin + length
                if stop + quoted > len(buf) or (quoted and buf[stop] != 0x22):
                    # Incomplete (or damaged): the header is what the general way would
                    # have parsed, so its payload state takes over from here.
                    del buf[:start]
                    self._recv = _PendingRecv(connect_id, length, data_format)
                    return _DONE
                events.append(RecvUrc(connect_id, bytes(buf[begin:stop])))
                del buf[: stop + quoted]
                return _DONE
            if start >= len(buf):
                return _GENERAL
            stop = begin + 2 * length
            scanned = begin
        else:
            connect_id, begin, stop, quoted, scanned = waiting
        line_end = stop + quoted
        if line_end >= len(buf):
            # A line end already in the digits ends the payload short: the general way
            # reports that now, not after more bytes.
            if buf.find(b"\r", scanned) >= 0 or buf.find(b"\n", scanned) >= 0:
                self._hex_wait = None
                return _GENERAL
            self._hex_wait = (connect_id, begin, stop, quoted, len(buf))
            return _WAIT
        self._hex_wait = None
        # The digits, the closing quote (if opened), then a line end.
        if buf[line_end] not in _LINE_ENDS or (quoted and buf[stop] != 0x22):
            return _GENERAL
        try:  # a2b_hex refuses whitespace and line ends, which fromhex would skip
            data = binascii.a2b_hex(buf[begin:stop])
        except binascii.Error:
            return _GENERAL
        del buf[: line_end + 1]
        events.append(RecvUrc(connect_id, data))
        return _DONE

    def _skip_to_line_end(self) -> bool:
        if (end := _find_line_end(self._buf)) < 0:
            self._buf.clear()
            return False
        del self._buf[: end + 1]
        self._skipping_line = False
        return True

    def _read_recv_header(self, events: list[Event]) -> bool:
        buf = self._buf
        window = bytes(buf[len(_RECV_PREFIX) : len(_RECV_PREFIX) + _RECV_HEADER_MAX])
        match = _RECV_HEADER.match(window)
        if match is None:
            # Incomplete, or broken: broken once a line end or the size limit is reached.
            if _find_line_end(window) < 0 and len(window) < _RECV_HEADER_MAX:
                return False
            events.append(
                ProtocolError("bad_recv_header", _show(bytes(buf[:60])), touches=self.all_sockets)
            )
            del buf[: len(_RECV_PREFIX)]
            self._skipping_line = True
            return True
        context_id, connect_id, length = (int(g) for g in match.groups())
        del buf[: len(_RECV_PREFIX) + match.end()]
        if context_id != self.context_id or connect_id not in self.connect_ids:
            events.append(
                ProtocolError(
                    "bad_recv_header",
                    f"unknown socket {context_id},{connect_id} in recv URC",
                    touches=self.all_sockets,  # which digit was hit is unknown
                )
            )
            self._skipping_line = True
            return True
        data_format = self._formats[connect_id]
        max_recv = self._max_recv[data_format]
        if not 1 <= length <= max_recv:
            events.append(
                ProtocolError(
                    "bad_recv_length",
                    f"recv length {length} on socket {connect_id} outside "
                    f"1..{max_recv} ({data_format.name.lower()} format)",
                    connect_id,
                )
            )
            self._skipping_line = True
            return True
        self._recv = _PendingRecv(connect_id, length, data_format)
        return True

    def _read_recv_payload(self, events: list[Event]) -> bool:
        pending = self._recv
        assert pending is not None
        buf = self._buf
        if pending.quoted is None:
            pending.quoted = buf[0] == 0x22
            if pending.quoted:
                del buf[:1]
                if not buf:
                    return False
        if pending.data_format is DataFormat.HEX:
            return self._read_hex_payload(pending, events)
        return self._read_text_payload(pending, events)

    def _read_hex_payload(self, pending: _PendingRecv, events: list[Event]) -> bool:
        # Hex digits cannot contain a line end, so the line end delimits the payload;
        # its size is then checked against <len>.
        buf = self._buf
        want = 2 * pending.length
        end = _find_line_end(buf)
        if end < 0:
            if len(buf) > want + 1:  # longer than payload + closing quote: can't be right
                self._recv = None
                events.append(
                    ProtocolError(
                        "bad_recv_length",
                        f"hex recv on socket {pending.connect_id} longer than {want} digits",
                        pending.connect_id,
                    )
                )
                self._skipping_line = True
                return True
            return False
        field = bytes(buf[:end])
        del buf[: end + 1]
        self._recv = None
        if pending.quoted:
            if not field.endswith(b'"'):
                events.append(
                    ProtocolError(
                        "bad_recv_data",
                        f"hex recv on socket {pending.connect_id} without closing quote",
                        pending.connect_id,
                    )
                )
                return True
            field = field[:-1]
        if len(field) != want:
            events.append(
                ProtocolError(
                    "bad_recv_length",
                    f"hex recv on socket {pending.connect_id}: {len(field)} digits, "
                    f"expected {want}",
                    pending.connect_id,
                )
            )
        elif (data := _decode_hex(field)) is None:
            events.append(
                ProtocolError(
                    "bad_hex",
                    f"non-hex digit in recv data on socket {pending.connect_id}: "
                    f"{_show(field[:40])}",
                    pending.connect_id,
                )
            )
        else:
            events.append(RecvUrc(pending.connect_id, data))
        return True

    def _read_text_payload(self, pending: _PendingRecv, events: list[Event]) -> bool:
        # Text data may hold quotes, CR and LF: count bytes, never scan for delimiters.
        buf = self._buf
        need = pending.length + (1 if pending.quoted else 0)
        if len(buf) < need:
            return False
        data = bytes(buf[: pending.length])
        if pending.quoted and buf[pending.length] != 0x22:
            self._recv = None
            del buf[: pending.length]
            events.append(
                ProtocolError(
                    "bad_recv_data",
                    f"text recv on socket {pending.connect_id}: no closing quote after "
                    f"{pending.length} bytes",
                    touches=self.all_sockets,
                )
            )
            self._skipping_line = True
            return True
        del buf[:need]
        self._recv = None
        events.append(RecvUrc(pending.connect_id, data))
        return True


def _decode_hex(digits: bytes) -> bytes | None:
    """The bytes that ``digits`` (hex, even length) spell; None if one is not a hex digit.
    ``bytes.fromhex`` skips whitespace: the length check catches it. (Checking each digit
    against a set first cost a third of the parse time.)"""
    try:
        data = bytes.fromhex(digits.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return data if 2 * len(data) == len(digits) else None


def _find_line_end(buf: bytes | bytearray) -> int:
    cr = buf.find(b"\r")
    lf = buf.find(b"\n")
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


def _classify(line: bytes, context_id: int, connect_ids: tuple[int, ...]) -> Event:
    """One complete line as an event; socket URCs count only for the module's ids."""
    line = line.rstrip(b" ")
    if line == b"OK":
        return FinalResult(ok=True)
    if line == b"ERROR":
        return FinalResult(ok=False)
    if line.startswith(b"+CME ERROR:"):
        match = _CME_ERROR.fullmatch(line)
        code = match.group(1).decode("latin-1") if match else line[11:].strip().decode("latin-1")
        return FinalResult(ok=False, cme_error=code or "?")
    if line[:2] in (b"AT", b"at", b"At", b"aT"):
        return Echo(line.decode("latin-1"))
    if line.startswith(b"+QSSL"):
        match = _ASYNC_RESULT.fullmatch(line)
        if match:
            kind, context_s, connect_s, err = match.groups()
            if int(context_s) == context_id and int(connect_s) in connect_ids:
                # The BC660K's note prints its codes unsigned: 3 is -3 from any module.
                return _ASYNC_RESULT_TYPES[kind](int(connect_s), -abs(int(err)))
            return ProtocolError("bad_urc", f"unknown socket in {_show(line)}")
        if line.startswith(b"+QSSLURC:"):
            closed = _CLOSED_URC.fullmatch(line)
            if closed:
                context_id_s, connect_id_s = closed.groups()
                if int(context_id_s) == context_id and int(connect_id_s) in connect_ids:
                    return ClosedUrc(int(connect_id_s))
            return ProtocolError("bad_urc", _show(line), touches=tuple(connect_ids))
        if not line.startswith(_KNOWN_INFO_PREFIXES):
            # "+QSSLURB:", "+QSSLURC " ...: a URC with a damaged prefix (a recv or a close).
            return ProtocolError("bad_urc", _show(line), touches=tuple(connect_ids))
    if line in _BOOT_SIGNS:
        return BootSign(line.decode("latin-1"))
    if not line.startswith(_KNOWN_INFO_PREFIXES) and _DAMAGED_URC.search(line):
        # "+QSSLURC" hit further in ('"reCv"', '"clo5ed"', a damaged '+'): could have been
        # any socket's data or close.
        return ProtocolError("bad_urc", _show(line), touches=tuple(connect_ids))
    return InfoLine(line.decode("latin-1"))


# Info lines the module sends in replies; any other "+QSSL..." line is a damaged URC.
_KNOWN_INFO_PREFIXES = (
    b"+QSSLCFG:",
    b"+QSSLSTATE:",
    b"+QSSLOPEN:",  # these three: answers to test commands ("=?"), or damaged results
    b"+QSSLSEND:",
    b"+QSSLCLOSE:",
)
_DAMAGED_URC = re.compile(rb'QSSL|SSLURC|URC: "|"(?i:recv|closed)"|"[a-z]{3,6}",1,[0-5],')


def _show(data: bytes) -> str:
    """A printable excerpt of raw bytes for error messages."""
    return repr(data[:80])[2:-1]
