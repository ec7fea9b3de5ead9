"""The self-test's script as data: the prompt waits tried, the QSSLCFG range checks, the
malformed commands, which socket each check uses, and what each data check assumes."""

from __future__ import annotations

from dataclasses import dataclass

from bridged.core.module_profile import SSLVERSION_VALUES, ModuleProfile

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
#: (setting, value as written, accepted?) on a scratch socket; the note's ranges. The
#: ``sslversion`` rows are the module's: :func:`range_checks`.
_RANGE_CHECKS_BEFORE_SSLVERSION: tuple[tuple[str, str, bool], ...] = (
    ("seclevel", "0", True),
    ("seclevel", "2", True),
    ("seclevel", "3", False),
)
_RANGE_CHECKS_AFTER_SSLVERSION: tuple[tuple[str, str, bool], ...] = (
    ("dataformat", "0,0", True),
    ("dataformat", "1,1", True),
    ("dataformat", "2,0", False),
    ("timeout", "10", True),
    ("timeout", "300", True),
    ("timeout", "9", False),
    ("timeout", "301", False),
    ("debug", "0", True),
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


def range_checks(module: ModuleProfile) -> tuple[tuple[str, str, bool], ...]:
    """The QSSLCFG range checks for ``module``: ``sslversion`` 0..5 accepted where its
    profile lists the value (a BC660K-GL has no SSL 3.0)."""
    sslversions = tuple(
        ("sslversion", str(v), v in module.ssl_versions) for v in (*SSLVERSION_VALUES, 5)
    )
    return (*_RANGE_CHECKS_BEFORE_SSLVERSION, *sslversions, *_RANGE_CHECKS_AFTER_SSLVERSION)


def malformed_commands(module: ModuleProfile) -> tuple[str, ...]:
    """Commands the firmware must refuse at once with ERROR / +CME ERROR: in ``module``'s
    context, so that only what is malformed is wrong."""
    context, first = module.context_id, module.connect_ids[0]
    return (
        f'AT+QSSLOPEN={context},9,"example.com",443,0',  # 9: no module's connectID
        f"AT+QSSLSEND={context},{first},0",
        f'AT+QSSLCFG={context},{first},"nosuchsetting",1',
        f"AT+QSSLCLOSE={context}",
        "AT+QSSLBOGUS",
    )


@dataclass(frozen=True)
class SocketRoles:
    """Which connectID each check uses. The working connection is on the first; the
    provoked open failures and the range checks go on others where the module has them,
    so that they leave its settings alone (a one-socket module does everything on it)."""

    data: int
    dns_failure: int
    port_closed: int
    wrong_ca: int
    client_cert_missing: int
    scratch: int

    def opened(self) -> tuple[int, ...]:
        """The sockets the checks open (the scratch socket is only configured)."""
        roles = (self.data, self.dns_failure, self.port_closed, self.wrong_ca)
        return tuple(sorted({*roles, self.client_cert_missing}))


def socket_roles(module: ModuleProfile) -> SocketRoles:
    ids = module.connect_ids

    def nth(n: int) -> int:
        return ids[min(n, len(ids) - 1)]

    # A BC26: the connection on 0, failures on 1 (twice), 2 and 3, range checks on 5.
    return SocketRoles(
        data=nth(0),
        dns_failure=nth(1),
        port_closed=nth(1),
        wrong_ca=nth(2),
        client_cert_missing=nth(3),
        scratch=ids[-1],
    )


OPEN_TIMEOUT_SETTING = 20  # the sockets' "timeout" during the self-test (s)

DATA_ASSUMPTIONS = {
    "send.limit": "a fixed-length send takes up to the profile's maximum, no more",
    "recv.hex": "hex recv data comes back complete, quoted, at most the profile's length",
    "recv.text": "text recv data comes back complete, quoted, at most the profile's length",
    "pipelining": "a second QSSLSEND before the first's +QSSLSEND result is refused (ERROR)",
    "prompt_wait": "a 500 ms wait after '>' loses no byte",
}
