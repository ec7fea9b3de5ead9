"""The channel's vocabulary: its states, its settings and the actions it returns.

:class:`bridged.core.channel.Channel` takes inputs and returns these actions (frozen
dataclasses); the Twisted glue executes them in order. Re-exported by ``channel``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Literal

REOPEN_TIMER = "reopen"
IDLE_TIMER = "idle"
HANDOVER_TIMER = "handover"
SEND_STALL_TIMER = "send-stall"

Mode = Literal["on-demand", "persistent"]
MODES: tuple[Mode, ...] = ("on-demand", "persistent")


class ChannelState(IntEnum):
    CLOSED = 0
    OPENING = 1
    OPEN = 2
    CLOSING = 3


@dataclass(frozen=True, slots=True)
class QueueLimits:
    send_max_bytes: int = 65536  # unconfirmed client bytes at which the client is paused
    recv_buffer_bytes: int = 65536  # persistent mode: received bytes kept while no client


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    initial: float = 1.0  # seconds before the first retry
    max: float = 60.0  # the longest wait between retries
    jitter: float = 0.2  # fraction by which a wait is randomly shortened
    open_retries: int = 3  # on-demand: retries after the first failed open (0: no retry)


@dataclass(frozen=True, slots=True)
class Timeouts:
    idle: float = 0.0  # close an open connection with no traffic for this long (0: never)
    half_close: float = 60.0  # ... once its client has half-closed (0: never)
    handover_wait: float = 2.0  # a new client waits this long for the attached one to leave
    # An attached client's bytes waiting on an open connection with no byte confirmed for
    # this long: the client is disconnected (its bytes counted lost) and the connection
    # closed, like TCP_USER_TIMEOUT, instead of keeping it waiting without end (0: never).
    send_stall: float = 0.0


# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSocket:
    """Run AT+QSSLOPEN; report ``open_result(err, epoch)`` or ``open_error(reason, epoch)``."""

    epoch: int = field(default=0, compare=False)  # read it; equality is about the action


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Run AT+QSSLCLOSE; report ``close_done(epoch)`` whatever its outcome."""

    epoch: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class DeliverToClient:
    data: bytes


@dataclass(frozen=True, slots=True)
class CloseClient:
    """Close the TCP client after writing everything delivered to it (EOF); detached now."""

    reason: str


@dataclass(frozen=True, slots=True)
class RefuseClient:
    """Close the TCP connection that just arrived (or was held); the attached client is
    unaffected."""

    reason: str


@dataclass(frozen=True, slots=True)
class HoldClient:
    """Keep the TCP connection that just arrived, not reading it, until
    ``AttachHeldClient`` or ``RefuseClient``."""


@dataclass(frozen=True, slots=True)
class AttachHeldClient:
    """The held connection is now the attached client: read it."""


@dataclass(frozen=True, slots=True)
class PauseClient:
    """Stop reading from the TCP client."""


@dataclass(frozen=True, slots=True)
class ResumeClient:
    """Read from the TCP client again."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start the named timer; when it fires, call ``timer_fired(name)``."""

    name: str
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class DataReady:
    """The channel has become sendable: poke the scheduler."""


@dataclass(frozen=True, slots=True)
class CountRxDropped:
    """Received bytes thrown away (no client to take them, or the buffer is full)."""

    n: int
    reason: str


@dataclass(frozen=True, slots=True)
class CountTxLost:
    """Client bytes that will never be confirmed sent (their client is closed or gone)."""

    n: int
    reason: str


@dataclass(frozen=True, slots=True)
class CountTxSent:
    """Client bytes confirmed sent by ``+QSSLSEND: 1,<id>,0`` (for the current stream)."""

    n: int


@dataclass(frozen=True, slots=True)
class StreamBroken:
    """The connection was ended by us because its stream could not go on whole.
    ``label`` is stable (a metric label): damaged_data, recv_buffer_full, idle_timeout,
    reconfigured, send_stall."""

    label: str
    detail: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    old: ChannelState
    new: ChannelState
    reason: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """An input that changed nothing (stale result, benign race); for the debug log."""

    event: str
    reason: str


Action = (
    OpenSocket
    | CloseSocket
    | DeliverToClient
    | CloseClient
    | RefuseClient
    | HoldClient
    | AttachHeldClient
    | PauseClient
    | ResumeClient
    | StartTimer
    | CancelTimer
    | DataReady
    | CountRxDropped
    | CountTxLost
    | CountTxSent
    | StreamBroken
    | StateChanged
    | Ignored
)
