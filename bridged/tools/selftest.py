"""``bridged selftest``: settle, against a real module, what bridged and its emulator assume.

Run with the daemon stopped (the port must be free). A fixed conformance script drives
the module; every check records the assumption, what the module did, and a verdict.
The outcome is a report (table or JSON), a module profile file for this module
(:mod:`bridged.core.module_profile`: base + what differed), and the full transcript (a serial
trace, :mod:`bridged.core.serial_trace`, which ``bridged replay`` reads).

Checks (in order): echo and ``ATE0``; ``ATI`` / ``AT+CGMR``; the ``AT+QSSLCFG`` read and
a table of range checks; malformed commands; certificate upload byte counts; with
``--echo``, the open result for a wrong CA, a missing client certificate, a closed
port, and (always) an unresolvable host; then on an open socket: the send limit, hex and
text round trips (recv quoting, largest lengths), whether a second send before the
first's result is accepted, and the shortest prompt wait that loses no byte.

The script is data where it is a list of things to try (:data:`RANGE_CHECKS`,
:data:`MALFORMED_COMMANDS`, :data:`PROMPT_STEPS`); the checks that need a dialogue are
functions, run in :data:`SCRIPT` order.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from bridged.config.module_profile_file import profile_yaml
from bridged.core.at_codec import ClosedUrc, OpenResult, RecvUrc, SendResult, Urc
from bridged.core.module_profile import (
    BC20,
    BC26,
    OPEN_SITUATIONS,
    ModuleProfile,
    detect_model,
)
from bridged.tools.selftest_line import Line, PortBusy, port_holders

CTRL_Z = b"\x1a"
#: An RFC 6761 name that never resolves.
UNRESOLVABLE_HOST = "bridged-selftest.invalid"
#: Prompt waits tried, longest first (seconds).
PROMPT_STEPS: tuple[float, ...] = (
    0.5,
    0.4,
    0.3,
    0.25,
    0.2,
    0.15,
    0.1,
    0.075,
    0.05,
    0.025,
    0.01,
    0.0,
)
#: (setting, value as written, accepted?) on a scratch socket; the note's ranges.
RANGE_CHECKS: tuple[tuple[str, str, bool], ...] = (
    ("seclevel", "0", True),
    ("seclevel", "2", True),
    ("seclevel", "3", False),
    ("sslversion", "0", True),
    ("sslversion", "1", True),
    ("sslversion", "2", True),
    ("sslversion", "3", True),
    ("sslversion", "4", True),
    ("sslversion", "5", False),
    ("dataformat", "0,0", True),
    ("dataformat", "1,1", True),
    ("dataformat", "2,0", False),
    ("timeout", "10", True),
    ("timeout", "300", True),
    ("timeout", "9", False),
    ("timeout", "301", False),
    ("debug", "0", True),
)
#: Commands the firmware must refuse at once with ERROR / +CME ERROR.
MALFORMED_COMMANDS: tuple[str, ...] = (
    'AT+QSSLOPEN=1,9,"example.com",443,0',
    "AT+QSSLSEND=1,0,0",
    'AT+QSSLCFG=1,0,"nosuchsetting",1',
    "AT+QSSLCLOSE=1",
    "AT+QSSLBOGUS",
)
READ_ALL_SETTINGS = (
    "seclevel",
    "sslversion",
    "dataformat",
    "timeout",
    "debug",
    "cacert",
    "clientcert",
    "clientkey",
)
SCRATCH_SOCKET = 5
#: Sockets of the open tests: failures on 1..3, the working connection on 0.
DNS_SOCKET, CLOSED_SOCKET, WRONG_CA_SOCKET, NO_CLIENT_CERT_SOCKET, DATA_SOCKET = 1, 1, 2, 3, 0
OPEN_TIMEOUT_SETTING = 20  # the sockets' "timeout" during the self-test (s)


class Verdict(Enum):
    AS_ASSUMED = "as assumed"
    DIFFERS = "differs"
    NOT_TESTED = "not tested"
    INCONCLUSIVE = "inconclusive"


@dataclass
class Finding:
    key: str
    assumption: str
    observed: str
    verdict: Verdict
    #: Machine-readable outcome (JSON), what tests and the profile use.
    value: Any = None

    def as_json(self) -> dict[str, Any]:
        return {
            "check": self.key,
            "assumption": self.assumption,
            "observed": self.observed,
            "verdict": self.verdict.value,
            "value": self.value,
        }


@dataclass
class EchoServer:
    host: str
    port: int
    cacert: Path
    clientcert: Path
    clientkey: Path
    closed_port: int


@dataclass
class SelftestOptions:
    model: str = "auto"
    echo: EchoServer | None = None
    sends_per_step: int = 6
    prompt_steps: tuple[float, ...] = PROMPT_STEPS


@dataclass
class Selftest:
    """One run's state: the line, the findings so far, what the profile learns."""

    line: Line
    options: SelftestOptions
    findings: list[Finding] = field(default_factory=list)
    base: ModuleProfile = BC26
    learned: dict[str, Any] = field(default_factory=dict)
    open_results: dict[str, int] = field(default_factory=dict)
    recv_lengths: dict[str, int] = field(default_factory=dict)
    upload_files: dict[str, bytes] = field(default_factory=dict)

    def add(self, key: str, assumption: str, observed: str, ok: bool | None, value: Any) -> None:
        verdict = (
            Verdict.INCONCLUSIVE if ok is None else Verdict.AS_ASSUMED if ok else Verdict.DIFFERS
        )
        self.findings.append(Finding(key, assumption, observed, verdict, value))

    def skip(self, key: str, assumption: str, why: str) -> None:
        self.findings.append(Finding(key, assumption, why, Verdict.NOT_TESTED, None))

    def profile(self) -> ModuleProfile:
        values = dict(self.learned)
        if self.open_results:
            values["open_results"] = {**self.base.open_results, **self.open_results}
        name = f"{self.base.name}-selftest"
        return dataclasses.replace(self.base, name=name, **values)


# --------------------------------------------------------------------------- checks


def check_echo(t: Selftest) -> None:
    first = t.line.command("AT")
    off = t.line.command("ATE0")
    after = t.line.command("AT")
    ok = off.ok and not after.echoed
    t.add(
        "echo",
        "commands are echoed until ATE0, which turns echo off",
        f"echo at start: {'on' if first.echoed else 'off'}; ATE0: {off.outcome}; "
        f"echo after: {'on' if after.echoed else 'off'}",
        ok,
        {"at_start": first.echoed, "ate0": off.outcome, "after_ate0": after.echoed},
    )


def check_firmware(t: Selftest) -> None:
    ati = t.line.command("ATI")
    cgmr = t.line.command("AT+CGMR")
    text = " ".join(ati.lines)
    found = detect_model(text)  # module_profile's one reading of ATI
    # The self-test's sockets and commands are the BC26/BC20's (six sockets, context 1).
    detected = found.name if found in (BC26, BC20) else None
    wanted = t.options.model
    if wanted != "auto":
        t.base = {"bc26": BC26, "bc20": BC20}[wanted]
    elif detected is not None:
        t.base = {"bc26": BC26, "bc20": BC20}[detected]
    t.add(
        "firmware",
        "ATI names a Quectel BC26 or BC20",
        f"ATI: {' / '.join(ati.lines) or ati.outcome}; AT+CGMR: "
        f"{' / '.join(cgmr.lines) or cgmr.outcome}; profile base {t.base.name}",
        detected is not None,
        {"ati": ati.lines, "cgmr": cgmr.lines if cgmr.ok else None, "model": detected},
    )


def check_settings_read(t: Selftest) -> None:
    r = t.line.command(f"AT+QSSLCFG=1,{SCRATCH_SOCKET}")
    names = []
    values: dict[str, str] = {}
    for text in r.lines:
        m = re.match(r'\+QSSLCFG: ?\d+,\d+,"([^"]+)",(.*)$', text)
        if m:
            names.append(m.group(1))
            values[m.group(1)] = m.group(2)
    ok = r.ok and tuple(names) == READ_ALL_SETTINGS
    t.add(
        "qsslcfg.read",
        f"AT+QSSLCFG=1,<id> lists {', '.join(READ_ALL_SETTINGS)}",
        f"{r.outcome}: {', '.join(f'{n}={v}' for n, v in values.items()) or 'no lines'}",
        ok,
        values,
    )


def check_ranges(t: Selftest) -> None:
    results = {}
    wrong = []
    for name, value, expected in RANGE_CHECKS:
        accepted = t.line.command(f'AT+QSSLCFG=1,{SCRATCH_SOCKET},"{name}",{value}').ok
        results[f"{name}={value}"] = accepted
        if accepted != expected:
            wrong.append(f"{name}={value} {'accepted' if accepted else 'refused'}")
    versions = [
        int(k.split("=")[1]) for k, ok in results.items() if k.startswith("sslversion") and ok
    ]
    t.learned["ssl_versions"] = tuple(versions)
    t.add(
        "qsslcfg.ranges",
        "QSSLCFG takes seclevel 0-2, sslversion 0-4, dataformat 0/1,0/1, timeout 10-300",
        "; ".join(wrong) or f"all {len(RANGE_CHECKS)} as the note says",
        not wrong,
        {**results, "ssl_versions": versions},
    )
    _reset_socket_settings(t, SCRATCH_SOCKET)


def check_malformed(t: Selftest) -> None:
    answers = {}
    for command in MALFORMED_COMMANDS:
        r = t.line.command(command, timeout=3.0)
        answers[command] = r.outcome
    bad = [c for c, a in answers.items() if a == "OK" or a == "no answer"]
    t.add(
        "malformed",
        "malformed commands are refused at once (ERROR or +CME ERROR)",
        "; ".join(f"{c} → {a}" for c, a in answers.items()),
        not bad,
        answers,
    )


def check_uploads(t: Selftest) -> None:
    echo = t.options.echo
    files = (
        {"cacert": echo.cacert, "clientcert": echo.clientcert, "clientkey": echo.clientkey}
        if echo
        else {}
    )
    contents = {kind: path.read_bytes() for kind, path in files.items()}
    if not contents:
        contents = {"cacert": _throwaway_ca_pem()}
    t.upload_files = contents
    counts = {}
    mismatched = []
    for kind, pem in contents.items():
        counted = upload(t.line, DATA_SOCKET, kind, pem)
        counts[kind] = {"sent": len(pem), "counted": counted}
        if counted != len(pem):
            mismatched.append(f"{kind}: sent {len(pem)}, module counted {counted}")
    t.add(
        "upload",
        "an upload answers the number of bytes received, the file's size",
        "; ".join(mismatched) or ", ".join(f"{k} {v['sent']} bytes" for k, v in counts.items()),
        not mismatched,
        counts,
    )


def check_opens(t: Selftest) -> None:
    """Provoke each open failure; the profile's code for it is what the module said."""
    echo = t.options.echo
    line = t.line
    _configure(line, DNS_SOCKET, seclevel=0)
    _open_case(t, "dns_failure", DNS_SOCKET, UNRESOLVABLE_HOST, 443)
    if echo is None:
        for situation in ("port_closed", "wrong_ca", "client_cert_missing"):
            t.skip(f"open.{situation}", _open_assumption(t, situation), "needs --echo")
        return
    _open_case(t, "port_closed", CLOSED_SOCKET, echo.host, echo.closed_port)
    _configure(line, WRONG_CA_SOCKET, seclevel=1)
    upload(line, WRONG_CA_SOCKET, "cacert", _throwaway_ca_pem())
    _open_case(t, "wrong_ca", WRONG_CA_SOCKET, echo.host, echo.port)
    _configure(line, NO_CLIENT_CERT_SOCKET, seclevel=1)
    upload(line, NO_CLIENT_CERT_SOCKET, "cacert", t.upload_files["cacert"])
    _open_case(t, "client_cert_missing", NO_CLIENT_CERT_SOCKET, echo.host, echo.port)


def check_data(t: Selftest) -> None:
    echo = t.options.echo
    keys = ("send.limit", "recv.hex", "pipelining", "prompt_wait", "recv.text")
    if echo is None:
        for key in keys:
            t.skip(key, _DATA_ASSUMPTIONS[key], "needs --echo")
        return
    line = t.line
    _configure(line, DATA_SOCKET, seclevel=2, dataformat="1,1")
    line.set_recv_format(DATA_SOCKET, True)
    code = open_socket(line, DATA_SOCKET, echo.host, echo.port)
    t.add(
        "open.success",
        "seclevel 2 with the given CA, certificate and key opens (+QSSLOPEN ...,0)",
        f"+QSSLOPEN code {code}",
        code == 0,
        code,
    )
    if code != 0:
        for key in keys:
            t.skip(key, _DATA_ASSUMPTIONS[key], "the test connection did not open")
        return
    _check_send_limit(t)
    _check_round_trip(t, hex_format=True)
    _check_pipelining(t)
    _check_prompt_wait(t)
    # Text format: reopen with dataformat 0,0 (a change may apply only at open).
    close_socket(line, DATA_SOCKET)
    _configure(line, DATA_SOCKET, seclevel=2, dataformat="0,0")
    line.set_recv_format(DATA_SOCKET, False)
    if open_socket(line, DATA_SOCKET, echo.host, echo.port) == 0:
        _check_round_trip(t, hex_format=False)
        close_socket(line, DATA_SOCKET)
    else:
        t.skip("recv.text", _DATA_ASSUMPTIONS["recv.text"], "reopen in text format failed")
    quoted = _recv_quoting(bytes(line.received))
    if quoted is not None:
        t.learned["recv_quoted"] = quoted


SCRIPT: tuple[Callable[[Selftest], None], ...] = (
    check_echo,
    check_firmware,
    check_settings_read,
    check_ranges,
    check_malformed,
    check_uploads,
    check_opens,
    check_data,
)

_DATA_ASSUMPTIONS = {
    "send.limit": "a fixed-length send takes up to the profile's maximum, no more",
    "recv.hex": "hex recv data comes back complete, quoted, at most the profile's length",
    "recv.text": "text recv data comes back complete, quoted, at most the profile's length",
    "pipelining": "a second QSSLSEND before the first's +QSSLSEND result is refused (ERROR)",
    "prompt_wait": "a 500 ms wait after '>' loses no byte",
}


# --------------------------------------------------------------------------- data checks


def _check_send_limit(t: Selftest) -> None:
    limit = t.base.max_send_hex
    line = t.line
    r = line.data_command(f"AT+QSSLSEND=1,{DATA_SOCKET},{limit + 1}", b"", 0.0, timeout=3.0)
    over_refused = not r.prompted and r.final is not None and not r.final.ok
    if r.prompted:  # it asked for the data: give it, and see what happens
        line.finish_data(r, 2 * (limit + 1))
    t.add(
        "send.limit",
        _DATA_ASSUMPTIONS["send.limit"],
        f"AT+QSSLSEND with {limit + 1} bytes (hex): "
        + ("refused at once" if over_refused else f"{'prompted' if r.prompted else r.outcome}"),
        over_refused,
        {"hex_max": limit, "over_limit": "refused" if over_refused else "accepted"},
    )


def _check_round_trip(t: Selftest, hex_format: bool) -> None:
    line = t.line
    fmt = "hex" if hex_format else "text"
    size = t.base.max_send(hex_format)
    # Every byte value, quotes and line ends included: text sends are binary safe.
    payload = bytes((i * 7 + 13) % 256 for i in range(size))
    sent = send(line, DATA_SOCKET, payload, hex_format, prompt_wait=0.5)
    back, lengths = collect_echo(line, DATA_SOCKET, len(payload), timeout=15.0)
    largest = max(lengths, default=0)
    t.recv_lengths[fmt] = largest
    limit = t.base.max_recv(hex_format)
    ok = sent and back == payload and largest <= limit
    quoted = _recv_quoting(bytes(line.received))
    t.add(
        f"recv.{fmt}",
        _DATA_ASSUMPTIONS[f"recv.{fmt}"],
        f"sent {size} bytes: {'confirmed' if sent else 'FAILED'}; got {len(back)} back "
        f"{'intact' if back == payload else 'DIFFERENT'} in {len(lengths)} URC(s), largest "
        f"{largest} (profile max {limit}); data {'quoted' if quoted else 'bare'}",
        ok and quoted is True if t.base.recv_quoted else ok and quoted is False,
        {"largest": largest, "urcs": len(lengths), "intact": back == payload, "quoted": quoted},
    )


def _check_pipelining(t: Selftest) -> None:
    line = t.line
    first, second = b"pipelined-1:" + bytes(20), b"pipelined-2:" + bytes(20)
    r1 = line.data_command(
        f"AT+QSSLSEND=1,{DATA_SOCKET},{len(first)}", first.hex().upper().encode(), 0.5
    )
    if not r1.ok:
        t.add(
            "pipelining", _DATA_ASSUMPTIONS["pipelining"], f"first send: {r1.outcome}", None, None
        )
        line.resync()
        return
    line.pump(0.01)
    already = any(isinstance(u, SendResult) and u.connect_id == DATA_SOCKET for u in line.urcs)
    r2 = line.data_command(
        f"AT+QSSLSEND=1,{DATA_SOCKET},{len(second)}", second.hex().upper().encode(), 0.5
    )
    results = [_send_result(line, 10.0) for _ in range(2 if r2.ok else 1)]
    expected = first + (second if r2.ok else b"")
    back, _ = collect_echo(line, DATA_SOCKET, len(expected), timeout=10.0)
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
        _DATA_ASSUMPTIONS["pipelining"].replace("refused", assumed),
        observed,
        None if verdict == "inconclusive" else verdict == assumed,
        verdict,
    )


def _check_prompt_wait(t: Selftest) -> None:
    line = t.line
    shortest: float | None = None
    lossy_at: float | None = None
    runs = []
    for step, wait in enumerate(t.options.prompt_steps):
        lost = False
        expected = bytearray()
        for n in range(t.options.sends_per_step):
            payload = f"wait {int(wait * 1000)} ms send {n}:".encode() + bytes([step, n]) * 8
            command = f"AT+QSSLSEND=1,{DATA_SOCKET},{len(payload)}"
            r = line.data_command(command, payload.hex().upper().encode(), wait, timeout=1.0)
            if r.final is None and r.prompted:
                line.finish_data(r, 2 * len(payload))
                lost = True
                break
            if not r.ok or _send_result(line, 10.0) != 0:
                lost = True
                line.resync()
                break
            expected += payload
        back, _ = collect_echo(line, DATA_SOCKET, len(expected), timeout=1.0 if lost else 5.0)
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
            _DATA_ASSUMPTIONS["prompt_wait"],
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
        _DATA_ASSUMPTIONS["prompt_wait"],
        f"shortest lossless wait {round(shortest * 1000)} ms"
        + (f" (lost bytes at {round(lossy_at * 1000)} ms)" if lossy_at is not None else "")
        + f"; {t.options.sends_per_step} sends per step",
        True,
        {"shortest_ms": round(shortest * 1000), "runs": runs},
    )


# --------------------------------------------------------------------------- helpers


def upload(line: Line, connect_id: int, kind: str, pem: bytes) -> int | None:
    """Upload ``pem`` as ``kind``; the byte count the module answered (None: none)."""
    r = line.data_command(f'AT+QSSLCFG=1,{connect_id},"{kind}"', pem + CTRL_Z, 0.5, timeout=10.0)
    for text in r.lines:
        m = re.match(rf'\+QSSLCFG: ?\d+,{connect_id},"{kind}",(\d+)', text)
        if m:
            return int(m.group(1))
    return None


def send(line: Line, connect_id: int, payload: bytes, hex_format: bool, prompt_wait: float) -> bool:
    data = payload.hex().upper().encode() if hex_format else payload
    r = line.data_command(f"AT+QSSLSEND=1,{connect_id},{len(payload)}", data, prompt_wait)
    return r.ok and _send_result(line, 15.0, connect_id) == 0


def open_socket(line: Line, connect_id: int, host: str, port: int) -> int | None:
    r = line.command(f'AT+QSSLOPEN=1,{connect_id},"{host}",{port},0')
    if not r.ok:
        return None
    urc = line.wait_urc(
        lambda u: isinstance(u, OpenResult) and u.connect_id == connect_id,
        OPEN_TIMEOUT_SETTING + 10,
    )
    # Results and data of this socket's previous connection (a send's -2 after its
    # close, say) must not be taken for the new one's.
    line.urcs = deque(
        u
        for u in line.urcs
        if not (isinstance(u, SendResult | RecvUrc | ClosedUrc) and u.connect_id == connect_id)
    )
    return urc.err if isinstance(urc, OpenResult) else None


def close_socket(line: Line, connect_id: int) -> None:
    line.command(f"AT+QSSLCLOSE=1,{connect_id}")
    line.pump(0.2)
    line.urcs.clear()


def collect_echo(line: Line, connect_id: int, want: int, timeout: float) -> tuple[bytes, list[int]]:
    """Received data on ``connect_id`` until ``want`` bytes or ``timeout``; and the
    length of each recv URC."""
    data = bytearray()
    lengths: list[int] = []

    def is_recv(u: Urc) -> bool:
        return isinstance(u, RecvUrc) and u.connect_id == connect_id

    deadline = time.monotonic() + timeout
    while len(data) < want:
        urc = line.wait_urc(is_recv, max(0.0, deadline - time.monotonic()))
        if not isinstance(urc, RecvUrc):
            break
        data += urc.data
        lengths.append(len(urc.data))
    return bytes(data), lengths


def _send_result(line: Line, timeout: float, connect_id: int = DATA_SOCKET) -> int | None:
    urc = line.wait_urc(lambda u: isinstance(u, SendResult) and u.connect_id == connect_id, timeout)
    return urc.err if isinstance(urc, SendResult) else None


def _configure(line: Line, connect_id: int, seclevel: int, dataformat: str = "1,1") -> None:
    for name, value in (
        ("seclevel", str(seclevel)),
        ("sslversion", "4"),
        ("dataformat", dataformat),
        ("timeout", str(OPEN_TIMEOUT_SETTING)),
    ):
        line.command(f'AT+QSSLCFG=1,{connect_id},"{name}",{value}')


def _reset_socket_settings(t: Selftest, connect_id: int) -> None:
    for name, value in (("seclevel", "0"), ("sslversion", "4"), ("dataformat", "0,0")):
        t.line.command(f'AT+QSSLCFG=1,{connect_id},"{name}",{value}')
    t.line.command(f'AT+QSSLCFG=1,{connect_id},"timeout",90')


def _open_assumption(t: Selftest, situation: str) -> str:
    return f"+QSSLOPEN code {t.base.open_result(situation)} ({t.base.name} profile)"


def _open_case(t: Selftest, situation: str, connect_id: int, host: str, port: int) -> None:
    code = open_socket(t.line, connect_id, host, port)
    assumed = t.base.open_result(situation)
    if code == 0:
        close_socket(t.line, connect_id)
        t.add(
            f"open.{situation}",
            _open_assumption(t, situation),
            "the open succeeded: this failure was not provoked",
            None,
            code,
        )
        return
    if code is not None:
        t.open_results[situation] = code
    t.add(
        f"open.{situation}",
        _open_assumption(t, situation),
        f"+QSSLOPEN code {code}" if code is not None else "no +QSSLOPEN result",
        None if code is None else code == assumed,
        code,
    )


_RECV_QUOTING = re.compile(rb'\+QSSLURC: ?"recv",\d+,\d+,\d+,(")?')


def _recv_quoting(received: bytes) -> bool | None:
    """True if every recv URC seen had quoted data, False if none did, None: no URC or
    both kinds."""
    kinds = {m.group(1) is not None for m in _RECV_QUOTING.finditer(received)}
    return kinds.pop() if len(kinds) == 1 else None


def _throwaway_ca_pem() -> bytes:
    """A CA certificate that signed nothing anywhere: for upload counts and wrong-CA."""
    import trustme

    ca = trustme.CA(
        key_type=trustme.KeyType.RSA, organization_name="bridged selftest (signs nothing)"
    )
    return bytes(ca.cert_pem.bytes())


# --------------------------------------------------------------------------- running


def run_selftest(line: Line, options: SelftestOptions) -> Selftest:
    """The whole script on an opened line. Never raises for what the module does."""
    t = Selftest(line, options)
    line.note("selftest begins")
    line.drain()
    if not line.resync():
        t.add("sync", "the module answers AT with OK", "no OK to AT after 4 tries", False, None)
        return t
    for check in SCRIPT:
        line.note(f"check {check.__name__}")
        check(t)
    for connect_id in sorted({DNS_SOCKET, WRONG_CA_SOCKET, NO_CLIENT_CERT_SOCKET, DATA_SOCKET}):
        close_socket(line, connect_id)
        _reset_socket_settings(t, connect_id)
    line.note("selftest ends")
    return t


def report_table(t: Selftest) -> str:
    rows = [("check", "verdict", "assumption", "observed")]
    rows += [(f.key, f.verdict.value, f.assumption, f.observed) for f in t.findings]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    out = []
    for key, verdict, assumption, observed in rows:
        out.append(f"{key:<{widths[0]}}  {verdict:<{widths[1]}}  {assumption}")
        out.append(f"{'':<{widths[0]}}  {'':<{widths[1]}}  → {observed}")
    return "\n".join(out)


def report_json(t: Selftest, profile_text: str) -> dict[str, Any]:
    return {
        "base": t.base.name,
        "findings": [f.as_json() for f in t.findings],
        "differs": [f.key for f in t.findings if f.verdict is Verdict.DIFFERS],
        "profile": profile_text,
    }


def _parse_echo(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bridged selftest",
        description="Check a real module against what bridged assumes (daemon stopped).",
    )
    p.add_argument("--device", required=True, help="serial device of the module")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--model", choices=["auto", "bc26", "bc20"], default="auto")
    p.add_argument("--echo", type=_parse_echo, metavar="HOST:PORT", help="a TLS echo server")
    p.add_argument("--cacert", type=Path, help="CA that signed the echo server")
    p.add_argument("--clientcert", type=Path, help="client certificate the echo server trusts")
    p.add_argument("--clientkey", type=Path, help="its key")
    p.add_argument(
        "--closed-port", type=int, default=1, help="a port on the echo host nothing listens on"
    )
    p.add_argument("--sends-per-step", type=int, default=6, help="sends per prompt-wait step")
    p.add_argument("--out", type=Path, help="directory for report, profile, transcript")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def selftest_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    echo = None
    if args.echo:
        missing = [n for n in ("cacert", "clientcert", "clientkey") if getattr(args, n) is None]
        if missing:
            print(f"bridged selftest: --echo needs --{', --'.join(missing)}", file=sys.stderr)
            return 2
        echo = EchoServer(
            args.echo[0],
            args.echo[1],
            args.cacert,
            args.clientcert,
            args.clientkey,
            args.closed_port,
        )
    holders = port_holders(args.device)
    if holders:
        who = "; ".join(f"pid {pid}: {command}" for pid, command in holders)
        print(
            f"bridged selftest: {args.device} is in use ({who}); stop it first "
            "(systemctl stop bridged)",
            file=sys.stderr,
        )
        return 3
    out = args.out or Path(time.strftime("selftest-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    options = SelftestOptions(model=args.model, echo=echo, sends_per_step=args.sends_per_step)
    try:
        t, profile_text = run_on_device(args.device, args.baud, options, out)
    except PortBusy as exc:
        print(f"bridged selftest: {exc}", file=sys.stderr)
        return 3
    report = report_json(t, profile_text)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    table = report_table(t)
    (out / "report.txt").write_text(table + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(table)
        print(f"\nprofile: {out / 'module-profile.yaml'}\ntranscript: {out / 'transcript.trace'}")
    return 1 if report["differs"] else 0


def run_on_device(
    device: str, baud: int, options: SelftestOptions, out: Path
) -> tuple[Selftest, str]:
    """Open the port, run the script, write ``transcript.trace`` and
    ``module-profile.yaml`` under ``out``; the run and the profile text."""
    import serial

    from bridged.shell.serial_access import DeviceBusy, UucpLock
    from bridged.shell.serial_tap import TraceFile

    # The daemon's UUCP lock (and minicom's) keeps them off the port while we test.
    lock = UucpLock(device)
    try:
        lock.acquire()
    except DeviceBusy as exc:
        raise PortBusy(f"{device} is {exc}") from None
    try:
        port = serial.Serial(device, baud, timeout=0.02, exclusive=True)
    except (serial.SerialException, OSError) as exc:
        lock.release()
        raise PortBusy(f"cannot open {device}: {exc}") from None
    transcript = TraceFile(out / "transcript.trace", 10**9, f"bridged selftest on {device}")
    try:
        t = run_selftest(Line(port, transcript.write), options)
    finally:
        port.close()
        transcript.close()
        lock.release()
    comments = [
        f"written by bridged selftest on {time.strftime('%Y-%m-%d %H:%M:%S')} from {device}",
        *(f"{f.key}: {f.observed}" for f in t.findings if f.key == "firmware"),
    ]
    text = profile_yaml(t.profile(), t.base, comments)
    (out / "module-profile.yaml").write_text(text)
    return t, text


assert set(OPEN_SITUATIONS) == {"wrong_ca", "client_cert_missing", "port_closed", "dns_failure"}
