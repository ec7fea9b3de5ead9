"""QSSLCFG, QSSLOPEN, QSSLSEND, QSSLCLOSE as the application note defines them."""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence

from bridged.core.module_profile import ModuleProfile
from bridged.emulator.at_parse import Command, CommandKind
from bridged.emulator.at_server import Handler
from bridged.emulator.faults import FaultPlan, SendErrorStage
from bridged.emulator.profiles import EmulatorProfile
from bridged.emulator.replies import DataRequest, Reply
from bridged.emulator.results import CmeError, ResultCode
from bridged.emulator.ssl_settings import (
    CERT_SETTINGS,
    INT_SETTING_RANGES,
    MAX_CERT_BYTES,
    SETTING_ORDER,
    canonical_setting,
    supported_range_lines,
)
from bridged.emulator.ssl_socket import ModuleSocket, SocketState, written_code
from bridged.emulator.stats import EmulatorStats


class SslCommands:
    def __init__(
        self,
        sockets: Sequence[ModuleSocket],
        profile: EmulatorProfile,
        module: ModuleProfile,
        stats: EmulatorStats,
        faults: FaultPlan,
        emit_urc: Callable[[bytes], None],
    ) -> None:
        self._emit_urc = emit_urc
        self._sockets = {socket.connect_id: socket for socket in sockets}
        self._profile = profile
        self._module = module
        self._stats = stats
        self._faults = faults

    def handlers(self) -> dict[str, Handler]:
        return {
            "AT+QSSLCFG": self._configure,
            "AT+QSSLOPEN": self._open,
            "AT+QSSLSEND": self._send,
            "AT+QSSLCLOSE": self._close,
        }

    def _socket(self, c: Command) -> ModuleSocket | None:
        """The socket named by the first two arguments, if the module accepts them."""
        context_id, connect_id = c.int_arg(0), c.int_arg(1)
        # The syntax takes more ids than work ("only contextID 1 is supported" on a BC26,
        # only 0,0 on a BC660K): those answer ERROR as well.
        if context_id != self._module.context_id or connect_id is None:
            return None
        return self._sockets.get(connect_id)

    def _ranges(self) -> str:
        """``(1-3),(0-5)``: the id ranges of a test command's answer."""
        m = self._module
        return (
            f"({m.syntax_context_ids[0]}-{m.syntax_context_ids[-1]}),"
            f"({m.syntax_connect_ids[0]}-{m.syntax_connect_ids[-1]})"
        )

    def _data_timeout(self, socket: ModuleSocket) -> float:
        if self._profile.data_mode_timeout is not None:
            return self._profile.data_mode_timeout
        return socket.settings.timeout * self._profile.timeout_scale

    # -- AT+QSSLCFG ------------------------------------------------------------------
    def _configure(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok(
                *supported_range_lines(
                    self._module.syntax_context_ids, self._module.syntax_connect_ids
                )
            )
        socket = self._socket(c) if c.kind is CommandKind.WRITE else None
        if socket is None:
            return Reply.fail()
        prefix = f"+QSSLCFG: {self._module.context_id},{socket.connect_id}"
        if len(c.args) == 2:
            return Reply.ok(
                *(f'{prefix},"{n}",{socket.settings.value_text(n)}' for n in SETTING_ORDER)
            )
        asked = c.args[2].as_string()
        name = canonical_setting(asked) if asked is not None else None
        if asked is None or name is None:
            return Reply.fail()
        values = [arg.as_int() for arg in c.args[3:]]
        if None in values:
            return Reply.fail()
        if name in CERT_SETTINGS:
            return self._upload(socket, name, prefix) if not values else Reply.fail()
        if not values:  # a read answers with the name as asked (alias or not)
            return Reply.ok(f'{prefix},"{asked}",{socket.settings.value_text(name)}')
        if name == "sslversion" and values and values[0] not in self._module.ssl_versions:
            return Reply.fail()
        if name == "dataformat":
            ok = len(values) == 2 and socket.settings.set_dataformat(values[0] or 0, values[1] or 0)
        else:
            assert name in INT_SETTING_RANGES
            ok = len(values) == 1 and socket.settings.set_int(name, values[0] or 0)
        return Reply.ok() if ok else Reply.fail()

    def _upload(self, socket: ModuleSocket, name: str, prefix: str) -> Reply:
        def store(pem: bytes) -> Reply:
            # Empty upload clears the entry; the count is what the module received.
            socket.settings.certs[name] = pem
            self._stats.cert_uploads += 1
            return Reply.ok(f'{prefix},"{name}",{len(pem)}')

        # Esc: OK and nothing changes (the previous certificate, if any, stays).
        return Reply.ask(
            DataRequest(
                fixed_length=None,
                max_length=MAX_CERT_BYTES,
                timeout=self._data_timeout(socket),
                on_data=store,
                on_cancel=Reply.ok,
            )
        )

    # -- AT+QSSLOPEN ----------------------------------------------------------------
    def _open(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok(f'+QSSLOPEN: {self._ranges()},"<host_name>",(1-65535),(0)')
        if c.kind is CommandKind.READ:
            return Reply.ok()
        socket = self._socket(c) if c.kind is CommandKind.WRITE and len(c.args) == 5 else None
        if socket is None:
            return Reply.fail()
        host, port, mode = c.args[2].as_string(), c.int_arg(3), c.int_arg(4)
        if not host or port is None or not 1 <= port <= 65535 or mode != 0:
            return Reply.fail()
        if socket.state is not SocketState.CLOSED:
            line = b"+QSSLOPEN: %d,%d,%d" % (
                self._module.context_id,
                socket.connect_id,
                written_code(self._module, ResultCode.STATE),
            )
            return Reply.ok(then=lambda: self._report_state_error(line))
        return Reply.ok(then=lambda: socket.open(host, port))

    def _report_state_error(self, line: bytes) -> None:
        self._stats.opens += 1
        self._stats.open_failures += 1
        self._emit_urc(line)

    # -- AT+QSSLSEND ----------------------------------------------------------------
    def _send(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok(f"+QSSLSEND: {self._ranges()},(1-{self._module.max_send_text})")
        if c.kind is CommandKind.READ:
            return Reply.ok()
        socket = self._socket(c) if c.kind is CommandKind.WRITE else None
        if socket is None or len(c.args) not in (2, 3):
            return Reply.fail()
        hex_format = socket.settings.send_hex
        limit = self._module.max_send(hex_format)
        length = c.int_arg(2) if len(c.args) == 3 else None
        if len(c.args) == 3 and (length is None or not 1 <= length <= limit):
            return self._send_failed(CmeError.INCORRECT_PARAMETERS)
        if socket.state is not SocketState.OPEN:
            return self._send_failed(CmeError.OPERATION_NOT_ALLOWED)
        if socket.unconfirmed_sends >= self._module.max_unconfirmed_sends:
            # Before the last send's +QSSLSEND result: beyond what this module takes. The
            # refusal comes at the command, before '>': no data is taken, no +QSSLSEND
            # follows, and the earlier sends' results still come (our guess, pinned by
            # tests/emulator/test_module_profile.py).
            self._stats.pipelined_sends_refused += 1
            return self._send_failed(CmeError.OPERATION_NOT_ALLOWED)
        if self._faults.take_send_error(SendErrorStage.COMMAND):
            return self._send_failed(CmeError.UNKNOWN)
        digits_per_byte = 2 if hex_format else 1

        def accept(raw: bytes) -> Reply:
            payload = _decode_payload(raw, hex_format)
            if not payload:
                return self._send_failed(CmeError.INCORRECT_PARAMETERS)
            if socket.state is not SocketState.OPEN:
                return self._send_failed(CmeError.OPERATION_NOT_ALLOWED)
            if self._faults.take_send_error(SendErrorStage.AFTER_DATA):
                return self._send_failed(CmeError.UNKNOWN)
            self._stats.sends += 1
            self._stats.sent_payload_bytes += len(payload)
            if socket.unconfirmed_sends:
                self._stats.pipelined_sends += 1
            self._stats.most_unconfirmed_sends = max(
                self._stats.most_unconfirmed_sends, socket.unconfirmed_sends + 1
            )
            return Reply.ok(then=lambda: socket.send(payload))

        return Reply.ask(
            DataRequest(
                fixed_length=None if length is None else length * digits_per_byte,
                max_length=limit * digits_per_byte,
                timeout=self._data_timeout(socket),
                on_data=accept,
                on_cancel=Reply.ok,  # Esc: nothing sent, no +QSSLSEND
            )
        )

    def _send_failed(self, error: CmeError) -> Reply:
        self._stats.send_failures += 1
        return Reply.fail(error)

    # -- AT+QSSLCLOSE ---------------------------------------------------------------
    def _close(self, c: Command) -> Reply:
        if c.kind is CommandKind.TEST:
            return Reply.ok("+QSSLCLOSE: (1-3),(0-5)")
        if c.kind is CommandKind.READ:
            return Reply.ok()
        socket = self._socket(c) if c.kind is CommandKind.WRITE and len(c.args) == 2 else None
        if socket is None:
            return Reply.fail()
        # Closing a closed socket is harmless: OK and +QSSLCLOSE ...,0 as usual.
        return Reply.ok(then=socket.close)


def _decode_payload(raw: bytes, hex_format: bool) -> bytes | None:
    """Payload bytes of what the host sent; None if hex digits are malformed."""
    if not hex_format:
        return raw
    if len(raw) % 2:
        return None
    try:
        return binascii.unhexlify(raw)
    except (binascii.Error, ValueError):
        return None
