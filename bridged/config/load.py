"""Loading: a file or text through the three phases, every problem of a phase at once.

1. YAML (bridged.config.document): syntax, duplicate keys, recursive aliases, NaNs.
2. Schema (bridged.config.schema_check): types, ranges, enums, unknown keys.
3. Semantics (bridged.config.validate, .profile, .files) on the built configuration.

Phase 3 only runs once phases 1 and 2 are clean, because it needs well-typed values.
"""

from __future__ import annotations

import os
from pathlib import Path

from bridged.config.build import build_config
from bridged.config.document import parse_yaml
from bridged.config.errors import ConfigError, ConfigIssue
from bridged.config.model import Config
from bridged.config.schema_check import schema_issues
from bridged.config.validate import semantic_issues

__all__ = ["load_config", "parse_config"]


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_files: bool = True,
) -> Config:
    """Validate YAML text; see load_config. Relative PEM paths resolve against base_dir."""
    doc, issues, fatal = parse_yaml(text, source)
    if fatal:
        raise ConfigError(issues)
    issues += schema_issues(doc)  # duplicate keys and NaNs are reported along with these
    if issues:
        raise ConfigError(issues)
    config = build_config(doc.data, base_dir or Path.cwd())
    issues = semantic_issues(config, doc, check_host=check_files)
    if issues:
        raise ConfigError(issues)
    return config


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> Config:
    """Load and validate a configuration file.

    Raises ConfigError listing every problem as ``FILE:LINE:COLUMN: KEY.PATH: message``.
    check_files=False skips what depends on this host: certificate files (existence,
    readability, key permissions, PEM form), a module profile file and the control group.
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
