"""``bridged check-config`` / ``bridged -t``: test a configuration file, nginx style."""

from __future__ import annotations

import os
import sys

from bridged.config.errors import ConfigError
from bridged.config.load import load_config

__all__ = ["check_config_main"]


def check_config_main(path: str | os.PathLike[str]) -> int:
    """0 and a success line on stdout, or 2 and the problems on stderr."""
    try:
        load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"bridged: configuration file {os.fspath(path)} test failed", file=sys.stderr)
        return 2
    print(f"bridged: configuration file {os.fspath(path)} test is successful")
    return 0
