"""The checks on an open connection to the echo server: the send limit, hex and text round
trips, a second send before the first's result, and the shortest prompt wait."""

from __future__ import annotations

from bridged.core.at_codec import SendResult
from bridged.tools.selftest.findings import Selftest
from bridged.tools.selftest.script import DATA_ASSUMPTIONS
from bridged.tools.selftest.socket_commands import (
    close_socket,
    collect_echo,
    configure,
    open_socket,
    recv_quoting,
    send,
    send_result,
    upload,
)


def check_data(t: Selftest) -> None:
    echo = t.options.echo
    keys = ("send.limit", "recv.hex", "pipelining", "prompt_wait", "recv.text")
    if echo is None:
        for key in keys:
            t.skip(key, DATA_ASSUMPTIONS[key], "needs --echo")
        return
    line, data = t.line, t.sockets.data
    if data in (t.sockets.wrong_ca, t.sockets.client_cert_missing):
        # One socket for everything: the open checks replaced its CA.
        for kind, pem in t.upload_files.items():
            upload(line, data, kind, pem)
    configure(line, data, seclevel=2, dataformat="1,1")
    line.set_recv_format(data, True)
    code = open_socket(line, data, echo.host, echo.port)
    t.add(
        "open.success",
        "seclevel 2 with the given CA, certificate and key opens (+QSSLOPEN ...,0)",
        f"+QSSLOPEN code {code}",
        code == 0,
        code,
    )
    if code != 0:
        for key in keys:
            t.skip(key, DATA_ASSUMPTIONS[key], "the test connection did not open")
        return
    check_send_limit(t)
    check_round_trip(t, hex_format=True)
    check_pipelining(t)
    check_prompt_wait(t)
    # Text format: reopen with dataformat 0,0 (a change may apply only at open).
    close_socket(line, data)
    configure(line, data, seclevel=2, dataformat="0,0")
    line.set_recv_format(data, False)
    if open_socket(line, data, echo.host, echo.port) == 0:
        check_round_trip(t, hex_format=False)
        close_socket(line, data)
    else:
        t.skip("recv.text", DATA_ASSUMPTIONS["recv.text"], "reopen in text format failed")
    quoted = recv_quoting(bytes(line.received))
    if quoted is not None:
        t.learned["recv_quoted"] = quoted


def check_send_limit(t: Selftest) -> None:
    limit = t.base.max_send_hex
    line, data = t.line, t.sockets.data
    r = line.data_command(f"AT+QSSLSEND={line.socket_ids(data)},{limit + 1}", b"", 0.0, timeout=3.0)
    over_refused = not r.prompted and r.final is not None and not r.final.ok
    if r.prompted:  # it asked for the data: give it, and see what happens
        line.finish_data(r, 2 * (limit + 1))
    t.add(
        "send.limit",
        DATA_ASSUMPTIONS["send.limit"],
        f"AT+QSSLSEND with {limit + 1} bytes (hex): "
        + ("refused at once" if over_refused else f"{'prompted' if r.prompted else r.outcome}"),
        over_refused,
        {"hex_max": limit, "over_limit": "refused" if over_refused else "accepted"},
    )


def check_round_trip(t: Selftest, hex_format: bool) -> None:
    line, data = t.line, t.sockets.data
    fmt = "hex" if hex_format else "text"
    size = t.base.max_send(hex_format)
    # Every byte value, quotes and line ends included: text sends are binary safe.
    payload = bytes((i * 7 + 13) % 256 for i in range(size))
    sent = send(line, data, payload, hex_format, prompt_wait=0.5)
    back, lengths = collect_echo(line, data, len(payload), timeout=15.0)
    largest = max(lengths, default=0)
    t.recv_lengths[fmt] = largest
    limit = t.base.max_recv(hex_format)
    ok = sent and back == payload and largest <= limit
    quoted = recv_quoting(bytes(line.received))
    t.add(
        f"recv.{fmt}",
        DATA_ASSUMPTIONS[f"recv.{fmt}"],
        f"sent {size} bytes: {'confirmed' if sent else 'FAILED'}; got {len(back)} back "
        f"{'intact' if back == payload else 'DIFFERENT'} in {len(lengths)} URC(s), largest "
        f"{largest} (profile max {limit}); data {'quoted' if quoted else 'bare'}",
        ok and quoted is True if t.base.recv_quoted else ok and quoted is False,
        {"largest": largest, "urcs": len(lengths), "intact": back == payload, "quoted": quoted},
    )


def check_pipelining(t: Selftest) -> None:
    line, data = t.line, t.sockets.data
    first, second = b"pipelined-1:" + bytes(20), b"pipelined-2:" + bytes(20)
    r1 = line.data_command(
        f"AT+QSSLSEND={line.socket_ids(data)},{len(first)}", first.hex().upper().encode(), 0.5
    )
    if not r1.ok:
        t.add("pipelining", DATA_ASSUMPTIONS["pipelining"], f"first send: {r1.outcome}", None, None)
        line.resync()
        return
    line.pump(0.01)
    already = any(isinstance(u, SendResult) and u.connect_id == data for u in line.urcs)
    r2 = line.data_command(
        f"AT+QSSLSEND={line.socket_ids(data)},{len(second)}", second.hex().upper().encode(), 0.5
    )
    results = [send_result(line, 10.0, data) for _ in range(2 if r2.ok else 1)]
    expected = first + (second if r2.ok else b"")
    back, _ = collect_echo(line, data, len(expected), timeout=10.0)
    if already:
        verdict: str = "inconclusive"
        observed = "the first send's result came before the second command: cannot tell"
    elif r2.prompted and r2.ok:
        verdict = "accepted"
        observed = (
            f"accepted; results {results}; echo {'intact' if back == expected else 'DIFFERENT'}"
        )
        t.learned["max_unconfirmed_sends"] = 2
    elif not r2.prompted and r2.final is not None and not r2.final.ok:
        verdict = "refused"
        observed = f"refused with {r2.outcome}; the first send's result {results}"
        t.learned["max_unconfirmed_sends"] = 1
    else:
        verdict = "inconclusive"
        observed = f"second send: {r2.outcome} after {'>' if r2.prompted else 'no >'}"
        line.resync()
    assumed = "accepted" if t.base.max_unconfirmed_sends > 1 else "refused"
    t.add(
        "pipelining",
        DATA_ASSUMPTIONS["pipelining"].replace("refused", assumed),
        observed,
        None if verdict == "inconclusive" else verdict == assumed,
        verdict,
    )


def check_prompt_wait(t: Selftest) -> None:
    line, data = t.line, t.sockets.data
    shortest: float | None = None
    lossy_at: float | None = None
    runs = []
    for step, wait in enumerate(t.options.prompt_steps):
        lost = False
        expected = bytearray()
        for n in range(t.options.sends_per_step):
            payload = f"wait {int(wait * 1000)} ms send {n}:".encode() + bytes([step, n]) * 8
            command = f"AT+QSSLSEND={line.socket_ids(data)},{len(payload)}"
            r = line.data_command(command, payload.hex().upper().encode(), wait, timeout=1.0)
            if r.final is None and r.prompted:
                line.finish_data(r, 2 * len(payload))
                lost = True
                break
            if not r.ok or send_result(line, 10.0, data) != 0:
                lost = True
                line.resync()
                break
            expected += payload
        back, _ = collect_echo(line, data, len(expected), timeout=1.0 if lost else 5.0)
        lost = lost or back != bytes(expected)
        runs.append({"wait_ms": round(wait * 1000), "lost": lost})
        if lost:
            lossy_at = wait
            line.pump(0.3)  # whatever the echo still returns of a broken run
            line.urcs.clear()
            break
        shortest = wait
    if shortest is None:
        t.add(
            "prompt_wait",
            DATA_ASSUMPTIONS["prompt_wait"],
            f"bytes lost even at {int(t.options.prompt_steps[0] * 1000)} ms",
            False,
            {"shortest_ms": None, "runs": runs},
        )
        return
    steps = t.options.prompt_steps
    index = steps.index(shortest)
    # One step of margin above the shortest wait that lost nothing.
    t.learned["prompt_delay"] = steps[max(index - 1, 0)]
    t.add(
        "prompt_wait",
        DATA_ASSUMPTIONS["prompt_wait"],
        f"shortest lossless wait {round(shortest * 1000)} ms"
        + (f" (lost bytes at {round(lossy_at * 1000)} ms)" if lossy_at is not None else "")
        + f"; {t.options.sends_per_step} sends per step",
        True,
        {"shortest_ms": round(shortest * 1000), "runs": runs},
    )
