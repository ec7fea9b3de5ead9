"""Where the pure core's log lines go: a sink the shell injects.

The core never imports a logging framework. A machine that logs takes a :class:`LogSink`;
the shell passes a ``twisted.logger.Logger`` in the namespace its lines have always had
(``Logger(namespace="bridged.at")`` for the AT session), which fits this protocol as it
is, so log lines, their fields and their namespaces do not change. Format strings are
``twisted.logger``'s (PEP 3101 fields filled from the keyword arguments).
"""

from __future__ import annotations

from typing import Protocol


class LogSink(Protocol):
    """The four levels the core uses; ``format`` names its fields, the keywords fill them.
    (``twisted.logger.Logger``'s signature, so a Logger is a sink as it is.)"""

    def debug(self, format: str | None = None, **kwargs: object) -> None: ...

    def info(self, format: str | None = None, **kwargs: object) -> None: ...

    def warn(self, format: str | None = None, **kwargs: object) -> None: ...

    def error(self, format: str | None = None, **kwargs: object) -> None: ...


class DiscardLog:
    """A sink that drops every line: for machines driven without a shell (tests, tools
    that report otherwise)."""

    def debug(self, format: str | None = None, **kwargs: object) -> None:
        pass

    def info(self, format: str | None = None, **kwargs: object) -> None:
        pass

    def warn(self, format: str | None = None, **kwargs: object) -> None:
        pass

    def error(self, format: str | None = None, **kwargs: object) -> None:
        pass


DISCARD_LOG = DiscardLog()


class DebugSwitch:
    """Whether debug lines are wanted at all. The shell's logging setup sets it once
    (``bridged.ops.logs.setup_logging``); until then they are. A debug line that the level
    filter then drops still costs Twisted about 10 µs to build and discard, so the lines a
    machine writes per command or per chunk check it first."""

    on: bool = True


DEBUG = DebugSwitch()
