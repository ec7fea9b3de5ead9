"""The AT session's tables: its phases, what each kind of line does in each phase of a
command (after Zephyr's ``modem_chat``), and the resync probes. Data, not an if-chain; used
by :class:`bridged.core.at_session.ATSession`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from bridged.core.at_codec import (
    URC_TYPES,
    Echo,
    Event,
    FinalResult,
    InfoLine,
    Prompt,
    ProtocolError,
)


class Phase(Enum):
    DOWN = "down"  # no serial connection
    IDLE = "idle"
    GAP = "gap"  # guard time between two commands
    RESPONSE = "response"  # command written, waiting for the final result
    PROMPT = "prompt"  # waiting for '>'
    PROMPT_DELAY = "prompt-delay"  # got '>', waiting before writing the payload
    AFTER_DATA = "after-data"  # payload written, waiting for the final result
    QUIET = "resync-quiet"  # resync: waiting for a quiet line
    SILENT = "resync-silent"  # resync: module may be in data mode; say nothing
    PROBING = "resync-probing"  # resync: probe written, waiting for its answer

    # Enum hashes its name in Python; members are singletons, so identity hashing finds
    # them the same in the tables and phase sets, a dozen lookups per send for less.
    __hash__ = object.__hash__


RESYNC_PHASES = frozenset({Phase.QUIET, Phase.SILENT, Phase.PROBING})
COMMAND_PHASES = frozenset({Phase.RESPONSE, Phase.PROMPT, Phase.PROMPT_DELAY, Phase.AFTER_DATA})
# Waits for the module (not our own prompt delay): a busy line extends them.
WAIT_PHASES = frozenset({Phase.RESPONSE, Phase.PROMPT, Phase.AFTER_DATA})


class Kind(Enum):
    """What kind of line the module said, as far as the session cares."""

    OK = "ok"
    ERROR = "error"
    PROMPT = "prompt"
    INFO = "info"
    ECHO = "echo"

    __hash__ = object.__hash__  # as Phase's


class Rule(Enum):
    COMPLETE = "complete"  # the command succeeded
    FAIL = "fail"  # the command failed with the module's error
    COLLECT = "collect"  # an information line of the response
    IGNORE = "ignore"
    ABORT = "abort"  # protocol error: cancel, fail the command, resync


# The response table: for each phase of a command in flight, what each kind of line does.
# A kind missing from a phase's row is a protocol error there (ABORT).
PHASE_RULES: dict[Phase, dict[Kind, Rule]] = {
    Phase.RESPONSE: {
        Kind.OK: Rule.COMPLETE,
        Kind.ERROR: Rule.FAIL,
        Kind.INFO: Rule.COLLECT,
        Kind.ECHO: Rule.IGNORE,
    },
    # The note allows only '>' or an error here.
    Phase.PROMPT: {Kind.PROMPT: Rule.COMPLETE, Kind.ERROR: Rule.FAIL, Kind.ECHO: Rule.IGNORE},
    # Between '>' and our payload: an error means the module left data mode by itself.
    Phase.PROMPT_DELAY: {Kind.ERROR: Rule.FAIL},
    Phase.AFTER_DATA: {
        Kind.OK: Rule.COMPLETE,
        Kind.ERROR: Rule.FAIL,
        Kind.INFO: Rule.COLLECT,
    },
}

# The unsolicited table: event types that are never a command's response, wherever they
# fall. They are passed on at once.
UNSOLICITED_TYPES: tuple[type, ...] = (*URC_TYPES, ProtocolError)


@dataclass(frozen=True, slots=True)
class Probe:
    """A resync probe: a query whose information line says the answer is the probe's."""

    command: str
    answer: re.Pattern[str]


# Two queries, used in turn: the late answer of the previous probe does not match the
# current one. Passthrough refuses both, so no other command's late answer can match.
PROBES: tuple[Probe, ...] = (
    Probe("AT+CMEE?", re.compile(r"\+CMEE: ?\d+")),
    Probe("AT+QSCLK?", re.compile(r"\+QSCLK: ?\d+")),
)


def kind_of(event: Event) -> Kind:
    if isinstance(event, FinalResult):
        return Kind.OK if event.ok else Kind.ERROR
    if isinstance(event, Prompt):
        return Kind.PROMPT
    if isinstance(event, Echo):
        return Kind.ECHO
    return Kind.INFO


def event_text(event: Event) -> str:
    if isinstance(event, FinalResult):
        return event.text
    if isinstance(event, InfoLine | Echo):
        return event.text
    if isinstance(event, Prompt):
        return ">"
    return repr(event)
