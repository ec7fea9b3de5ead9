"""Building the configuration from a schema-valid document: runtime types, directly.

The document has passed the JSON Schema, so every value present has the right type and
range; building only converts (paths against the configuration's directory, octal modes,
data-format words) and merges the ssl defaults into each socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, cast

from bridged.config.model import (
    Config,
    ControlConfig,
    Endpoint,
    LogConfig,
    MetricsConfig,
    ModemConfig,
    SerialConfig,
    SocketConfig,
    SslSettings,
    socket_timeouts,
)
from bridged.core.at_codec import DataFormat, DataFormatSetting
from bridged.core.backoff import BackoffBounds
from bridged.core.channel_types import Mode, QueueLimits, ReconnectPolicy

__all__ = ["build_config"]

Converters = Mapping[str, Callable[[Any], Any]]


def _pick(section: object, converters: Converters) -> dict[str, Any]:
    """Keyword arguments for the keys present in a (schema-validated) section."""
    if not isinstance(section, dict):
        return {}
    return {name: convert(section[name]) for name, convert in converters.items() if name in section}


def _as_float(value: Any) -> float:
    return float(value)


def _as_int(value: Any) -> int:
    return int(value)  # the schema accepts 90.0 as an integer


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _octal_mode(text: str) -> int:
    return int(text.removeprefix("0o"), 8)


def _data_format_setting(value: Any) -> DataFormatSetting:
    """``hex`` / ``text`` (both directions) or ``{send: …, recv: …}`` (schema-validated)."""
    if isinstance(value, dict):
        send, recv = (DataFormat.from_word(value[direction]) for direction in ("send", "recv"))
        return DataFormatSetting(send, recv)
    return DataFormatSetting.both(DataFormat.from_word(value))


def _relative_to(base_dir: Path) -> Callable[[Any], Path | None]:
    def path(value: Any) -> Path | None:
        return None if value is None else base_dir / Path(value)  # absolute paths stay as-is

    return path


def _ssl_converters(base_dir: Path) -> Converters:
    return {
        "seclevel": _as_int,
        "sslversion": _as_int,
        "dataformat": _data_format_setting,
        "timeout": _as_int,
        "debug": _as_int,
        "cacert": _relative_to(base_dir),
        "clientcert": _relative_to(base_dir),
        "clientkey": _relative_to(base_dir),
    }


_MODEM: Final[Converters] = {
    "model": str,
    "prompt_delay": _optional_float,
    "command_timeout": _as_float,
    "init_retries": _as_int,
    "guard_time": _as_float,
    "health_interval": _as_float,
    "max_consecutive_timeouts": _as_int,
    "allow_reset": bool,
}
_BACKOFF: Final[Converters] = {"initial": _as_float, "max": _as_float}
_RECONNECT: Final[Converters] = {**_BACKOFF, "jitter": _as_float, "open_retries": _as_int}
_QUEUE: Final[Converters] = {"send_max_bytes": _as_int, "recv_buffer_bytes": _as_int}
# The configuration's words for a socket's timeouts -> the channel's Timeouts fields.
_TIMEOUT_FIELDS: Final[Mapping[str, str]] = {
    "idle_timeout": "idle",
    "half_close_timeout": "half_close",
    "handover_wait": "handover_wait",
    "send_stall_timeout": "send_stall",
}


def _socket(item: dict[str, Any], ssl_defaults: SslSettings, ssl: Converters) -> SocketConfig:
    mode = cast(Mode, item.get("mode", "on-demand"))
    written = {field: float(item[key]) for key, field in _TIMEOUT_FIELDS.items() if key in item}
    return SocketConfig(
        connect_id=int(item["connect_id"]),
        listen=Endpoint.parse(item["listen"]),
        remote=Endpoint.parse(item["remote"]),
        mode=mode,
        allow_remote=bool(item.get("allow_remote", False)),
        ssl=dataclasses.replace(ssl_defaults, **_pick(item.get("ssl"), ssl)),
        reconnect=ReconnectPolicy(**_pick(item.get("reconnect"), _RECONNECT)),
        queue=QueueLimits(**_pick(item.get("queue"), _QUEUE)),
        timeouts=socket_timeouts(mode, **written),
    )


def build_config(data: dict[str, Any], base_dir: Path) -> Config:
    """The configuration of a schema-valid document; relative paths against base_dir."""
    ssl = _ssl_converters(base_dir)
    serial = data["serial"]
    ssl_defaults = SslSettings(**_pick(data.get("ssl"), ssl))
    metrics_section = data.get("metrics") or {}
    metrics = (
        MetricsConfig(**_pick(metrics_section, {"listen": Endpoint.parse, "allow_remote": bool}))
        if metrics_section.get("enabled", True)
        else None
    )
    serial_converters: Converters = {
        "baudrate": _as_int,
        "trace": _relative_to(base_dir),
        "trace_payload": bool,
        "trace_max_bytes": _as_int,
    }
    return Config(
        serial=SerialConfig(
            device=serial["device"],
            **_pick(serial, serial_converters),
            reopen_backoff=BackoffBounds(**_pick(serial.get("reopen_backoff"), _BACKOFF)),
        ),
        sockets=tuple(_socket(item, ssl_defaults, ssl) for item in data["sockets"]),
        modem=ModemConfig(
            **_pick(data.get("modem"), _MODEM),
            **_pick(data.get("modem"), {"profile_file": _relative_to(base_dir)}),
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
