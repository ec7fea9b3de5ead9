"""Shared test set-up: bridged's log lines go to stderr, which pytest shows on failure."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

from bridged.ops.logs import LineObserver


class _CurrentStderr:
    """Writes to whatever sys.stderr is now (pytest swaps it per test to capture)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


@pytest.fixture(scope="session", autouse=True)
def twisted_log_to_stderr() -> Iterator[None]:
    level = LogLevel.levelWithName(os.environ.get("BRIDGED_TEST_LOG_LEVEL", "info"))
    observer = FilteringLogObserver(
        LineObserver(_CurrentStderr(), journald=False),  # type: ignore[arg-type]
        [LogLevelFilterPredicate(defaultLogLevel=level)],
    )
    globalLogPublisher.addObserver(observer)
    yield
    globalLogPublisher.removeObserver(observer)
