"""An emulated Quectel BC26/BC20 on a pty, strict to the SSL application note.

    from bridged.emulator import Emulator, FAST
    emulator = Emulator("/tmp/ttyBC26", profile=FAST)   # runs in the current reactor
    emulator.start()                                     # pty + symlink, boot banner
    await emulator.when_ready()                          # after "+CPIN: READY"
    ...
    emulator.stop()

What a module model does where the note is silent comes from its module profile
(``Emulator(..., module_profile=BC26)``, :mod:`bridged.core.module_profile`; ``profile=`` is
the timing, ``fast`` or ``nbiot``): the ``+QSSLOPEN`` code of each open failure
(``open_results``), whether a second QSSLSEND on a socket before the first one's
``+QSSLSEND`` result is taken (``max_unconfirmed_sends``; beyond it: ERROR at the command,
before ``>``, so no data is taken and no ``+QSSLSEND`` follows; the earlier sends' results
still come, in order), quoted or
bare recv data (``recv_quoted``), the send/recv limits, the suites, the accepted
``sslversion`` values, and the data-mode entry delay (``prompt_delay``, unless the timing
overrides it, as ``fast`` does). Elsewhere the emulator decides (and the tests pin it):

* QSSLCFG defaults: seclevel 0, sslversion 4, dataformat 0,0, timeout 90, debug 0.
  A read answers with the setting name as asked (``"secllevel"`` stays misspelt).
* Certificate upload: Ctrl+Z stores what came (empty clears it); Esc answers ``OK``
  and keeps the previous content; more than 8192 bytes → ``ERROR``.
* Data mode begins uniform(0, ``prompt_max_delay``) after ``>`` is on the wire; bytes
  before that are dropped and counted (``stats.early_dropped_bytes``). Data mode
  gives up after ``data_mode_timeout`` (or the socket's ``"timeout"``) without a byte
  → ``ERROR``. Fixed-length data is binary safe; a variable-length send ends with
  Ctrl+Z, Esc cancels it (``OK``, no ``+QSSLSEND``). Bad hex → ``ERROR``.
* ``+QSSLOPEN`` codes (BC26 profile): -2 TCP refused/unreachable, unresolvable, or not
  TLS; -3 server certificate
  not verified, missing/bad CA or client certificate, or the server rejected ours;
  -4 missing/bad/mismatched client key; -5 no common suite or protocol version
  (TLS 1.3-only and ECDHE-only servers, SSL 3.0); -6 socket not closed; -7 the
  ``"timeout"`` setting elapsed.
* A send's ``+QSSLSEND`` result comes only while its connection lasts: none after
  ``AT+QSSLCLOSE``, the ``"closed"`` URC or a reset, so never one on a later connection.
* QSSLCLOSE on a closed socket is harmless (``OK``, ``+QSSLCLOSE: 1,<id>,0``); closing
  an opening socket abandons the attempt without a ``+QSSLOPEN``.
* URCs are held while a prompt or data mode is in progress and written after the
  final result; with CMEE 1/2 every error is a ``+CME ERROR``.
* A hang-up removes the symlink until the line returns on a new pty.
"""

from bridged.emulator.at_server import LineMode
from bridged.emulator.emulator import Emulator
from bridged.emulator.faults import SendErrorStage, UrcRelease
from bridged.emulator.profiles import FAST, NBIOT, PROFILES, EmulatorProfile
from bridged.emulator.results import CmeError, ResultCode
from bridged.emulator.ssl_socket import SocketState
from bridged.emulator.stats import EmulatorStats

__all__ = [
    "FAST",
    "NBIOT",
    "PROFILES",
    "CmeError",
    "Emulator",
    "EmulatorProfile",
    "EmulatorStats",
    "LineMode",
    "ResultCode",
    "SendErrorStage",
    "SocketState",
    "UrcRelease",
]
