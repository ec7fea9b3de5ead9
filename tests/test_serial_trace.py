"""The serial trace recorder: what it keeps, what it always redacts, what it elides,
whatever way the line splits the bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridged.core.at_codec import ATDecoder, DataFormat, RecvUrc
from bridged.core.module_profile import BC20, BC26, BC660K, BC950K, ModuleProfile
from bridged.core.serial_trace import (
    HOST,
    MODULE,
    TraceRecorder,
    escape,
    module_of_command,
    parse_trace,
    unescape,
)

PEM = b"-----BEGIN PRIVATE KEY-----\nSECRETKEYMATERIAL\r\n-----END PRIVATE KEY-----\n"


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@given(st.binary(max_size=200))
def test_escape_round_trips_and_stays_on_one_line(data: bytes) -> None:
    text = escape(data)
    assert "\n" not in text and "\r" not in text and not text.endswith(" ")
    assert unescape(text) == data


@settings(max_examples=200)
@given(st.lists(st.integers(0, 400), max_size=6), st.booleans(), st.booleans())
def test_uploads_are_always_redacted_however_split(
    cuts: list[int], prompt_first: bool, keep_payload: bool
) -> None:
    recorder = TraceRecorder(keep_payload=keep_payload)
    lines: list[str] = []
    lines += recorder.host_wrote(b'AT+QSSLCFG=1,0,"clientkey"\r', 1.0)
    if prompt_first:
        lines += recorder.module_sent(b"\r\n> ", 1.1)
    for chunk in _split(PEM + b"\x1a" + b'AT+QSSLOPEN=1,0,"h",1,0\r', cuts):
        lines += recorder.host_wrote(chunk, 1.2)
    if not prompt_first:
        lines += recorder.module_sent(b"\r\n> ", 1.3)
    text = "".join(lines)
    assert b"SECRET" not in b"".join(e.data for e in parse_trace(lines) if not e.elided)
    assert "SECRET" not in text and "BEGIN" not in text
    redacted = sum(len(e.data) for e in parse_trace(lines) if e.elided == "redacted")
    assert redacted == len(PEM) + 1  # the key and its Ctrl+Z, nothing else
    host = b"".join(e.data for e in parse_trace(lines) if e.direction == HOST and not e.elided)
    assert host.endswith(b'AT+QSSLOPEN=1,0,"h",1,0\r')


def test_an_upload_refused_before_any_prompt_does_not_swallow_the_next_command() -> None:
    recorder = TraceRecorder()
    recorder.host_wrote(b'AT+QSSLCFG=1,0,"cacert"\r', 1.0)
    recorder.module_sent(b"\r\nERROR\r\n", 1.1)
    assert recorder.host_wrote(b"AT+CSQ\r", 1.2) == ["1.200000 H |AT+CSQ\\r\n"]


def _recv_urc(connect_id: int, data: bytes, hex_format: bool, quoted: bool) -> bytes:
    body = data.hex().upper().encode() if hex_format else data
    q = b'"' if quoted else b""
    return b'\r\n+QSSLURC: "recv",1,%d,%d,%s%s%s\r\n' % (connect_id, len(data), q, body, q)


@settings(max_examples=200)
@given(
    st.lists(st.binary(min_size=1, max_size=40), min_size=1, max_size=4),
    st.lists(st.integers(0, 1000), max_size=8),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)
@example([b'"'], [], False, False, False)  # bare text '"': ambiguous to the codec
def test_module_side_replays_to_the_same_events_however_split(
    payloads: list[bytes], cuts: list[int], hex_format: bool, quoted: bool, keep: bool
) -> None:
    fmt = b"1,1" if hex_format else b"0,0"
    stream = b"".join(_recv_urc(2, p, hex_format, quoted) for p in payloads)
    stream += b"\r\n+QSSLSEND: 1,2,0\r\n"
    recorder = TraceRecorder(keep_payload=keep)
    lines = recorder.host_wrote(b'AT+QSSLCFG=1,2,"dataformat",' + fmt + b"\r", 0.0)
    lines += recorder.module_sent(b"\r\nOK\r\n", 0.1)
    for chunk in _split(stream, cuts):
        lines += recorder.module_sent(chunk, 1.0)
    replayed = b"".join(e.data for e in parse_trace(lines) if e.direction == MODULE)
    assert len(replayed) == len(b"\r\nOK\r\n" + stream)
    if keep:
        assert replayed == b"\r\nOK\r\n" + stream
    # What the codec makes of the replayed bytes is what it made of the line's, with
    # recv data reduced to its length when left out.
    assert _codec_view(replayed, hex_format) == _codec_view(b"\r\nOK\r\n" + stream, hex_format)
    if quoted or hex_format:  # bare text data starting with '"' is ambiguous to the codec
        recvs = [e for e in _codec_view(replayed, hex_format) if isinstance(e, tuple)]
        assert [length for _, length in recvs] == [len(p) for p in payloads]


def _codec_view(data: bytes, hex_format: bool) -> list[object]:
    decoder = ATDecoder()
    decoder.set_recv_format(2, DataFormat.HEX if hex_format else DataFormat.TEXT)
    return [
        (e.connect_id, len(e.data)) if isinstance(e, RecvUrc) else e for e in decoder.feed(data)
    ]


def test_send_payload_is_replaced_by_its_length_until_the_final_result() -> None:
    recorder = TraceRecorder(keep_payload=False)
    lines = recorder.host_wrote(b"AT+QSSLSEND=1,0,4\r", 1.0)
    lines += recorder.module_sent(b"\r\n> ", 1.1)
    lines += recorder.host_wrote(b"SE", 1.6)
    lines += recorder.host_wrote(b"CR", 1.6)
    lines += recorder.module_sent(b"\r\nOK\r\n", 1.7)
    lines += recorder.host_wrote(b"AT\r", 1.8)
    assert lines[2:4] == ["1.600000 H [payload 2]\n", "1.600000 H [payload 2]\n"]
    assert lines[-1] == "1.800000 H |AT\\r\n"


#: A BC660K-GL (contextID 0, one socket, recv text): a recv URC whose data holds a line
#: end and "OK" arrives while the host waits for '>'.
_BC660K_RECV_WITH_OK = b'\r\n+QSSLURC: "recv",0,0,8,"a\r\nOK\r\nb"\r\n'


def test_a_bc660k_recv_holding_ok_does_not_end_an_upload_or_send_early() -> None:
    """The recorder reads the module's context from the host's commands: on a BC660K a
    recv URC is data, not lines, so its "OK" cannot end the data phase and let a key or
    an elided payload into the trace."""
    recorder = TraceRecorder(keep_payload=False)
    lines: list[str] = []
    for who, data in (
        ("H", b'AT+QSSLCFG=0,0,"dataformat",1,0\r'),
        ("M", b"\r\nOK\r\n"),
        ("H", b'AT+QSSLCFG=0,0,"clientkey"\r'),
        ("M", _BC660K_RECV_WITH_OK),
        ("M", b"\r\n> "),
        ("H", PEM + b"\x1a"),
        ("M", b'\r\n+QSSLCFG: 0,0,"clientkey",%d\r\n\r\nOK\r\n' % len(PEM)),
        ("H", b"AT+QSSLSEND=0,0,5\r"),
        ("M", _BC660K_RECV_WITH_OK),
        ("M", b"\r\n> "),
        ("H", b"68656C6C6F"),
        ("M", b"\r\nOK\r\n\r\n+QSSLSEND: 0,0,0\r\n"),
    ):
        lines += (recorder.host_wrote if who == "H" else recorder.module_sent)(data, 1.0)
    trace = "\n".join(lines)
    assert "SECRETKEYMATERIAL" not in trace and f"[redacted {len(PEM) + 1}]" in trace
    assert "68656C6C6F" not in trace and "[payload 10]" in trace


@pytest.mark.parametrize(
    ("line", "current", "expected"),
    [
        (b'AT+QSSLCFG=0,0,"dataformat",0,1', BC26, BC660K),  # a BC660K-GL's context
        (b"AT+QSSLSEND=1,3,10", BC660K, BC26),
        (b"AT+QSSLSEND=1,3,10", BC20, BC20),  # the same context: kept
        (b'AT+QSSLOPEN=0,0,"h",1,0', BC950K, BC950K),
        (b"AT+QSSLSEND=7,0,1", BC26, BC26),  # no module has context 7
        (b"ATI", BC660K, BC660K),
        (b"AT+CSQ", BC26, BC26),
    ],
)
def test_module_of_command_reads_the_context_a_qssl_command_names(
    line: bytes, current: ModuleProfile, expected: ModuleProfile
) -> None:
    assert module_of_command(line, current) is expected
