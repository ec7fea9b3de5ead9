"""Configuration problems: where each one is (file, line, column, key path) and what it is."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["ConfigError", "ConfigIssue", "KeyPath", "format_key_path"]

#: A key path in the document, e.g. ("sockets", 0, "ssl", "seclevel").
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
