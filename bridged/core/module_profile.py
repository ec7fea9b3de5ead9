"""What one module model does where the AT note leaves room: a module profile.

One frozen :class:`ModuleProfile` per module model says everything the host and the
emulator must agree on that is not in the AT grammar itself: which context and socket
ids exist, the largest send and recv per data format, the TLS offer, how long the module
needs after ``>`` before it takes data, whether it takes a second ``AT+QSSLSEND`` on a
socket before the first one's ``+QSSLSEND`` result, whether recv data comes quoted, and
which ``+QSSLOPEN`` code each kind of open failure gives.

Built in: :data:`BC26` and :data:`BC20` (six sockets on context 1), and their successors
:data:`BC660K` and :data:`BC950K` (one socket, connectID 0 on context 0, other limits and
suites; ``/work/shared/spec/bc660k-ssl-at.md``). :func:`detect_model` reads an ``ATI`` /
``AT+CGMM`` answer for ``model: auto``.
A profile file (``bridged selftest`` writes one; :mod:`bridged.config.module_profile_file`
reads and writes it) is YAML naming a built-in ``base`` and overriding some of the field
names below::

    base: bc26
    name: bc26-gateway-7          # optional; default "<base>-custom"
    prompt_delay: 0.2
    max_unconfirmed_sends: 2
    recv_quoted: false
    open_results:                 # merged over the base's; keys: OPEN_SITUATIONS
      client_cert_missing: -3

:func:`profile_from_mapping` validates its contents and reports every problem at once
(:class:`ModuleProfileError`); :func:`profile_overrides` gives what a file must say. Pure: no
file, no YAML here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bridged.core.tls_suites import MODULE_CIPHER_SUITES, SSLVERSION_PROTOCOLS, CipherSuite

#: The kinds of ``+QSSLOPEN`` failure a self-test can provoke, and a profile maps to codes.
OPEN_SITUATIONS: tuple[str, ...] = ("wrong_ca", "client_cert_missing", "port_closed", "dns_failure")
#: ``sslversion`` values of ``AT+QSSLCFG`` (0 SSL 3.0, 1 TLS 1.0, 2 TLS 1.1, 3 TLS 1.2, 4 all).
SSLVERSION_VALUES: tuple[int, ...] = (0, *sorted(SSLVERSION_PROTOCOLS))


class ModuleProfileError(Exception):
    """A profile file or override set is not valid; the message lists every problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        super().__init__(
            f"{source}: invalid module profile:\n" + "\n".join(f"  {p}" for p in problems)
        )


@dataclass(frozen=True)
class ModuleProfile:
    """One module model's behaviour where the AT note leaves room."""

    name: str
    #: The SSL ``<contextID>`` the firmware supports.
    context_id: int
    #: The ``<connectID>`` values that exist.
    connect_ids: tuple[int, ...]
    #: Largest fixed-length QSSLSEND, in payload bytes, per send data format.
    max_send_hex: int
    max_send_text: int
    #: Largest payload of one recv URC, per receive data format.
    max_recv_hex: int
    max_recv_text: int
    #: The TLS suites the module offers (a subset of module_tls's, in its order).
    cipher_suites: tuple[CipherSuite, ...] = MODULE_CIPHER_SUITES
    #: ``sslversion`` values the module accepts.
    ssl_versions: tuple[int, ...] = SSLVERSION_VALUES
    #: Seconds the host waits after ``>`` before writing data (the module's data-mode
    #: entry takes up to this long; bytes before it are lost).
    prompt_delay: float = 0.5
    #: QSSLSENDs per socket the module accepts before the first one's ``+QSSLSEND``
    #: result (1: the next waits for the result; a module asked for more answers ERROR).
    max_unconfirmed_sends: int = 1
    #: Whether recv URC data comes in double quotes.
    recv_quoted: bool = True
    #: OPEN_SITUATIONS → the ``+QSSLOPEN`` ``<err>`` code the module gives.
    open_results: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({}), hash=False
    )
    #: Whether result codes (``+QSSLOPEN``/``+QSSLSEND``/``+QSSLCLOSE`` ``<err>``) come
    #: without their minus sign (the BC660K note's table lists 1..9). The host accepts
    #: either sign from every module; this says which one the emulator writes.
    unsigned_results: bool = False
    #: The module's name as the vendor writes it (messages name it).
    title: str = ""
    #: The ids the command syntax accepts (test command ranges); of them only
    #: ``context_id`` / ``connect_ids`` work, the others are refused with ERROR.
    syntax_context_ids: tuple[int, ...] = (1, 2, 3)
    syntax_connect_ids: tuple[int, ...] = tuple(range(6))

    def __post_init__(self) -> None:
        # A frozen profile must not be mutable through its mapping.
        object.__setattr__(self, "open_results", MappingProxyType(dict(self.open_results)))

    def open_result(self, situation: str) -> int:
        """The code for ``situation`` (one of OPEN_SITUATIONS)."""
        return self.open_results[situation]

    def max_send(self, hex_format: bool) -> int:
        return self.max_send_hex if hex_format else self.max_send_text

    def max_recv(self, hex_format: bool) -> int:
        return self.max_recv_hex if hex_format else self.max_recv_text

    @property
    def label(self) -> str:
        """How messages name the module: its title, else the profile name."""
        return self.title or self.name

    def connect_ids_text(self) -> str:
        """ "0..5" or "only connectID 0" for messages."""
        ids = self.connect_ids
        if len(ids) == 1:
            return f"only connectID {ids[0]} (one socket)"
        if ids == tuple(range(ids[0], ids[-1] + 1)):
            return f"connectIDs {ids[0]}..{ids[-1]}"
        return "connectIDs " + ", ".join(map(str, ids))


BC26 = ModuleProfile(
    name="bc26",
    context_id=1,
    connect_ids=tuple(range(6)),
    max_send_hex=730,
    max_send_text=1460,
    max_recv_hex=650,
    max_recv_text=1300,
    # What the emulator does today: a server's handshake_failure to a module without a
    # client certificate is a failed negotiation for mbedTLS (-5), not a certificate error.
    open_results={"wrong_ca": -3, "client_cert_missing": -5, "port_closed": -2, "dns_failure": -2},
    title="BC26",
)
#: The BC20 speaks the same SSL commands with the same numbers.
BC20 = dataclasses.replace(BC26, name="bc20", title="BC20")

_SUCCESSOR_SUITES = (0x002F, 0x0035, 0x000A, 0x00FF)  # the BC660K note's list, its order
#: BC660K-GL: the BC26's successor (``bc660k-ssl-at.md``): context 0, connectID 0 only,
#: send ≤ 1024 and recv ≤ 1400 bytes in either format, three suites, TLS 1.0-1.2.
BC660K = ModuleProfile(
    name="bc660k",
    title="BC660K-GL",
    context_id=0,
    connect_ids=(0,),
    max_send_hex=1024,
    max_send_text=1024,
    max_recv_hex=1400,
    max_recv_text=1400,
    cipher_suites=tuple(
        next(s for s in MODULE_CIPHER_SUITES if s.code == code) for code in _SUCCESSOR_SUITES
    ),
    ssl_versions=(1, 2, 3, 4),  # no SSL 3.0
    syntax_context_ids=tuple(range(11)),
    syntax_connect_ids=tuple(range(5)),
    # The same situations as the BC26; the note prints the codes without a sign.
    open_results=BC26.open_results,
    unsigned_results=True,
)
#: BC950K-GL: the same SSL application note as the BC660K-GL.
BC950K = dataclasses.replace(BC660K, name="bc950k", title="BC950K-GL")

BUILTIN_PROFILES: dict[str, ModuleProfile] = {p.name: p for p in (BC26, BC20, BC660K, BC950K)}
#: ``modem.model`` values: the built-ins, and ``auto`` (ask the module: ATI / AT+CGMM).
MODEL_CHOICES: tuple[str, ...] = (*BUILTIN_PROFILES, "auto")

_SUITES_BY_NAME: dict[str, CipherSuite] = {s.iana_name: s for s in MODULE_CIPHER_SUITES}
_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ModuleProfile))


def builtin_profile(name: str) -> ModuleProfile:
    """A built-in profile by name (case-insensitive); KeyError names the choices."""
    try:
        return BUILTIN_PROFILES[name.lower()]
    except KeyError:
        have = ", ".join(BUILTIN_PROFILES)
        raise KeyError(f"no built-in module profile {name!r} (have: {have})") from None


# --------------------------------------------------------------------------- validating


def profile_from_mapping(data: Mapping[str, Any], source: str = "<profile>") -> ModuleProfile:
    """``base`` + overrides → a validated profile."""
    problems: list[str] = []
    base_name = data.get("base")
    if not isinstance(base_name, str) or base_name.lower() not in BUILTIN_PROFILES:
        problems.append(f"base: must be one of {', '.join(BUILTIN_PROFILES)} (got {base_name!r})")
        base = BC26
    else:
        base = BUILTIN_PROFILES[base_name.lower()]
    values: dict[str, Any] = {"name": f"{base.name}-custom"}
    for key, raw in data.items():
        if key == "base":
            continue
        if key not in _FIELDS:
            problems.append(f"{key}: unknown field (fields: {', '.join(_FIELDS)})")
            continue
        try:
            values[key] = _CONVERTERS[key](raw, base)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
    if problems:
        raise ModuleProfileError(source, problems)
    profile = dataclasses.replace(base, **values)
    problems = check_profile(profile)
    if problems:
        raise ModuleProfileError(source, problems)
    return profile


def check_profile(p: ModuleProfile) -> list[str]:
    """Cross-field problems of a profile (empty: fine)."""
    problems = []
    if p.max_send_text < p.max_send_hex:
        problems.append("max_send_text: smaller than max_send_hex")
    if p.max_recv_text < p.max_recv_hex:
        problems.append("max_recv_text: smaller than max_recv_hex")
    if p.context_id not in p.syntax_context_ids:
        problems.append("context_id: not among syntax_context_ids")
    if not set(p.connect_ids) <= set(p.syntax_connect_ids):
        problems.append("connect_ids: not all among syntax_connect_ids")
    missing = [s for s in OPEN_SITUATIONS if s not in p.open_results]
    if missing:
        problems.append(f"open_results: no code for {', '.join(missing)}")
    return problems


def _int(raw: Any, lo: int, hi: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise ValueError(f"must be an integer, got {raw!r}")
    if not lo <= raw <= hi:
        raise ValueError(f"must be in {lo}..{hi}, got {raw}")
    return raw


def _int_list(raw: Any, lo: int, hi: int) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"must be a non-empty list of integers in {lo}..{hi}")
    values = tuple(_int(v, lo, hi) for v in raw)
    if len(set(values)) != len(values):
        raise ValueError("has duplicates")
    return values


def _suites(raw: Any, base: ModuleProfile) -> tuple[CipherSuite, ...]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("must be a non-empty list of IANA suite names")
    unknown = [s for s in raw if s not in _SUITES_BY_NAME]
    if unknown:
        raise ValueError(
            f"unknown suite(s) {', '.join(map(str, unknown))}; known: {', '.join(_SUITES_BY_NAME)}"
        )
    return tuple(_SUITES_BY_NAME[s] for s in raw)


def _open_results(raw: Any, base: ModuleProfile) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise ValueError(f"must be a mapping of {', '.join(OPEN_SITUATIONS)} to codes")
    merged = dict(base.open_results)
    for key, code in raw.items():
        if key not in OPEN_SITUATIONS:
            raise ValueError(f"unknown situation {key!r} (know: {', '.join(OPEN_SITUATIONS)})")
        merged[key] = _int(code, -99, -1)
    return merged


def _prompt_delay(raw: Any, base: ModuleProfile) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 5:
        raise ValueError(f"must be a number of seconds in 0..5, got {raw!r}")
    return float(raw)


def _bool(raw: Any, base: ModuleProfile) -> bool:
    if not isinstance(raw, bool):
        raise ValueError(f"must be true or false, got {raw!r}")
    return raw


def _name(raw: Any, base: ModuleProfile) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be a non-empty string")
    return raw


_CONVERTERS: dict[str, Any] = {
    "name": _name,
    "context_id": lambda raw, base: _int(raw, 0, 15),
    "connect_ids": lambda raw, base: _int_list(raw, 0, 15),
    "max_send_hex": lambda raw, base: _int(raw, 1, 65535),
    "max_send_text": lambda raw, base: _int(raw, 1, 65535),
    "max_recv_hex": lambda raw, base: _int(raw, 1, 65535),
    "max_recv_text": lambda raw, base: _int(raw, 1, 65535),
    "cipher_suites": _suites,
    "ssl_versions": lambda raw, base: _int_list(raw, 0, 4),
    "prompt_delay": _prompt_delay,
    "max_unconfirmed_sends": lambda raw, base: _int(raw, 1, 16),
    "recv_quoted": _bool,
    "open_results": _open_results,
    "unsigned_results": _bool,
    "title": lambda raw, base: _name(raw, base),
    "syntax_context_ids": lambda raw, base: _int_list(raw, 0, 15),
    "syntax_connect_ids": lambda raw, base: _int_list(raw, 0, 15),
}
assert set(_CONVERTERS) == set(_FIELDS)


# --------------------------------------------------------------------------- choosing


def detect_model(answer: str) -> ModuleProfile | None:
    """The built-in profile an ``ATI`` or ``AT+CGMM`` answer names, or None.

    ``ATI`` answers ``Quectel`` / ``BC660K-GL`` / ``Revision: ...``; ``AT+CGMM`` the model
    alone. The longest matching name wins (``BC20`` is not ``BC260Y``'s prefix issue).
    """
    words = re.findall(r"[A-Za-z0-9]+", answer.upper())
    for word in words:
        for profile in BUILTIN_PROFILES.values():
            if word == profile.name.upper() or word == profile.label.upper().split("-")[0]:
                return profile
    return None


# --------------------------------------------------------------------------- writing


def profile_overrides(profile: ModuleProfile, base: ModuleProfile) -> dict[str, Any]:
    """The fields where ``profile`` differs from ``base``, in profile-file form."""
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value, base_value = getattr(profile, name), getattr(base, name)
        if name == "open_results":
            diff = {k: v for k, v in value.items() if base_value.get(k) != v}
            if diff:
                out[name] = diff
        elif value != base_value:
            if name == "cipher_suites":
                out[name] = [s.iana_name for s in value]
            elif isinstance(value, tuple):
                out[name] = list(value)
            else:
                out[name] = value
    return out
