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

Modules: :mod:`.script` (the script as data: what to try, on which socket),
:mod:`.line` (the synchronous serial driver), :mod:`.socket_commands` (the QSSL
dialogues), :mod:`.findings` (a run's findings and what the profile learns),
:mod:`.checks` and :mod:`.data_checks` (the checks that need a dialogue),
:mod:`.run` (the script in order, on a line or a device), :mod:`.report` (table and
JSON), :mod:`.cli` (``selftest_main``).
"""

from bridged.tools.selftest.cli import selftest_main
from bridged.tools.selftest.findings import EchoServer, Selftest, SelftestOptions
from bridged.tools.selftest.run import run_on_device, run_selftest

__all__ = [
    "EchoServer",
    "Selftest",
    "SelftestOptions",
    "run_on_device",
    "run_selftest",
    "selftest_main",
]
