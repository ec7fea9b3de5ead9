"""Semantics the schema cannot express, checked on the built configuration.

Duplicate connect_id, listen addresses that collide (wildcards and dual-stack included),
loopback rules, backoff bounds, the control socket's mode, and seclevel against the
certificates after merging the ssl defaults. The module's limits are checked in
bridged.config.profile, the files on this host in bridged.config.files.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from typing import Final

from bridged.config.document import Document
from bridged.config.errors import ConfigIssue, KeyPath, format_key_path
from bridged.config.files import check_files
from bridged.config.model import Config, Endpoint
from bridged.config.profile import check_model
from bridged.config.schema_check import show

__all__ = ["REQUIRED_PEMS", "SECLEVEL_NAMES", "semantic_issues"]

SECLEVEL_NAMES: Final[Mapping[int, str]] = {0: "none", 1: "server auth", 2: "mutual"}
# Certificate settings each seclevel needs (spec: AT+QSSLCFG "seclevel").
REQUIRED_PEMS: Final[Mapping[int, tuple[str, ...]]] = {
    0: (),
    1: ("cacert",),
    2: ("cacert", "clientcert", "clientkey"),
}


def semantic_issues(config: Config, doc: Document, *, check_host: bool) -> list[ConfigIssue]:
    """Every semantic problem; ``check_host``: also the files and group on this host."""
    issues = _check_sockets(config, doc) + _check_seclevels(config, doc)
    issues += check_model(config, doc, check_host)
    if check_host:
        issues += check_files(config, doc)
    return issues


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False  # any other name could resolve anywhere
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _not_loopback(endpoint: Endpoint) -> str:
    try:
        ipaddress.ip_address(endpoint.host)
    except ValueError:
        return f"{endpoint}: only IP addresses and 'localhost' are known to be loopback"
    return f"{endpoint} is not a loopback address"


def _occupied(host: str) -> set[str]:
    """The addresses a listener on host takes; '*4' / '*6' stand for wildcard binds."""
    if host.lower().rstrip(".") == "localhost":
        return {"127.0.0.1", "::1"}
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return {host.lower().rstrip(".")}
    if address.is_unspecified:
        # Linux binds '::' dual-stack by default, so it takes the IPv4 wildcard too.
        return {"*4"} if address.version == 4 else {"*4", "*6"}
    return {address.compressed}


def _family(address: str) -> int:
    if address.startswith("*"):
        return int(address[1])
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 0  # a host name: only an identical name is known to collide


def _collide(a: Endpoint, b: Endpoint) -> bool:
    if a.port != b.port:
        return False
    for x in _occupied(a.host):
        for y in _occupied(b.host):
            if x == y:
                return True
            if (x.startswith("*") or y.startswith("*")) and _family(x) == _family(y) != 0:
                return True
    return False


def _check_sockets(config: Config, doc: Document) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    first_with_id: dict[int, int] = {}
    listeners: list[tuple[KeyPath, Endpoint]] = []
    for index, sock in enumerate(config.sockets):
        here: KeyPath = ("sockets", index)
        if sock.connect_id in first_with_id:
            first = first_with_id[sock.connect_id]
            issues.append(
                doc.issue(
                    (*here, "connect_id"),
                    f"{sock.connect_id} is already used by sockets[{first}] "
                    f"(line {doc.locate(('sockets', first, 'connect_id')).line})",
                )
            )
        else:
            first_with_id[sock.connect_id] = index
        if not sock.allow_remote and not _is_loopback(sock.listen.host):
            issues.append(
                doc.issue(
                    (*here, "listen"),
                    f"{_not_loopback(sock.listen)}; clients could reach the module's socket "
                    "from the network. Listen on 127.0.0.1, [::1] or localhost, "
                    "or set allow_remote: true on this socket",
                )
            )
        listeners.append(((*here, "listen"), sock.listen))
        if sock.reconnect.initial > sock.reconnect.max:
            issues.append(_backoff_issue(doc, (*here, "reconnect"), sock.reconnect.initial))
    if config.metrics is not None:
        metrics_path: KeyPath = ("metrics", "listen")
        if not config.metrics.allow_remote and not _is_loopback(config.metrics.listen.host):
            issues.append(
                doc.issue(
                    metrics_path,
                    f"{_not_loopback(config.metrics.listen)}; "
                    "set metrics.allow_remote: true to serve metrics to the network",
                )
            )
        listeners.append((metrics_path, config.metrics.listen))
    for later, (path, endpoint) in enumerate(listeners):
        for other_path, other in listeners[:later]:
            if _collide(endpoint, other):
                issues.append(
                    doc.issue(
                        path,
                        f"{endpoint} collides with {format_key_path(other_path)} ({other}, "
                        f"line {doc.locate(other_path).line})",
                    )
                )
                break
    if config.serial.reopen_backoff.initial > config.serial.reopen_backoff.max:
        issues.append(
            _backoff_issue(doc, ("serial", "reopen_backoff"), config.serial.reopen_backoff.initial)
        )
    if config.control.mode & 0o007:
        issues.append(
            doc.issue(
                ("control", "mode"),
                f"{config.control.mode:04o} gives others access; the control socket grants "
                "full control of the module. Use e.g. '0660' with control.group",
            )
        )
    return issues


def _join(words: Sequence[str]) -> str:
    """("a", "b", "c") -> "a, b and c"."""
    return " and ".join(filter(None, (", ".join(words[:-1]), words[-1])))


def _backoff_issue(doc: Document, path: KeyPath, initial: float) -> ConfigIssue:
    return doc.issue((*path, "max"), f"max must be at least initial ({show(initial)})")


def _check_seclevels(config: Config, doc: Document) -> list[ConfigIssue]:
    # Grouped by where the seclevel was set, so a default inherited by several sockets is
    # reported once at ssl.seclevel rather than once per socket.
    groups: dict[tuple[KeyPath, int, tuple[str, ...]], list[int]] = {}
    for index, sock in enumerate(config.sockets):
        level = sock.ssl.seclevel
        missing = tuple(n for n in REQUIRED_PEMS[level] if getattr(sock.ssl, n) is None)
        if missing:
            origin = doc.ssl_origin(index, "seclevel") or ("sockets", index)
            groups.setdefault((origin, level, missing), []).append(index)
    issues = []
    for (origin, level, missing), indexes in groups.items():
        needs = _join(REQUIRED_PEMS[level])
        unset = _join(missing) + (" is" if len(missing) == 1 else " are") + " not set"
        message = f"seclevel {level} ({SECLEVEL_NAMES[level]}) needs {needs}; {unset}"
        if origin[0] == "ssl":
            message += " for " + ", ".join(f"sockets[{i}]" for i in indexes)
        elif len(origin) == 2:  # the built-in default seclevel
            message += (
                f" (seclevel {level} is the default; set ssl.cacert, "
                "or seclevel: 0 to connect without verifying the server)"
            )
        issues.append(doc.issue(origin, message))
    return issues
