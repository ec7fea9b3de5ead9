"""Configuration: YAML file -> validated, frozen dataclasses holding the runtime types.

One module per concept:

- :mod:`~bridged.config.errors`: ConfigIssue / ConfigError, located ``file:line:column``;
- :mod:`~bridged.config.document`: YAML with line tracking (syntax, duplicate keys);
- :mod:`~bridged.config.schema_check`: the packaged JSON Schema
  (``bridged/config/schema/bridged.schema.json``, Draft 2020-12) and its errors as messages;
- :mod:`~bridged.config.model`: the configuration's types;
- :mod:`~bridged.config.build`: a schema-valid document -> the configuration;
- :mod:`~bridged.config.validate`, :mod:`~bridged.config.profile`,
  :mod:`~bridged.config.files`: semantics the schema cannot express, the module's limits,
  the files on this host;
- :mod:`~bridged.config.load`: the three phases; :mod:`~bridged.config.check`: ``bridged
  check-config``.

Callers import from here.
"""

from bridged.config.check import check_config_main
from bridged.config.errors import ConfigError, ConfigIssue, format_key_path
from bridged.config.load import load_config, parse_config
from bridged.config.model import (
    DEFAULT_IDLE_TIMEOUT,
    Config,
    ControlConfig,
    Endpoint,
    LogConfig,
    LogLevelName,
    MetricsConfig,
    ModemConfig,
    SerialConfig,
    SocketConfig,
    SslSettings,
    socket_timeouts,
)
from bridged.config.profile import module_profile
from bridged.config.schema_check import load_schema
from bridged.core.at_codec import DataFormat, DataFormatSetting
from bridged.core.backoff import BackoffBounds
from bridged.core.channel_types import QueueLimits, ReconnectPolicy, Timeouts

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "BackoffBounds",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ControlConfig",
    "DataFormat",
    "DataFormatSetting",
    "Endpoint",
    "LogConfig",
    "LogLevelName",
    "MetricsConfig",
    "ModemConfig",
    "QueueLimits",
    "ReconnectPolicy",
    "SerialConfig",
    "SocketConfig",
    "SslSettings",
    "Timeouts",
    "check_config_main",
    "format_key_path",
    "load_config",
    "load_schema",
    "module_profile",
    "parse_config",
    "socket_timeouts",
]
