"""The self-test's script as data: the prompt waits tried, the QSSLCFG range checks, the
malformed commands, which socket each check uses, and what each data check assumes."""

from __future__ import annotations

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

DATA_ASSUMPTIONS = {
    "send.limit": "a fixed-length send takes up to the profile's maximum, no more",
    "recv.hex": "hex recv data comes back complete, quoted, at most the profile's length",
    "recv.text": "text recv data comes back complete, quoted, at most the profile's length",
    "pipelining": "a second QSSLSEND before the first's +QSSLSEND result is refused (ERROR)",
    "prompt_wait": "a 500 ms wait after '>' loses no byte",
}
