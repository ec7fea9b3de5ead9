"""Configuration: YAML file -> validated, frozen dataclasses.

Loading runs in three phases, each reporting *all* of its problems at once:

1. YAML: syntax, duplicate keys. A custom SafeLoader remembers where every mapping entry and
   list item came from, so later phases can name file:line:column.
2. Schema: the shipped JSON Schema (``bridged/config/schema/bridged.schema.json``, Draft 2020-12)
   via jsonschema: types, ranges, enums, unknown keys (with "did you mean").
3. Semantics the schema cannot express: duplicate connect_id / listen addresses, loopback
   rules, seclevel vs certificates after merging defaults, and (``check_files``) the
   certificate files themselves. Messages never contain file contents.

Phase 3 only runs once phases 1 and 2 are clean, because it needs well-typed values.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import grp
import ipaddress
import json
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, cast

import jsonschema
import yaml

from bridged.config.module_profile_file import load_profile_file
from bridged.core.module_profile import (
    MODEL_CHOICES,
    ModuleProfile,
    ModuleProfileError,
    builtin_profile,
)

__all__ = [
    "Backoff",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ControlConfig",
    "DataFormat",
    "DataFormats",
    "Endpoint",
    "LogConfig",
    "LogLevel",
    "MetricsConfig",
    "ModemConfig",
    "QueueLimits",
    "ReconnectPolicy",
    "SerialConfig",
    "SocketConfig",
    "SocketMode",
    "SslSettings",
    "check_config_main",
    "load_config",
    "load_schema",
    "module_profile",
    "parse_config",
]

DataFormat = Literal["hex", "text"]


class DataFormats(NamedTuple):
    """``dataformat`` per direction: what AT+QSSLCFG "dataformat",<send>,<recv> writes."""

    send: DataFormat
    recv: DataFormat

    def __str__(self) -> str:
        return self.send if self.send == self.recv else f"send {self.send}, recv {self.recv}"


HEX_BOTH_WAYS: Final = DataFormats("hex", "hex")


def _dataformats(value: Any) -> DataFormats:
    """``hex`` / ``text`` (both directions) or ``{send: …, recv: …}`` (schema-validated)."""
    if isinstance(value, dict):
        return DataFormats(value["send"], value["recv"])
    return DataFormats(value, value)


SocketMode = Literal["on-demand", "persistent"]
LogLevel = Literal["debug", "info", "warn", "error"]

SECLEVEL_NAMES: Final[Mapping[int, str]] = {0: "none", 1: "server auth", 2: "mutual"}
# Certificate settings each seclevel needs (spec: AT+QSSLCFG "seclevel").
_REQUIRED_PEMS: Final[Mapping[int, tuple[str, ...]]] = {
    0: (),
    1: ("cacert",),
    2: ("cacert", "clientcert", "clientkey"),
}
_PEM_FIELDS: Final = ("cacert", "clientcert", "clientkey")
# PEMs are uploaded through the AT prompt; anything this big is surely the wrong file.
_MAX_PEM_BYTES: Final = 64 * 1024


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A ``host:port`` address; IPv6 hosts are stored without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Parse ``host:port`` / ``[v6]:port``; raise ValueError saying what is wrong."""
        if text.startswith("["):
            host, sep, port_text = text[1:].partition("]:")
            if not sep:
                raise ValueError(f"{text!r} is not '[ipv6]:port'")
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        else:
            host, sep, port_text = text.rpartition(":")
            if not sep:
                raise ValueError(f"{text!r} has no port; expected 'host:port'")
            if ":" in host:
                raise ValueError(f"IPv6 addresses need brackets, e.g. '[{host}]:{port_text}'")
            if not host:
                raise ValueError(f"{text!r} has no host; expected 'host:port'")
            _check_host_name(host)
        if not port_text.isascii() or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"port {port_text!r} is not a number in 1..65535")
        return cls(host, int(port_text))


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential backoff bounds in seconds."""

    initial: float = 1.0
    max: float = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SerialConfig:
    device: str
    baudrate: int = 115200
    reopen_backoff: Backoff = Backoff()
    #: Serial trace file (bridged.core.serial_trace); None: no trace.
    trace: Path | None = None
    trace_payload: bool = True
    trace_max_bytes: int = 10_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ModemConfig:
    #: bridged.core.module_profile.MODEL_CHOICES; "auto" asks the module at start.
    model: str = "bc26"
    #: A module profile file (bridged selftest writes one); wins over ``model``.
    profile_file: Path | None = None
    prompt_delay: float = 0.5
    command_timeout: float = 5.0
    init_retries: int = 3
    guard_time: float = 0.0  # the note asks for no gap; 0.02 cost 3-4 % (docs/performance.md)
    health_interval: float = 60.0  # 0 disables link-health polling
    max_consecutive_timeouts: int = 3
    allow_reset: bool = True  # may escalate to AT+QRST=1


@dataclass(frozen=True, slots=True, kw_only=True)
class SslSettings:
    """AT+QSSLCFG settings of one socket. Certificate paths are absolute (or None)."""

    seclevel: int = 1  # default: always verify the server; seclevel 0 must be explicit
    sslversion: int = 4
    dataformat: DataFormats = HEX_BOTH_WAYS
    timeout: int = 90
    debug: int = 0
    cacert: Path | None = None
    clientcert: Path | None = None
    clientkey: Path | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconnectPolicy:
    initial: float = 1.0
    max: float = 60.0
    jitter: float = 0.2  # fraction of each delay
    open_retries: int = 3  # on-demand: open attempts before the client is closed


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueLimits:
    send_max_bytes: int = 65536  # above this, stop reading the client (backpressure)
    recv_buffer_bytes: int = 65536  # persistent mode: data held while no client


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketConfig:
    connect_id: int
    listen: Endpoint
    remote: Endpoint
    mode: SocketMode = "on-demand"
    allow_remote: bool = False
    ssl: SslSettings = SslSettings()  # effective: defaults merged with this socket's overrides
    reconnect: ReconnectPolicy = ReconnectPolicy()
    queue: QueueLimits = QueueLimits()
    idle_timeout: float | None = None  # s without traffic before closing; None: by mode
    half_close_timeout: float = 60.0  # s without traffic once the client half-closed
    handover_wait: float = 2.0  # s a new client waits for the attached one to leave
    # s an attached client's bytes may wait with none confirmed before it is disconnected
    # (and the connection closed); 0: never (channel.Timeouts.send_stall)
    send_stall_timeout: float = 0.0

    @property
    def effective_idle_timeout(self) -> float:
        """on-demand: 300 s (an idle connection costs airtime and battery); persistent: 0
        (never: being connected is the point)."""
        if self.idle_timeout is not None:
            return self.idle_timeout
        return DEFAULT_IDLE_TIMEOUT[self.mode]


DEFAULT_IDLE_TIMEOUT: Final[Mapping[str, float]] = {"on-demand": 300.0, "persistent": 0.0}


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    listen: Endpoint = Endpoint("127.0.0.1", 9464)
    allow_remote: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LogConfig:
    level: LogLevel = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlConfig:
    socket: Path = Path("/run/bridged/control.sock")
    group: str | None = None
    mode: int = 0o660


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """The whole configuration. Plain value equality, so a reload can diff old and new."""

    serial: SerialConfig
    sockets: tuple[SocketConfig, ...]
    modem: ModemConfig = ModemConfig()
    ssl: SslSettings = SslSettings()  # the defaults as written; sockets carry merged copies
    metrics: MetricsConfig | None = MetricsConfig()  # None: metrics disabled
    log: LogConfig = LogConfig()
    control: ControlConfig = ControlConfig()


# --------------------------------------------------------------------------- errors

KeyPath = tuple[Hashable, ...]


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem, located in the file. line/column are 1-based; 0 when unknown."""

    file: str
    line: int
    column: int
    path: str  # key path such as "sockets[0].ssl.seclevel"; "" for the file itself
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Invalid configuration. ``str()`` lists every issue, one per line, sorted by line."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(
            sorted(issues, key=lambda i: (i.line, i.column, i.path))
        )
        super().__init__("\n".join(str(i) for i in self.issues))


def format_key_path(path: Sequence[Hashable]) -> str:
    """("sockets", 0, "ssl") -> "sockets[0].ssl"."""
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        elif isinstance(part, str):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


# --------------------------------------------------------------------------- YAML with marks


@dataclass(frozen=True, slots=True)
class _Where:
    line: int  # 1-based
    column: int  # 1-based


def _where(mark: yaml.Mark) -> _Where:
    return _Where(mark.line + 1, mark.column + 1)


class _MarkingLoader(yaml.SafeLoader):
    """SafeLoader that remembers the YAML nodes behind every mapping entry and list item.

    Keyed by id() of the constructed container; the container itself is kept in the tuple
    so its id cannot be reused while we still need the index.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.map_entries: dict[int, tuple[dict[Any, Any], dict[Any, tuple[Any, Any]]]] = {}
        self.map_duplicates: dict[int, list[tuple[Any, yaml.Node, yaml.Node]]] = {}
        self.seq_items: dict[int, tuple[list[Any], list[yaml.Node]]] = {}

    def construct_marked_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        yield data
        # Before construct_mapping flattens merge keys into node.value: a plain repeated key
        # is a mistake (PyYAML would silently keep the last one).
        first_seen: dict[tuple[str, str], yaml.Node] = {}
        repeated: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                if ident in first_seen:
                    repeated.append((first_seen[ident], key_node))
                else:
                    first_seen[ident] = key_node
        data.update(self.construct_mapping(node))
        entries: dict[Any, tuple[Any, Any]] = {}
        for key_node, value_node in node.value:  # flattened now; later entries win, as in data
            entries[self.construct_object(key_node)] = (key_node, value_node)
        self.map_entries[id(data)] = (data, entries)
        if repeated:
            self.map_duplicates[id(data)] = [
                (self.construct_object(second), first, second) for first, second in repeated
            ]

    def construct_marked_seq(self, node: yaml.SequenceNode) -> Iterator[list[Any]]:
        data: list[Any] = []
        yield data
        data.extend(self.construct_sequence(node))
        self.seq_items[id(data)] = (data, list(node.value))


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _MarkingLoader.construct_marked_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _MarkingLoader.construct_marked_seq)


@dataclass(slots=True)
class _Document:
    """Parsed YAML plus where each key path sits in the file."""

    source: str
    data: Any = None
    values: dict[KeyPath, _Where] = field(default_factory=dict)  # where each value starts
    scalars: dict[KeyPath, str] = field(default_factory=dict)  # scalar values as written
    keys: dict[KeyPath, _Where] = field(default_factory=dict)  # where each mapping key is

    def issue(self, path: KeyPath, message: str, *, at_key: bool = False) -> ConfigIssue:
        where = self.locate(path, at_key=at_key)
        return ConfigIssue(self.source, where.line, where.column, format_key_path(path), message)

    def locate(self, path: KeyPath, *, at_key: bool = False) -> _Where:
        if at_key and path in self.keys:
            return self.keys[path]
        # Missing keys and built-in defaults have no node: fall back to the nearest ancestor.
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return _Where(1, 1)

    def has(self, path: KeyPath) -> bool:
        return path in self.values


def _parse_yaml(text: str, source: str) -> tuple[_Document, list[ConfigIssue], bool]:
    """The document, issues found, and whether they are fatal (nothing left to validate)."""
    doc = _Document(source)
    try:
        loader = _MarkingLoader(text)
    except yaml.reader.ReaderError as exc:  # e.g. a control character in the text
        return doc, [_reader_issue(exc, text, source)], True
    try:
        root = loader.get_single_node()
        if root is None:
            empty = "the file is empty; it needs at least 'serial' and 'sockets'"
            return doc, [ConfigIssue(source, 0, 0, "", empty)], True
        doc.data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        return doc, [_syntax_issue(exc, source)], True
    except yaml.reader.ReaderError as exc:
        return doc, [_reader_issue(exc, text, source)], True
    finally:
        loader.dispose()

    issues: list[ConfigIssue] = []
    recursive = False
    doc.values[()] = _where(root.start_mark)

    def walk(obj: Any, path: KeyPath, active: frozenset[int]) -> None:
        nonlocal recursive
        if id(obj) in active:  # a recursive alias (&a [*a]) would make the validator loop
            issues.append(doc.issue(path, "recursive YAML alias is not allowed"))
            recursive = True
            return
        inner = active | {id(obj)}
        entry = loader.map_entries.get(id(obj))
        if isinstance(obj, dict) and entry is not None and entry[0] is obj:
            for key, (key_node, value_node) in entry[1].items():
                doc.keys[(*path, key)] = _where(key_node.start_mark)
                doc.values[(*path, key)] = _where(value_node.start_mark)
                if isinstance(value_node, yaml.ScalarNode):
                    doc.scalars[(*path, key)] = value_node.value
            for key, first, second in loader.map_duplicates.get(id(obj), ()):
                where = _where(second.start_mark)
                issues.append(
                    ConfigIssue(
                        source,
                        where.line,
                        where.column,
                        format_key_path((*path, key)),
                        f"duplicate key (first given on line {first.start_mark.line + 1})",
                    )
                )
            for key in entry[1]:
                walk(obj[key], (*path, key), inner)
            return
        seq = loader.seq_items.get(id(obj))
        if isinstance(obj, list) and seq is not None and seq[0] is obj:
            for index, item_node in enumerate(seq[1]):
                doc.values[(*path, index)] = _where(item_node.start_mark)
            for index, item in enumerate(obj):
                walk(item, (*path, index), inner)
            return
        if isinstance(obj, float) and math.isnan(obj):  # NaN slips through min/max checks
            issues.append(doc.issue(path, "NaN is not allowed here"))

    walk(doc.data, (), frozenset())
    return doc, issues, recursive


def _syntax_issue(exc: yaml.MarkedYAMLError, source: str) -> ConfigIssue:
    mark = exc.problem_mark or exc.context_mark
    where = _where(mark) if mark is not None else _Where(0, 0)
    message = f"YAML syntax: {exc.problem or exc.context}"
    if exc.problem and exc.context:
        message += f" ({exc.context}"
        if exc.context_mark is not None and exc.context_mark is not mark:
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    return ConfigIssue(source, where.line, where.column, "", message)


def _reader_issue(exc: yaml.reader.ReaderError, text: str, source: str) -> ConfigIssue:
    before = text[: exc.position]
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    code = exc.character if isinstance(exc.character, int) else ord(exc.character)
    message = f"YAML syntax: control character 0x{code:02X} is not allowed"
    return ConfigIssue(source, line, column, "", message)


# --------------------------------------------------------------------------- schema

_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?")


def _check_host_name(host: str) -> None:
    """Accept an IPv4 literal or a DNS name; the module gets it inside quotes in AT+QSSLOPEN."""
    try:
        ipaddress.IPv4Address(host)
        return
    except ValueError:
        pass
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        raise ValueError(f"{host!r} is not a valid host name or IPv4 address")
    if host.rstrip(".").rsplit(".", 1)[-1].isdigit():  # 1.2.3.999: a bad IP, not a name
        raise ValueError(f"{host!r} is not a valid IPv4 address")


_format_checker = jsonschema.FormatChecker(formats=())


@_format_checker.checks("bridged-endpoint", raises=ValueError)
def _is_endpoint(instance: object) -> bool:
    if isinstance(instance, str):
        Endpoint.parse(instance)
    return True


def load_schema() -> dict[str, Any]:
    """The shipped JSON Schema (a fresh copy)."""
    text = (
        resources.files("bridged.config").joinpath("schema/bridged.schema.json").read_text("utf-8")
    )
    return cast(dict[str, Any], json.loads(text))


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(load_schema(), format_checker=_format_checker)


_TYPE_NAMES: Final = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


def _show(value: object) -> str:
    """A value as the user would write it in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 10 rather than 10.0: numbers as the user wrote them
    if isinstance(value, int | float | str):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _kind(value: object, written: str | None) -> str:
    """What the user wrote, for "expected X, got Y"."""
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return _show(value)
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, int | float):
        # YAML 1.1 reads 0660 as octal 432: show both so the surprise is visible.
        if written is not None and written != repr(value):
            return f"the number {written} (= {value!r})"
        return f"the number {value!r}"
    return _show(value)


def _with_hint(message: str, schema: Mapping[str, Any]) -> str:
    hint = schema.get("x-hint")
    return f"{message} ({hint})" if hint else message


def _did_you_mean(word: object, choices: Sequence[object]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, [c for c in choices if isinstance(c, str)], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _describe(error: jsonschema.ValidationError, doc: _Document) -> list[tuple[KeyPath, str, bool]]:
    """(key path, message, point at the key rather than the value) for one schema error."""
    path: KeyPath = tuple(error.absolute_path)
    value: Any = error.instance
    rule: Any = error.validator_value  # the keyword's value in the schema
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    keyword = error.validator

    if keyword == "additionalProperties" and isinstance(value, dict):
        allowed = list(schema.get("properties", {}))
        out = []
        for key in value:
            if key not in allowed:
                hint = _did_you_mean(key, allowed) or f" (allowed here: {', '.join(allowed)})"
                out.append(((*path, key), f"unknown key {_show(key)}{hint}", True))
        return out
    if keyword == "required" and isinstance(value, dict):
        return [
            ((*path, key), "required key is missing", False) for key in rule if key not in value
        ]
    if keyword == "type":
        types = rule if isinstance(rule, list) else [rule]
        wanted = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in types if t != "null")
        got = _kind(value, doc.scalars.get(path))
        return [(path, f"expected {_with_hint(wanted, schema)}, got {got}", False)]
    if keyword == "enum":
        choices: list[object] = rule
        message = f"{_show(value)} is not one of {', '.join(_show(c) for c in choices)}"
        return [(path, _with_hint(message, schema) + _did_you_mean(value, choices), False)]
    if keyword in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            message = f"{_show(value)} is out of range {_show(low)}..{_show(high)}"
        elif low is not None:
            message = f"{_show(value)} is less than {_show(low)}"
        else:
            message = f"{_show(value)} is greater than {_show(high)}"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "minItems":
        return [(path, _with_hint(f"needs at least {rule} entry", schema), False)]
    if keyword == "maxItems":
        message = f"has {len(value)} entries, at most {rule} allowed"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "minLength":
        return [(path, "must not be empty", False)]
    if keyword == "maxLength":
        message = f"is longer than {rule} characters"
        return [(path, _with_hint(message, schema), False)]
    if keyword == "format":
        return [(path, str(error.cause) if error.cause else error.message, False)]
    if keyword == "pattern":
        form = schema.get("x-hint")
        wanted = f"; expected {form}" if form else f" (pattern {rule})"
        return [(path, f"{_show(value)} is not valid{wanted}", False)]
    if keyword in ("oneOf", "anyOf") and schema.get("x-hint"):
        return [(path, f"{_show(value)} is not allowed; expected {schema['x-hint']}", False)]
    return [(path, error.message, False)]


def _schema_issues(doc: _Document) -> list[ConfigIssue]:
    found: dict[KeyPath, tuple[int, ConfigIssue]] = {}
    for error in _validator().iter_errors(doc.data):
        # When a value fails both the editor-facing pattern and our format check, keep the
        # format check's more precise message: one issue per key path.
        rank = 0 if error.validator == "format" else 1
        for path, message, at_key in _describe(error, doc):
            issue = doc.issue(path, message, at_key=at_key)
            if path not in found or rank < found[path][0]:
                found[path] = (rank, issue)
    return [issue for _, issue in found.values()]


# --------------------------------------------------------------------------- building


def _pick(section: object, converters: Mapping[str, Callable[[Any], Any]]) -> dict[str, Any]:
    """Keyword arguments for the keys present in a (schema-validated) section."""
    if not isinstance(section, dict):
        return {}
    return {name: convert(section[name]) for name, convert in converters.items() if name in section}


def _as_float(value: Any) -> float:
    return float(value)


def _as_int(value: Any) -> int:
    return int(value)  # the schema accepts 90.0 as an integer


def _ssl_converters(base_dir: Path) -> dict[str, Callable[[Any], Any]]:
    def pem_path(value: Any) -> Path | None:
        return None if value is None else base_dir / Path(value)  # absolute paths stay as-is

    return {
        "seclevel": _as_int,
        "sslversion": _as_int,
        "dataformat": _dataformats,
        "timeout": _as_int,
        "debug": _as_int,
        "cacert": pem_path,
        "clientcert": pem_path,
        "clientkey": pem_path,
    }


_MODEM: Final[Mapping[str, Callable[[Any], Any]]] = {
    "model": str,
    "prompt_delay": _as_float,
    "command_timeout": _as_float,
    "init_retries": _as_int,
    "guard_time": _as_float,
    "health_interval": _as_float,
    "max_consecutive_timeouts": _as_int,
    "allow_reset": bool,
}
_BACKOFF: Final[Mapping[str, Callable[[Any], Any]]] = {"initial": _as_float, "max": _as_float}
_RECONNECT: Final[Mapping[str, Callable[[Any], Any]]] = {
    **_BACKOFF,
    "jitter": _as_float,
    "open_retries": _as_int,
}
_QUEUE: Final[Mapping[str, Callable[[Any], Any]]] = {
    "send_max_bytes": _as_int,
    "recv_buffer_bytes": _as_int,
}

_SOCKET_TIMEOUTS: Final[Mapping[str, Callable[[Any], Any]]] = {
    "idle_timeout": _as_float,
    "half_close_timeout": _as_float,
    "handover_wait": _as_float,
    "send_stall_timeout": _as_float,
}


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _octal_mode(text: str) -> int:
    return int(text.removeprefix("0o"), 8)


def _build(data: dict[str, Any], base_dir: Path) -> Config:
    ssl_converters = _ssl_converters(base_dir)
    serial = data["serial"]
    ssl_defaults = SslSettings(**_pick(data.get("ssl"), ssl_converters))
    sockets = tuple(
        SocketConfig(
            connect_id=int(item["connect_id"]),
            listen=Endpoint.parse(item["listen"]),
            remote=Endpoint.parse(item["remote"]),
            mode=cast(SocketMode, item.get("mode", "on-demand")),
            allow_remote=bool(item.get("allow_remote", False)),
            ssl=dataclasses.replace(ssl_defaults, **_pick(item.get("ssl"), ssl_converters)),
            reconnect=ReconnectPolicy(**_pick(item.get("reconnect"), _RECONNECT)),
            queue=QueueLimits(**_pick(item.get("queue"), _QUEUE)),
            **_pick(item, _SOCKET_TIMEOUTS),
        )
        for item in data["sockets"]
    )
    metrics_section = data.get("metrics") or {}
    metrics = (
        MetricsConfig(**_pick(metrics_section, {"listen": Endpoint.parse, "allow_remote": bool}))
        if metrics_section.get("enabled", True)
        else None
    )
    return Config(
        serial=SerialConfig(
            device=serial["device"],
            **_pick(
                serial,
                {
                    "baudrate": _as_int,
                    "trace": lambda v: None if v is None else base_dir / v,
                    "trace_payload": bool,
                    "trace_max_bytes": _as_int,
                },
            ),
            reopen_backoff=Backoff(**_pick(serial.get("reopen_backoff"), _BACKOFF)),
        ),
        sockets=sockets,
        modem=ModemConfig(
            **_pick(data.get("modem"), _MODEM),
            **_pick(
                data.get("modem"),
                {"profile_file": lambda v: None if v is None else base_dir / v},
            ),
        ),
        ssl=ssl_defaults,
        metrics=metrics,
        log=LogConfig(**_pick(data.get("log"), {"level": str})),
        control=ControlConfig(
            **_pick(
                data.get("control"), {"socket": Path, "group": _optional_str, "mode": _octal_mode}
            )
        ),
    )


# --------------------------------------------------------------------------- semantic checks


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


def _check_sockets(config: Config, doc: _Document) -> list[ConfigIssue]:
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


def _backoff_issue(doc: _Document, path: KeyPath, initial: float) -> ConfigIssue:
    return doc.issue((*path, "max"), f"max must be at least initial ({_show(initial)})")


def _ssl_origin(doc: _Document, index: int, name: str) -> KeyPath | None:
    """Where socket index's effective ssl.<name> was written; None for the built-in default."""
    for path in (("sockets", index, "ssl", name), ("ssl", name)):
        if doc.has(path):
            return path
    return None


def module_profile(config: Config) -> ModuleProfile | None:
    """The configured module's profile (None: ``model: auto``, known at start).

    Raises ModuleProfileError for a bad profile file (load_config reports it as an issue).
    """
    if config.modem.profile_file is not None:
        return load_profile_file(config.modem.profile_file)
    if config.modem.model == "auto":
        return None
    return builtin_profile(config.modem.model)


def _check_model(config: Config, doc: _Document, check_files: bool) -> list[ConfigIssue]:
    """What the configured module cannot do: a socket it lacks, a TLS version it refuses."""
    assert config.modem.model in MODEL_CHOICES  # the schema's enum
    if config.modem.profile_file is not None and not check_files:
        return []  # the profile file is this host's, like the certificates
    try:
        profile = module_profile(config)
    except ModuleProfileError as exc:
        return [doc.issue(("modem", "profile_file"), "; ".join(exc.problems))]
    if profile is None:
        return []
    origin: KeyPath = (
        ("modem", "profile_file") if config.modem.profile_file is not None else ("modem", "model")
    )
    named = (
        f"the {profile.label} (modem.model)"
        if origin[1] == "model"
        else f"the {profile.label} ({config.modem.profile_file})"
    )
    if not doc.has(origin):
        named = f"the {profile.label} (the default modem.model)"
    issues = []
    version_origins: set[KeyPath] = set()
    for index, sock in enumerate(config.sockets):
        if sock.connect_id not in profile.connect_ids:
            issues.append(
                doc.issue(
                    ("sockets", index, "connect_id"),
                    f"{sock.connect_id}: {named} has {profile.connect_ids_text()}",
                )
            )
        if sock.ssl.sslversion not in profile.ssl_versions:
            where = _ssl_origin(doc, index, "sslversion") or ("sockets", index)
            if where in version_origins:
                continue
            version_origins.add(where)
            issues.append(
                doc.issue(
                    where,
                    f"sslversion {sock.ssl.sslversion} is not supported by {named} "
                    f"(it takes {', '.join(map(str, profile.ssl_versions))})",
                )
            )
    return issues


def _check_seclevels(config: Config, doc: _Document) -> list[ConfigIssue]:
    # Grouped by where the seclevel was set, so a default inherited by several sockets is
    # reported once at ssl.seclevel rather than once per socket.
    groups: dict[tuple[KeyPath, int, tuple[str, ...]], list[int]] = {}
    for index, sock in enumerate(config.sockets):
        level = sock.ssl.seclevel
        missing = tuple(n for n in _REQUIRED_PEMS[level] if getattr(sock.ssl, n) is None)
        if missing:
            origin = _ssl_origin(doc, index, "seclevel") or ("sockets", index)
            groups.setdefault((origin, level, missing), []).append(index)
    issues = []
    for (origin, level, missing), indexes in groups.items():
        needs = _join(_REQUIRED_PEMS[level])
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


def _check_files(config: Config, doc: _Document) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    checked: set[KeyPath] = set()
    for index, sock in enumerate(config.sockets):
        for name in _PEM_FIELDS:
            path = getattr(sock.ssl, name)
            origin = _ssl_origin(doc, index, name)
            if path is None or origin is None or origin in checked:
                continue
            checked.add(origin)
            issues.extend(doc.issue(origin, problem) for problem in _pem_problems(path, name))
    group = config.control.group
    if group is not None:
        try:
            grp.getgrnam(group)
        except KeyError:
            issues.append(doc.issue(("control", "group"), f"no such group {group!r}"))
    return issues


def _pem_problems(path: Path, name: str) -> list[str]:
    """What is wrong with a certificate/key file. Never quotes the file's content."""
    try:
        info = os.stat(path)
    except OSError as exc:
        return [f"cannot read {path}: {exc.strerror}"]
    if stat.S_ISDIR(info.st_mode):
        return [f"{path} is a directory, not a PEM file"]
    if not stat.S_ISREG(info.st_mode):
        return [f"{path} is not a regular file"]
    # os.access answers for the real uid (root passes everything); open() is the real test.
    if not os.access(path, os.R_OK):
        return [f"cannot read {path}: permission denied for uid {os.getuid()}"]
    if info.st_size > _MAX_PEM_BYTES:
        return [f"{path} is {info.st_size} bytes; a PEM {name} is at most {_MAX_PEM_BYTES}"]
    problems = []
    if name == "clientkey" and info.st_mode & 0o077:
        problems.append(
            f"{path} is accessible by group or others (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"a private key must be private: chmod 600 {path}"
        )
    try:
        with open(path, "rb") as file:
            content = file.read(_MAX_PEM_BYTES + 1)
    except OSError as exc:
        return [*problems, f"cannot read {path}: {exc.strerror}"]
    problem = _pem_content_problem(content, name)
    if problem:
        problems.append(f"{path} {problem}")
    return problems


def _pem_content_problem(content: bytes, name: str) -> str | None:
    body = content.lstrip()
    if not body.startswith(b"-----BEGIN "):
        return "is not a PEM file (it must start with '-----BEGIN')"
    label = body[len(b"-----BEGIN ") :].split(b"-----", 1)[0]
    if name == "clientkey":
        if label.startswith(b"ENCRYPTED") or b"Proc-Type: 4,ENCRYPTED" in body:
            return "is an encrypted private key; the module cannot decrypt it (store it plain)"
        if not label.endswith(b"PRIVATE KEY"):
            return "is not a PEM private key (expected '-----BEGIN ... PRIVATE KEY-----')"
    elif label != b"CERTIFICATE":
        return "is not a PEM certificate (expected '-----BEGIN CERTIFICATE-----')"
    if b"-----END " not in body:
        return "is truncated (no '-----END' line)"
    # Uploaded through the AT prompt: 0x1A ends and 0x1B cancels the upload.
    if any(byte > 0x7E or (byte < 0x20 and byte not in b"\t\r\n") for byte in content):
        return "contains bytes other than printable ASCII, which the AT upload cannot carry"
    return None


# --------------------------------------------------------------------------- public API


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_files: bool = True,
) -> Config:
    """Validate YAML text; see load_config. Relative PEM paths resolve against base_dir."""
    doc, issues, fatal = _parse_yaml(text, source)
    if fatal:
        raise ConfigError(issues)
    issues += _schema_issues(doc)  # duplicate keys and NaNs are reported along with these
    if issues:
        raise ConfigError(issues)
    config = _build(doc.data, base_dir or Path.cwd())
    issues = _check_sockets(config, doc) + _check_seclevels(config, doc)
    issues += _check_model(config, doc, check_files)
    if check_files:
        issues += _check_files(config, doc)
    if issues:
        raise ConfigError(issues)
    return config


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> Config:
    """Load and validate a configuration file.

    Raises ConfigError listing every problem as ``FILE:LINE:COLUMN: KEY.PATH: message``.
    check_files=False skips what depends on this host: certificate files (existence,
    readability, key permissions, PEM form) and the control group.
    """
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, 0, 0, "", f"cannot read: {exc.strerror}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        issue = ConfigIssue(source, line, 0, "", "the file is not valid UTF-8")
        raise ConfigError([issue]) from None
    base_dir = Path(source).absolute().parent
    return parse_config(text, source=source, base_dir=base_dir, check_files=check_files)


def check_config_main(path: str | os.PathLike[str]) -> int:
    """``bridged -t``: 0 and a success line on stdout, or 2 and the problems on stderr."""
    try:
        load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"bridged: configuration file {os.fspath(path)} test failed", file=sys.stderr)
        return 2
    print(f"bridged: configuration file {os.fspath(path)} test is successful")
    return 0
