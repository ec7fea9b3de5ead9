"""The decoder's recv fast path (issue 14) changes speed only: on any stream, intact or
damaged, split anywhere, it yields exactly the events and errors of the general way."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridged.core import at_codec
from bridged.core.at_codec import ATDecoder, DataFormat, Event, RecvUrc
from tests.test_at_codec import recv_hex, recv_text


def decode_in_chunks(wire: bytes, cuts: list[int], fast: bool) -> list[Event]:
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    if not fast:
        decoder._fast_recv = lambda events: at_codec._GENERAL  # type: ignore[method-assign]
    events: list[Event] = []
    last = 0
    for cut in [*sorted(c % (len(wire) + 1) for c in cuts), len(wire)]:
        events += decoder.feed(wire[last:cut])
        last = max(last, cut)
    return events


@st.composite
def damaged_streams(draw: st.DrawFn) -> bytes:
    """Recv URCs on sockets 0 (hex) and 1 (text) between other lines, some damaged."""
    wire = b""
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["hex", "text", "line", "prompt"]))
        if kind == "hex":
            piece = recv_hex(
                draw(st.sampled_from([0, 0, 1, 7])), draw(st.binary(min_size=1, max_size=700))
            )
        elif kind == "text":
            piece = recv_text(
                draw(st.sampled_from([1, 1, 0])), draw(st.binary(min_size=1, max_size=1400))
            )
        elif kind == "line":
            piece = draw(st.sampled_from([b"\r\nOK\r\n", b"\r\nERROR\r\n", b"\r\n+CSQ: 9,0\r\n"]))
        else:
            piece = b"\r\n> "
        if draw(st.booleans()):  # damage: a byte changed, dropped or added
            last = len(piece) - 1  # mostly the header and the end, where the checks are
            at = draw(
                st.one_of(st.integers(0, 30), st.integers(last - 4, last), st.integers(0, last))
            )
            at = min(max(at, 0), last)
            byte = bytes([draw(st.sampled_from([0x22, 0x0D, 0x0A, 0x20, 0x31, 0x47]))])
            how = draw(st.integers(0, 2))
            rest = piece[at + (how < 2) :]
            piece = piece[:at] + (b"" if how == 1 else byte) + rest
        wire += piece
    return wire


@settings(max_examples=400)
@given(damaged_streams(), st.lists(st.integers(min_value=0), max_size=30))
def test_fast_path_yields_the_general_ways_events(wire: bytes, cuts: list[int]) -> None:
    # Same split both ways: an error's excerpt shows what was buffered, so it may differ
    # between splits in the general way too.
    general = decode_in_chunks(wire, cuts, fast=False)
    assert decode_in_chunks(wire, cuts, fast=True) == general


@pytest.mark.parametrize("quoted", [True, False])
def test_whole_urcs_in_one_read_take_the_fast_path(quoted: bool) -> None:
    """The fast path is really taken for intact URCs read whole (what makes it pay)."""
    decoder = ATDecoder()
    decoder.set_recv_format(1, DataFormat.TEXT)
    decoder._read_recv_header = lambda events: pytest.fail("general way taken")  # type: ignore[method-assign]
    wire = recv_hex(0, b"\x00\xff" * 325, quoted) + recv_text(1, b'\r\n"' * 433, quoted)
    assert decoder.feed(wire) == [RecvUrc(0, b"\x00\xff" * 325), RecvUrc(1, b'\r\n"' * 433)]
