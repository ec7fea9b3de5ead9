"""``bridged replay``'s correlation, pure: however the line split the bytes, and with or
without payloads, a trace replays to the same commands, answers and events."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridged.core.at_codec import ClosedUrc, OpenResult, ProtocolError, RecvUrc, SendResult
from bridged.core.serial_trace import HEADER, TraceRecorder, parse_trace
from bridged.tools.replay import Replay, replay_entries, replay_main

#: A dialogue: (who, bytes). Uploads, sends, async results, recv URCs both formats,
#: a URC inside a response, a damaged URC, a late answer.
DIALOGUE: list[tuple[str, bytes]] = [
    ("H", b"ATE0\r"),
    ("M", b"ATE0\r\n\r\nOK\r\n"),
    ("H", b'AT+QSSLCFG=1,0,"dataformat",1,1\r'),
    ("M", b"\r\nOK\r\n"),
    ("H", b'AT+QSSLCFG=1,2,"dataformat",0,0\r'),
    ("M", b"\r\nOK\r\n"),
    ("H", b'AT+QSSLCFG=1,0,"clientkey"\r'),
    ("M", b"\r\n> "),
    ("H", b"-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n\x1a"),
    ("M", b'\r\n+QSSLCFG: 1,0,"clientkey",60\r\n\r\nOK\r\n'),
    ("H", b'AT+QSSLOPEN=1,0,"h.example",443,0\r'),
    ("M", b"\r\nOK\r\n"),
    ("M", b"\r\n+QSSLOPEN: 1,0,0\r\n"),
    ("H", b"AT+QSSLSEND=1,0,3\r"),
    ("M", b"\r\n> "),
    ("H", b"414243"),
    ("M", b"\r\nOK\r\n\r\n+QSSLSEND: 1,0,0\r\n"),
    ("M", b'\r\n+QSSLURC: "recv",1,0,3,"414243"\r\n'),
    ("H", b"AT+CSQ\r"),
    ("M", b'\r\n+CSQ: 22,99\r\n\r\n+QSSLURC: "recv",1,2,6,"a\r\nOK\r"\r\n\r\nOK\r\n'),
    ("M", b'\r\n+QSSLURC: "recv",1,0,9999,"00"\r\n'),
    ("M", b'\r\n+QSSLURC: "closed",1,0\r\n'),
    ("M", b"\r\nOK\r\n"),
]


def _record(keep: bool, cuts: list[int]) -> list[str]:
    recorder = TraceRecorder(keep_payload=keep)
    lines: list[str] = []
    cut_iter = iter(cuts)
    for n, (who, data) in enumerate(DIALOGUE):
        cut = next(cut_iter, 0) % (len(data) + 1)
        for part in (data[:cut], data[cut:]):
            if part:
                feed = recorder.host_wrote if who == "H" else recorder.module_sent
                lines += feed(part, float(n))
    return lines


def _summary(keep: bool, cuts: list[int]) -> tuple[object, ...]:
    replay = replay_entries(parse_trace(_record(keep, cuts)))
    events = [
        ("recv", e.connect_id, len(e.data)) if isinstance(e, RecvUrc) else e for e in replay.events
    ]
    return tuple(replay.commands), tuple(events), replay.protocol_errors, replay.unmatched


def test_the_dialogue_replays_as_it_happened() -> None:
    replay = replay_entries(parse_trace(_record(True, [])))
    assert replay.commands[-1] == ("AT+CSQ", "OK")
    assert ('AT+QSSLCFG=1,0,"clientkey"', "OK") in replay.commands
    assert replay.events == [
        OpenResult(0, 0),
        SendResult(0, 0),
        RecvUrc(0, b"ABC"),
        RecvUrc(2, b"a\r\nOK\r"),
        ProtocolError(
            "bad_recv_length", "recv length 9999 on socket 0 outside 1..650 (hex format)", 0
        ),
        ClosedUrc(0),
    ]
    assert (replay.protocol_errors, replay.unmatched) == (1, 1)  # the last OK: a late answer
    answered = [line for line in replay.lines if "answers AT+QSSL" in line]
    assert len(answered) == 2 and "answers AT+QSSLOPEN=1,0," in answered[0]


@settings(max_examples=100)
@given(st.lists(st.integers(0, 200), max_size=len(DIALOGUE)), st.booleans())
def test_any_split_with_or_without_payload_replays_the_same(cuts: list[int], keep: bool) -> None:
    assert _summary(keep, cuts) == _summary(True, [])


def test_no_secret_reaches_the_trace() -> None:
    for keep, cuts in itertools.product((True, False), ([], [5] * len(DIALOGUE))):
        assert "SECRET" not in "".join(_record(keep, cuts))


def _replay(dialogue: list[tuple[str, bytes]]) -> Replay:
    recorder = TraceRecorder()
    lines = recorder.note("port opened", 0.0)
    for n, (who, data) in enumerate(dialogue, 1):
        lines += (recorder.host_wrote if who == "H" else recorder.module_sent)(data, n / 10)
    return replay_entries(parse_trace(lines))


def test_the_session_decides_after_a_boot_sign_not_a_second_matcher() -> None:
    # The port opens as the module boots: the boot sign fails the AT on the wire, its
    # OK is nobody's, the session probes, then the daemon's init retries AT.
    replay = _replay(
        [
            ("H", b"AT\r"),
            ("M", b"\r\n+CPIN: READY\r\n"),
            ("M", b"\r\nOK\r\n"),
            ("H", b"AT+QSCLK?\r"),
            ("M", b"\r\n+QSCLK: 1\r\n\r\nOK\r\n"),
            ("H", b"AT\r"),
            ("M", b"\r\nOK\r\n"),
        ]
    )
    assert replay.commands == [("AT", "failed"), ("AT", "OK")]
    assert replay.observed == [("AT", "ok")]
    assert replay.unmatched == 1  # the first AT's OK, discarded as the daemon did
    assert not any("would not write" in line for line in replay.lines)
    assert any("AT+QSCLK?  (resync probe)" in line for line in replay.lines)


def test_a_timeout_is_read_from_the_host_moving_on() -> None:
    replay = _replay(
        [
            ("H", b"AT+QSSLSEND=1,0,2\r"),
            ("M", b"\r\n> "),
            ("H", b"4142"),
            ("H", b"\x1b"),  # no result: the daemon timed out, cancelled and probed
            ("H", b"AT+QSCLK?\r"),
            ("M", b"\r\n+QSCLK: 1\r\n\r\nOK\r\n"),
            ("H", b"AT+CSQ\r"),
            ("M", b"\r\n+CSQ: 22,99\r\n\r\nOK\r\n"),
        ]
    )
    assert replay.commands == [("AT+QSSLSEND=1,0,2", "timeout"), ("AT+CSQ", "OK")]
    assert replay.observed == [("AT+QSSLSEND", "timeout"), ("AT+CSQ", "ok")]
    assert replay.unmatched == 0 and replay.protocol_errors == 0


#: A BC660K-GL's dialogue: contextID 0, its one socket 0, a recv longer than a BC26's 650.
BC660K_DIALOGUE: list[tuple[str, bytes]] = [
    ("H", b'AT+QSSLCFG=0,0,"dataformat",0,1\r'),
    ("M", b"\r\nOK\r\n"),
    ("H", b'AT+QSSLOPEN=0,0,"h.example",443,0\r'),
    ("M", b"\r\nOK\r\n\r\n+QSSLOPEN: 0,0,0\r\n"),
    ("H", b"AT+QSSLSEND=0,0,2\r"),
    ("M", b"\r\n> "),
    ("H", b"hi"),
    ("M", b"\r\nOK\r\n\r\n+QSSLSEND: 0,0,0\r\n"),
    ("M", b'\r\n+QSSLURC: "recv",0,0,1400,"' + b"41" * 1400 + b'"\r\n'),
    ("M", b'\r\n+QSSLURC: "closed",0,0\r\n'),
]


def test_a_bc660k_trace_replays_with_its_own_ids() -> None:
    """The trace's own QSSL commands name the module's context: no --model needed."""
    replay = _replay(BC660K_DIALOGUE)
    assert replay.events == [
        OpenResult(0, 0),
        SendResult(0, 0),
        RecvUrc(0, b"A" * 1400),
        ClosedUrc(0),
    ]
    assert (replay.protocol_errors, replay.unmatched) == (0, 0)
    assert any("answers AT+QSSLOPEN=0,0," in line for line in replay.lines)


def test_model_option_reads_a_trace_that_begins_mid_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a host command to learn from, ``--model`` says which module spoke."""
    trace = tmp_path / "serial.trace"
    recorder = TraceRecorder()
    lines = [HEADER]
    for n, data in enumerate(
        (b'\r\n+QSSLURC: "recv",0,0,2,"4142"\r\n', b'\r\n+QSSLURC: "closed",0,0\r\n')
    ):
        lines += recorder.module_sent(data, float(n))
    trace.write_text("\n".join(lines) + "\n")
    assert replay_main([str(trace)]) == 1  # read as a BC26: unknown socket 0,0
    capsys.readouterr()
    assert replay_main(["--model", "bc660k", str(trace)]) == 0
    out = capsys.readouterr().out
    assert '+QSSLURC: "recv" socket 0, 2 bytes' in out and " 0 protocol error(s)" in out
