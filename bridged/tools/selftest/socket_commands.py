"""The QSSL dialogues the checks are made of, one command (and its result URC) at a time
over a :class:`~bridged.tools.selftest.line.Line`."""

from __future__ import annotations

import re
import time
from collections import deque

from bridged.core.at_codec import ClosedUrc, OpenResult, RecvUrc, SendResult, Urc
from bridged.tools.selftest.line import Line
from bridged.tools.selftest.script import CTRL_Z, OPEN_TIMEOUT_SETTING


def upload(line: Line, connect_id: int, kind: str, pem: bytes) -> int | None:
    """Upload ``pem`` as ``kind``; the byte count the module answered (None: none)."""
    r = line.data_command(
        f'AT+QSSLCFG={line.socket_ids(connect_id)},"{kind}"', pem + CTRL_Z, 0.5, timeout=10.0
    )
    for text in r.lines:
        m = re.match(rf'\+QSSLCFG: ?\d+,{connect_id},"{kind}",(\d+)', text)
        if m:
            return int(m.group(1))
    return None


def send(line: Line, connect_id: int, payload: bytes, hex_format: bool, prompt_wait: float) -> bool:
    data = payload.hex().upper().encode() if hex_format else payload
    r = line.data_command(
        f"AT+QSSLSEND={line.socket_ids(connect_id)},{len(payload)}", data, prompt_wait
    )
    return r.ok and send_result(line, 15.0, connect_id) == 0


def open_socket(line: Line, connect_id: int, host: str, port: int) -> int | None:
    r = line.command(f'AT+QSSLOPEN={line.socket_ids(connect_id)},"{host}",{port},0')
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
    line.command(f"AT+QSSLCLOSE={line.socket_ids(connect_id)}")
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


def send_result(line: Line, timeout: float, connect_id: int) -> int | None:
    urc = line.wait_urc(lambda u: isinstance(u, SendResult) and u.connect_id == connect_id, timeout)
    return urc.err if isinstance(urc, SendResult) else None


def configure(line: Line, connect_id: int, seclevel: int, dataformat: str = "1,1") -> None:
    for name, value in (
        ("seclevel", str(seclevel)),
        ("sslversion", "4"),
        ("dataformat", dataformat),
        ("timeout", str(OPEN_TIMEOUT_SETTING)),
    ):
        line.command(f'AT+QSSLCFG={line.socket_ids(connect_id)},"{name}",{value}')


def reset_socket_settings(line: Line, connect_id: int) -> None:
    for name, value in (("seclevel", "0"), ("sslversion", "4"), ("dataformat", "0,0")):
        line.command(f'AT+QSSLCFG={line.socket_ids(connect_id)},"{name}",{value}')
    line.command(f'AT+QSSLCFG={line.socket_ids(connect_id)},"timeout",90')


_RECV_QUOTING = re.compile(rb'\+QSSLURC: ?"recv",\d+,\d+,\d+,(")?')


def recv_quoting(received: bytes) -> bool | None:
    """True if every recv URC seen had quoted data, False if none did, None: no URC or
    both kinds."""
    kinds = {m.group(1) is not None for m in _RECV_QUOTING.finditer(received)}
    return kinds.pop() if len(kinds) == 1 else None


def throwaway_ca_pem() -> bytes:
    """A CA certificate that signed nothing anywhere: for upload counts and wrong-CA."""
    import trustme

    ca = trustme.CA(
        key_type=trustme.KeyType.RSA, organization_name="bridged selftest (signs nothing)"
    )
    return bytes(ca.cert_pem.bytes())
