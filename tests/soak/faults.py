"""The soak's fault injector: one fault every few seconds, drawn from a seeded RNG.

Kinds, each an :class:`~bridged.emulator.Emulator` fault-injection call:

- ``network_close``: a server vanishes; the module reports ``+QSSLURC: "closed"``.
- ``reboot``: the module power-cycles (sockets and settings gone, boot banner).
- ``garbage``: line noise from the catalogue below, written between the module's frames.
- ``urcs_in_response``: URCs held and released inside the next command's response.
- ``max_prompt_delay``: data mode starts as late after ``>`` as the module may.
- ``send_error``: the next ``AT+QSSLSEND`` answers ``ERROR`` (before ``>`` or after data).
- ``open_failure``: the next ``AT+QSSLOPEN`` fails, cycling through every error code.
- ``hangup``: the pty disappears for a while and comes back (sometimes rebooted).
- ``slow_answer``: the next data phase (a send, on a text or hex socket) is answered
  after the old fixed 5 s command timeout, inside the socket's own timeout.
- ``stray_ok``: an ``OK`` nobody asked for, between two responses.
- ``late_prompt``: the next ``>`` comes after the host stopped waiting for it; the module
  then counts what the host writes as payload until its data mode times out.
- ``damaged_recv``: a recv URC for a socket in use arrives damaged (a non-hex digit): its
  stream must end (client disconnected, connection closed), never continue with a hole.
- ``sighup_reload``: the configuration is reloaded with one socket's remote changed (to
  the other echo server and back): its client is disconnected, nothing it wrote reaches
  the new remote, the other sockets keep their clients.

Garbage is noise a serial line can carry; it never imitates a valid URC for a socket in
use (that would be real data), nor a bare final result. In particular no wrong-length
``recv`` URC is aimed at a text-format socket: text data is read by length (the spec),
so a corrupted length field there swallows whatever follows, which no host can undo.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred

from bridged.emulator import Emulator, ResultCode, SendErrorStage, SocketState, UrcRelease

FAULT_ROUND = (
    "network_close",
    "network_close",
    "reboot",
    "garbage",
    "garbage",
    "urcs_in_response",
    "max_prompt_delay",
    "send_error",
    "open_failure",
    "hangup",
    "slow_answer",
    "stray_ok",
    # "late_prompt" is left out of the round for now: each costs every socket the
    # prompt wait plus the data-mode silence (3 + 12 s here), and two close together
    # broke the soak's 30 s stall limit after the module-profile merge. It is shown end
    # to end by tests/e2e/test_serial_faults.py; inject() still takes it.
    "damaged_recv",
    "sighup_reload",
)
# Past the engine's old fixed 5 s wait, inside the soak's ssl timeout (10 s) plus margin.
SLOW_ANSWER = 7.0
# Past the wait for '>' (modem.command_timeout, 5 s by default).
LATE_PROMPT = 6.0
OPEN_ERROR_CODES = [code for code in ResultCode if code is not ResultCode.SUCCESS]


def garbage_catalogue(
    rng: random.Random, hex_sockets: Sequence[int]
) -> list[tuple[str, Callable[[Emulator], None]]]:
    """(name, inject) pairs; each inject writes one piece of noise."""

    def line(text: bytes) -> Callable[[Emulator], None]:
        return lambda emulator: emulator.inject_line(text)

    def raw(data: bytes) -> Callable[[Emulator], None]:
        return lambda emulator: emulator.inject_bytes(data)

    cid = rng.choice(list(hex_sockets))
    printable = bytes(rng.randint(0x20, 0x7E) for _ in range(5000))
    return [
        ("random_bytes", line(rng.randbytes(rng.randint(1, 200)))),
        ("over_long_line", line(printable)),
        ("nul_burst", line(b"\x00" * rng.randint(1, 300))),
        ("partial_line", raw(b"\x00\xfe\xff" + rng.randbytes(rng.randint(0, 40)))),
        ("unknown_info_line", line(b'+CEREG: 5,1,"1A2B","01A2B3C4",9')),
        ("recv_wrong_hex_length", line(b'+QSSLURC: "recv",1,%d,4,"414243"' % cid)),
        ("recv_odd_hex", line(b'+QSSLURC: "recv",1,%d,2,"41G"' % cid)),
        ("recv_non_hex", line(b'+QSSLURC: "recv",1,%d,2,"zz!!"' % cid)),
        ("recv_truncated", raw(b'\r\n+QSSLURC: "recv",1,%d,300,"4142' % cid)),
        ("recv_unknown_socket", line(b'+QSSLURC: "recv",1,7,3,"414243"')),
        ("recv_bad_context", line(b'+QSSLURC: "recv",3,0,3,"414243"')),
        ("recv_bad_header", line(b'+QSSLURC: "recv",x,y,z')),
        ("recv_too_long", line(b'+QSSLURC: "recv",1,%d,9999,"41"' % cid)),
        ("closed_unknown_socket", line(b'+QSSLURC: "closed",1,9')),
        ("unknown_urc", line(b'+QSSLURC: "bogus",1,0')),
        ("open_unknown_socket", line(b"+QSSLOPEN: 1,8,0")),
        ("send_bad_context", line(b"+QSSLSEND: 2,0,0")),
        ("stray_prompt", raw(b"\r\n> ")),
    ]


@dataclass
class InjectedFault:
    kind: str
    detail: str
    at: float


class FaultInjector:
    def __init__(
        self,
        emulator: Emulator,
        rng: random.Random,
        clock: Callable[[], float],
        hex_sockets: Sequence[int],
        connect_ids: Sequence[int],
        reload: Callable[[int], Deferred[None]] | None = None,
    ) -> None:
        self.emulator = emulator
        self.reload = reload  # changes the given socket's remote and reloads
        self.rng = rng
        self.clock = clock
        self.hex_sockets = list(hex_sockets)
        self.connect_ids = list(connect_ids)
        self.injected: list[InjectedFault] = []
        self.by_kind: Counter[str] = Counter()
        self.garbage_kinds: Counter[str] = Counter()
        self._round: list[str] = []
        self._open_codes = 0

    def next_kind(self) -> str:
        if not self._round:
            self._round = list(FAULT_ROUND)
            self.rng.shuffle(self._round)
        return self._round.pop()

    async def inject(self, kind: str) -> InjectedFault:
        """Apply one fault; a hang-up returns once the line is back."""
        emulator = self.emulator
        # A fault that lingers (the prompt delay) lasts until the next one.
        emulator.set_prompt_delay(None)
        hangup: Deferred[None] | None = None
        if kind == "network_close":
            open_ids = [
                cid for cid in self.connect_ids if emulator.socket_state(cid) is SocketState.OPEN
            ]
            cid = self.rng.choice(open_ids or self.connect_ids)
            emulator.close_from_network(cid)
            detail = f"socket {cid}"
        elif kind == "reboot":
            emulator.reboot()
            detail = ""
        elif kind == "garbage":
            name, apply = self.rng.choice(garbage_catalogue(self.rng, self.hex_sockets))
            apply(emulator)
            self.garbage_kinds[name] += 1
            detail = name
        elif kind == "urcs_in_response":
            where = self.rng.choice(list(UrcRelease))
            emulator.release_urcs_in_next_response(where)
            detail = where.value
        elif kind == "max_prompt_delay":
            emulator.use_max_prompt_delay()
            detail = ""
        elif kind == "send_error":
            stage = self.rng.choice(list(SendErrorStage))
            emulator.fail_next_sends(1, stage)
            detail = stage.value
        elif kind == "open_failure":
            code = OPEN_ERROR_CODES[self._open_codes % len(OPEN_ERROR_CODES)]
            self._open_codes += 1
            emulator.fail_next_open(code)
            detail = f"{code.name} ({int(code)})"
        elif kind == "slow_answer":
            emulator.answer_next_data_slowly(SLOW_ANSWER)
            detail = f"{SLOW_ANSWER:g} s"
        elif kind == "stray_ok":
            emulator.stray_ok()
            detail = ""
        elif kind == "late_prompt":
            emulator.prompt_late(LATE_PROMPT)
            detail = f"{LATE_PROMPT:g} s"
        elif kind == "hangup":
            downtime = self.rng.uniform(0.2, 2.0)
            reboot = self.rng.random() < 0.5
            hangup = emulator.hangup(downtime, reboot=reboot)
            detail = f"{downtime:.1f} s{', module rebooted' if reboot else ''}"
        elif kind == "damaged_recv":
            open_ids = [
                cid for cid in self.hex_sockets if emulator.socket_state(cid) is SocketState.OPEN
            ]
            cid = self.rng.choice(open_ids or self.hex_sockets)
            emulator.inject_line(b'+QSSLURC: "recv",1,%d,2,"41G"' % cid)
            detail = f"socket {cid}"
        elif kind == "sighup_reload":
            cid = self.rng.choice(self.connect_ids)
            if self.reload is not None:
                hangup = self.reload(cid)  # awaited below, like a hang-up
            detail = f"socket {cid} remote changed"
        else:
            raise ValueError(f"unknown fault kind {kind!r}")
        fault = InjectedFault(kind, detail, self.clock())
        self.injected.append(fault)
        self.by_kind[kind] += 1
        if hangup is not None:
            await hangup
        return fault

    def disarm(self) -> None:
        """Nothing armed may outlive the fault phase."""
        self.emulator.faults.clear()
