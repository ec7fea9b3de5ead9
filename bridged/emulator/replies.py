"""What a command handler returns to the interpreter."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridged.emulator.results import CmeError


@dataclass(frozen=True)
class DataRequest:
    """Ask for data after ``>``.

    ``fixed_length``: exactly that many raw bytes (hex digits count singly), binary
    safe. None: variable length, ended by Ctrl+Z, cancelled by Esc, at most
    ``max_length`` raw bytes (more → ERROR at the end).
    """

    fixed_length: int | None
    max_length: int
    #: Data mode gives up after this long without a byte.
    timeout: float
    on_data: Callable[[bytes], Reply]
    on_cancel: Callable[[], Reply]


@dataclass(frozen=True)
class Reply:
    """Info lines and a final result, or a prompt for data.

    ``then`` runs after the final result is on the line (start a connection, …), so
    anything it reports comes after ``OK``.
    """

    lines: tuple[bytes, ...] = ()
    error: CmeError | None = None
    prompt: DataRequest | None = None
    then: Callable[[], None] | None = None

    @staticmethod
    def ok(*lines: str | bytes, then: Callable[[], None] | None = None) -> Reply:
        encoded = tuple(x.encode("ascii") if isinstance(x, str) else x for x in lines)
        return Reply(lines=encoded, then=then)

    @staticmethod
    def fail(error: CmeError = CmeError.INCORRECT_PARAMETERS) -> Reply:
        return Reply(error=error)

    @staticmethod
    def ask(request: DataRequest) -> Reply:
        return Reply(prompt=request)
