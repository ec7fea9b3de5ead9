"""The AT codec: framing, URCs anywhere, recv by length, resynchronisation, encoders."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridged.core.at_codec import (
    ATDecoder,
    BootSign,
    ClosedUrc,
    CloseResult,
    DataFormat,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    OpenResult,
    Prompt,
    ProtocolError,
    RecvUrc,
    SendResult,
    encode_command,
    encode_payload,
    quote,
)
from bridged.core.module_profile import BC660K


def decode(data: bytes, **formats: DataFormat) -> list[Event]:
    decoder = ATDecoder()
    for name, fmt in formats.items():
        decoder.set_recv_format(int(name[1:]), fmt)
    return decoder.feed(data)


def recv_hex(cid: int, payload: bytes, quoted: bool = True) -> bytes:
    data = payload.hex().upper().encode()
    if quoted:
        data = b'"' + data + b'"'
    return b'\r\n+QSSLURC: "recv",1,%d,%d,%s\r\n' % (cid, len(payload), data)


def recv_text(cid: int, payload: bytes, quoted: bool = True) -> bytes:
    data = b'"' + payload + b'"' if quoted else payload
    return b'\r\n+QSSLURC: "recv",1,%d,%d,%s\r\n' % (cid, len(payload), data)


# ---------------------------------------------------------------- final results, lines


@pytest.mark.parametrize(
    ("wire", "event"),
    [
        (b"\r\nOK\r\n", FinalResult(ok=True)),
        (b"\r\nERROR\r\n", FinalResult(ok=False)),
        (b"\r\n+CME ERROR: 50\r\n", FinalResult(ok=False, cme_error="50")),
        (b"\r\n+CME ERROR:50\r\n", FinalResult(ok=False, cme_error="50")),
        (b"\r\n+CSQ: 20,99\r\n", InfoLine("+CSQ: 20,99")),
        (b'\r\n+QSSLCFG: 1,5,"cacert",1216\r\n', InfoLine('+QSSLCFG: 1,5,"cacert",1216')),
        (b"AT+CSQ\r\r\n", Echo("AT+CSQ")),
        (b"\r\n+QSSLOPEN: 1,5,0\r\n", OpenResult(5, 0)),
        (b"\r\n+QSSLOPEN: 1,2,-7\r\n", OpenResult(2, -7)),
        (b"\r\n+QSSLSEND: 1,0,0\r\n", SendResult(0, 0)),
        (b"\r\n+QSSLCLOSE: 1,3,-6\r\n", CloseResult(3, -6)),
        (b'\r\n+QSSLURC: "closed",1,4\r\n', ClosedUrc(4)),
        (b"\r\nRDY\r\n", BootSign("RDY")),
        (b"\r\n+CPIN: READY\r\n", BootSign("+CPIN: READY")),
        (b"\r\nLeaving the BROM\r\n", BootSign("Leaving the BROM")),
        (b"\r\n> ", Prompt()),
        (b"\r\n>", Prompt()),
    ],
)
def test_each_line_kind_is_recognised(wire: bytes, event: Event) -> None:
    assert decode(wire) == [event]


def test_test_command_answers_are_info_not_async_results() -> None:
    # "+QSSLOPEN: (1-3),(0-5),..." answers AT+QSSLOPEN=?; it is not an open result.
    assert decode(b'\r\n+QSSLOPEN: (1-3),(0-5),"host",(1-65535),(0)\r\n') == [
        InfoLine('+QSSLOPEN: (1-3),(0-5),"host",(1-65535),(0)')
    ]


def test_urc_between_lines_of_a_response_stays_a_urc() -> None:
    wire = (
        b'\r\n+QSSLCFG: 1,0,"seclevel",2\r\n'
        + recv_hex(0, b"hi")
        + b'\r\n+QSSLURC: "closed",1,1\r\n'
        + b'\r\n+QSSLCFG: 1,0,"sslversion",4\r\n\r\nOK\r\n'
    )
    assert decode(wire) == [
        InfoLine('+QSSLCFG: 1,0,"seclevel",2'),
        RecvUrc(0, b"hi"),
        ClosedUrc(1),
        InfoLine('+QSSLCFG: 1,0,"sslversion",4'),
        FinalResult(ok=True),
    ]


def test_prompt_is_seen_without_line_end() -> None:
    decoder = ATDecoder()
    assert decoder.feed(b"AT+QSSLSEND=1,0,5\r\r\n> ") == [Echo("AT+QSSLSEND=1,0,5"), Prompt()]
    assert decoder.buffered == 0


# ---------------------------------------------------------------- recv by length


def test_recv_hex_quoted_and_bare() -> None:
    assert decode(recv_hex(5, b"1234567890")) == [RecvUrc(5, b"1234567890")]
    assert decode(recv_hex(5, b"\x00\xff", quoted=False)) == [RecvUrc(5, b"\x00\xff")]


def test_the_notes_own_text_example() -> None:
    wire = b'\r\n+QSSLURC: "recv",1,5,10,"1234567890"\r\n'
    assert decode(wire, c5=DataFormat.TEXT) == [RecvUrc(5, b"1234567890")]


def test_text_recv_may_hold_quotes_line_ends_nul_and_ff() -> None:
    payload = b'a"b\r\nOK\r\n\x00\xff"'
    events = decode(recv_text(2, payload) + b"\r\nOK\r\n", c2=DataFormat.TEXT)
    assert events == [RecvUrc(2, payload), FinalResult(ok=True)]


def test_text_recv_bare_data() -> None:
    payload = b"x,y\rz"
    assert decode(recv_text(1, payload, quoted=False), c1=DataFormat.TEXT) == [RecvUrc(1, payload)]


@pytest.mark.parametrize(
    ("wire", "kind"),
    [
        (b'\r\n+QSSLURC: "recv",1,0,3,"4142"\r\n', "bad_recv_length"),  # 2 bytes, says 3
        (b'\r\n+QSSLURC: "recv",1,0,2,"41424344"\r\n', "bad_recv_length"),
        (b'\r\n+QSSLURC: "recv",1,0,2,"41G2"\r\n', "bad_hex"),
        (b'\r\n+QSSLURC: "recv",1,0,2,"4142\r\n', "bad_recv_data"),
        (b'\r\n+QSSLURC: "recv",1,0,651,"41"\r\n', "bad_recv_length"),
        (b'\r\n+QSSLURC: "recv",1,0,0,""\r\n', "bad_recv_length"),
        (b'\r\n+QSSLURC: "recv",1,9,1,"41"\r\n', "bad_recv_header"),
        (b'\r\n+QSSLURC: "recv",2,0,1,"41"\r\n', "bad_recv_header"),
        (b'\r\n+QSSLURC: "recv",x,y\r\n', "bad_recv_header"),
        (b'\r\n+QSSLURC: "bogus",1,0\r\n', "bad_urc"),
        (b'\r\n+QSSLURC: "closed",1,7\r\n', "bad_urc"),
        (b"\r\n+QSSLOPEN: 1,6,0\r\n", "bad_urc"),
    ],
)
def test_malformed_urcs_are_errors_and_the_next_line_still_parses(wire: bytes, kind: str) -> None:
    events = decode(wire + b"\r\nOK\r\n")
    assert [type(e) for e in events] == [ProtocolError, FinalResult], events
    assert isinstance(events[0], ProtocolError) and events[0].kind == kind


def test_text_recv_without_closing_quote_resyncs_at_next_line() -> None:
    wire = b'\r\n+QSSLURC: "recv",1,0,2,"abc"\r\n\r\nOK\r\n'
    events = decode(wire, c0=DataFormat.TEXT)
    assert [type(e) for e in events] == [ProtocolError, FinalResult]


def test_over_long_line_is_discarded_and_bounded() -> None:
    decoder = ATDecoder(max_line=4096)
    events: list[Event] = []
    for _ in range(100):
        events += decoder.feed(b"x" * 1000)
        assert decoder.buffered <= 4096 + 1000
    events += decoder.feed(b"\r\nOK\r\n")
    assert [type(e) for e in events] == [ProtocolError, FinalResult]


def test_recv_format_is_per_socket() -> None:
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    wire = recv_hex(0, b"AB") + recv_text(1, b"4142")
    assert decoder.feed(wire) == [RecvUrc(0, b"AB"), RecvUrc(1, b"4142")]


# ---------------------------------------------------------------- properties

payloads = st.binary(min_size=1, max_size=1300)
text_lines = st.sampled_from(
    [b"OK", b"ERROR", b"+CME ERROR: 3", b"+CSQ: 31,99", b"RDY", b'+QSSLURC: "closed",1,3']
)


@st.composite
def module_streams(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    """A stream the module could send on sockets 0 (hex) and 1 (text), with its events."""
    wire = b""
    expected: list[Event] = []
    for _ in range(draw(st.integers(0, 12))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            data = draw(st.binary(min_size=1, max_size=650))
            wire += recv_hex(0, data, quoted=draw(st.booleans()))
            expected.append(RecvUrc(0, data))
        elif choice == 1:
            data = draw(payloads)
            # A bare payload starting with '"' is indistinguishable from a quoted one.
            quoted = draw(st.booleans()) or data.startswith(b'"')
            wire += recv_text(1, data, quoted=quoted)
            expected.append(RecvUrc(1, data))
        elif choice == 2:
            line = draw(text_lines)
            wire += b"\r\n" + line + b"\r\n"
            expected += decode(b"\r\n" + line + b"\r\n")
        else:
            wire += b"\r\n> "
            expected.append(Prompt())
    return wire, expected


def feed_in_chunks(wire: bytes, cuts: list[int]) -> list[Event]:
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    events: list[Event] = []
    last = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        events += decoder.feed(wire[last:cut])
        last = max(last, cut)
    return events


@settings(max_examples=300)
@given(module_streams(), st.lists(st.integers(min_value=0), max_size=40))
def test_any_split_of_the_stream_yields_the_same_events(
    stream: tuple[bytes, list[Event]], cuts: list[int]
) -> None:
    wire, expected = stream
    assert feed_in_chunks(wire, []) == expected
    assert feed_in_chunks(wire, cuts) == expected


@given(st.binary(min_size=1, max_size=650))
def test_hex_round_trip(payload: bytes) -> None:
    encoded = encode_payload(payload, DataFormat.HEX)
    assert len(encoded) == 2 * len(payload)
    wire = b'\r\n+QSSLURC: "recv",1,0,%d,"%s"\r\n' % (len(payload), encoded)
    assert decode(wire) == [RecvUrc(0, payload)]


@settings(max_examples=300)
@given(st.binary(max_size=6000), st.lists(st.integers(min_value=0), max_size=20))
def test_garbage_never_raises_and_memory_stays_bounded(garbage: bytes, cuts: list[int]) -> None:
    decoder = ATDecoder(max_line=512)
    decoder.set_recv_format(1, DataFormat.TEXT)
    last = 0
    for cut in [*sorted(c % (len(garbage) + 1) for c in cuts), len(garbage)]:
        decoder.feed(garbage[last:cut])
        last = max(last, cut)
        assert decoder.buffered <= 512 + len(garbage)
    # After any garbage, a clean line end and a final result still parse.
    events = decoder.feed(b"\r\n" + b"\x00" * 1400 + b"\r\n\r\nOK\r\n")
    assert events[-1] == FinalResult(ok=True)


# ---------------------------------------------------------------- encoders


def test_encode_command() -> None:
    assert encode_command("AT+QSSLCLOSE=1,0") == b"AT+QSSLCLOSE=1,0\r"
    for bad in ("AT\r+X", "ATD\x1a", "hello", "AT+Ü"):
        with pytest.raises(ValueError):
            encode_command(bad)


def test_quote_refuses_what_the_dialect_cannot_carry() -> None:
    assert quote("hf.quectel.com") == '"hf.quectel.com"'
    with pytest.raises(ValueError):
        quote('evil",1')


def test_text_payload_is_raw() -> None:
    assert encode_payload(b'\x00"\r', DataFormat.TEXT) == b'\x00"\r'


@pytest.mark.parametrize(
    ("wire", "connect_id"),
    [
        (b'\r\n+QSSLURC: "recv",1,4,2,"41G2"\r\n', 4),  # the data is damaged: socket known
        (b'\r\n+QSSLURC: "recv",1,4,3,"4142"\r\n', 4),
        (b'\r\n+QSSLURC: "recv",1,9,1,"41"\r\n', None),  # the header is damaged: no socket
        (b'\r\n+QSSLURC: "bogus",1,4\r\n', None),
    ],
)
def test_a_damaged_recv_names_its_socket_when_the_header_is_intact(
    wire: bytes, connect_id: int | None
) -> None:
    (error,) = decode(wire)
    assert isinstance(error, ProtocolError) and error.connect_id == connect_id


def test_bare_text_data_beginning_with_a_quote_is_read_as_quoted() -> None:
    # Inherent ambiguity: the module quotes text data (the note's example), so a leading
    # '"' opens a quoted field. Guessing "bare" instead once delivered truncated URCs as
    # data (seen as corruption in a soak): a damaged URC must be an error, never data.
    events = decode(b'\r\n+QSSLURC: "recv",1,1,1,"\r\n\r\nOK\r\n', c1=DataFormat.TEXT)
    assert [type(e) for e in events] == [ProtocolError, FinalResult]
    truncated = b'\r\n+QSSLURC: "recv",1,1,10,"abc\r\n\r\n+QSSLSEND: 1,1,0\r\n\r\nOK\r\n'
    assert not any(isinstance(e, RecvUrc) for e in decode(truncated, c1=DataFormat.TEXT))


# --------------------------------------------------------------------------- module profiles


def test_a_bc660k_decoder_takes_its_own_ids_and_limits() -> None:
    decoder = ATDecoder(profile=BC660K)
    data = bytes(range(256)) * 5 + bytes(120)  # 1400 bytes: over the BC26's 650 in hex
    urc = b'\r\n+QSSLURC: "recv",0,0,1400,"' + data.hex().encode() + b'"\r\n'
    assert decoder.feed(urc) == [RecvUrc(0, data)]
    # Context 1 / socket 1 are the BC26's; on a BC660K they are nobody's.
    events = decoder.feed(b'\r\n+QSSLURC: "recv",1,0,2,"6869"\r\n+QSSLURC: "closed",0,1\r\n')
    assert [type(e) for e in events] == [ProtocolError, ProtocolError]
    assert decoder.feed(b'\r\n+QSSLURC: "closed",0,0\r\n') == [ClosedUrc(0)]


@pytest.mark.parametrize("written", [b"3", b"-3"])
def test_result_codes_of_either_sign_mean_the_same(written: bytes) -> None:
    # The BC660K's note prints 1..9 without the sign the BC26 writes.
    decoder = ATDecoder(profile=BC660K)
    events = decoder.feed(b"\r\n+QSSLOPEN: 0,0," + written + b"\r\n+QSSLSEND: 0,0,0\r\n")
    assert events == [OpenResult(0, -3), SendResult(0, 0)]


def test_damage_on_a_bc660k_touches_its_one_socket() -> None:
    decoder = ATDecoder(profile=BC660K)
    events = decoder.feed(b'\r\n+QSSLURC: "cl0sed",0,0\r\n+QSSLURB: "recv",0,0,2,"4142"\r\n')
    errors = [e for e in events if isinstance(e, ProtocolError)]
    assert [e.sockets for e in errors] == [(0,), (0,)]
