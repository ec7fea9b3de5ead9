"""Parsing one AT command line (after ``AT``) into name, kind and arguments."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class CommandKind(Enum):
    EXEC = "exec"  # AT+CMD    ATE0
    READ = "read"  # AT+CMD?
    TEST = "test"  # AT+CMD=?
    WRITE = "write"  # AT+CMD=<args>


@dataclass(frozen=True)
class Arg:
    """One comma-separated argument; ``quoted`` keeps string and integer apart."""

    text: str
    quoted: bool

    def as_int(self) -> int | None:
        """The integer value of an unquoted decimal argument, None otherwise."""
        if self.quoted or not _INTEGER.fullmatch(self.text):
            return None
        return int(self.text)

    def as_string(self) -> str | None:
        """The text of a quoted argument, None for a bare one."""
        return self.text if self.quoted else None


@dataclass(frozen=True)
class Command:
    """``name`` is upper-cased and includes ``AT``: ``AT``, ``ATE``, ``AT+QSSLCFG``."""

    name: str
    kind: CommandKind
    args: tuple[Arg, ...] = ()

    def int_arg(self, index: int) -> int | None:
        return self.args[index].as_int() if index < len(self.args) else None


_INTEGER = re.compile(r"-?[0-9]{1,9}")
_EXTENDED = re.compile(r"([+&][A-Za-z][A-Za-z0-9]*)(.*)", re.DOTALL)
_BASIC = re.compile(r"([A-Za-z])([0-9]*)")


def parse_command(line: str) -> Command | None:
    """Parse a line that starts with AT/at; None when it is not well formed."""
    if line[:2].upper() != "AT":
        return None
    body = line[2:]
    if not body:
        return Command("AT", CommandKind.EXEC)
    extended = _EXTENDED.fullmatch(body)
    if extended:
        return _parse_extended("AT" + extended.group(1).upper(), extended.group(2))
    basic = _BASIC.fullmatch(body)
    if basic:
        # V.250 basic command: ATE0, ATI; the digits are its one argument.
        name = "AT" + basic.group(1).upper()
        digits = basic.group(2)
        args = (Arg(digits, quoted=False),) if digits else ()
        return Command(name, CommandKind.EXEC, args)
    return None


def _parse_extended(name: str, rest: str) -> Command | None:
    if rest == "":
        return Command(name, CommandKind.EXEC)
    if rest == "?":
        return Command(name, CommandKind.READ)
    if rest == "=?":
        return Command(name, CommandKind.TEST)
    if rest.startswith("="):
        args = split_args(rest[1:])
        return None if args is None else Command(name, CommandKind.WRITE, args)
    return None


def split_args(text: str) -> tuple[Arg, ...] | None:
    """Split on commas outside double quotes; None on an unterminated or stray quote."""
    args: list[Arg] = []
    for token in _tokens(text):
        if token is None:
            return None
        args.append(token)
    return tuple(args)


def _tokens(text: str) -> list[Arg | None]:
    tokens: list[Arg | None] = []
    i = 0
    while True:
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == '"':
            end = text.find('"', i + 1)
            if end < 0:
                return [None]
            token: Arg | None = Arg(text[i + 1 : end], quoted=True)
            i = end + 1
            while i < len(text) and text[i] == " ":
                i += 1
            if i < len(text) and text[i] != ",":
                token = None
        else:
            end = text.find(",", i)
            end = len(text) if end < 0 else end
            raw = text[i:end].strip()
            token = None if '"' in raw else Arg(raw, quoted=False)
            i = end
        tokens.append(token)
        if i >= len(text):
            return tokens
        i += 1  # the comma
