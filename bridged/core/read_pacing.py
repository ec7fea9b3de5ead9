"""How long the shell may leave the serial line unread while a recv URC is arriving, or
while a payload crosses it and its answer follows.

The module writes one line at a time: once the decoder has parsed a recv URC's header,
nothing else (no ``>``, ``OK``, result or other URC) can arrive before the rest of that
URC. Reading the line as bytes trickle in costs a reactor turn and a system call per read
(about 3.5 reads per 650-byte hex URC at 921600 baud); waiting for the rest's line time
and reading it in one go costs one, and delays nothing the bridge could act on. Pure: the
decoder says how many bytes are still to come (:attr:`ATDecoder.awaiting`), this says how
long they take, plus a margin learnt from how late the line hands bytes over
(:class:`ReadPacer`); the shell (:mod:`bridged.shell.at_engine`) holds the timer.

The same holds after a data phase's payload: the module is in data mode until it has the
last byte and sends nothing, then answers (``OK``, and for a QSSL send its result right
behind it). Reading that answer in one go saves a wake-up per chunk of a bulk upload
(:meth:`ReadPacer.pause_after_payload`), where the prompt wait makes the margin cheap.
"""

from __future__ import annotations

from bridged.core.module_profile import ModuleProfile

#: Added to the line time of the awaited bytes: the last byte is read once it is surely
#: in (a reactor timer wakes up to a millisecond late anyway). Everything that follows
#: the URC on the line waits at most the margin longer to be read. A line that hands
#: bytes over later than their line time (a UART driver's or a USB adapter's batching)
#: teaches :class:`ReadPacer` a longer margin, up to MAX_MARGIN.
READ_MARGIN = 0.001
MAX_MARGIN = 0.004
#: A read after a pause that came up short lengthens the margin by this much; one that
#: found the whole rest shortens it by a quarter of it (so about one read in five comes
#: up short, and then the line is read as bytes come until the rest is in).
MARGIN_STEP = 0.001
#: Shorter waits are not worth a timer: the next read brings the rest anyway.
MIN_PAUSE = 0.002
#: A pause after a payload may hold its answer up to MAX_MARGIN; taken only where that
#: is at most this share of the send's cycle (the prompt wait and the payload's line
#: time): with the note's 500 ms prompt wait always, with none at a fast baud rate never
#: (there the margin would cost a pushing client up to a fifth of the line).
ANSWER_PACING_SHARE = 0.01

# '+QSSLURC: "recv",' + '1,5,1300,' + two quotes + CR LF.
_RECV_LINE_OVERHEAD = 17 + 9 + 2 + 2


def longest_recv_line(profile: ModuleProfile) -> int:
    """Bytes of the longest recv URC this module may send, in either data format."""
    return _RECV_LINE_OVERHEAD + max(2 * profile.max_recv_hex, profile.max_recv_text)


def read_pause(
    awaiting: int,
    line_rate: float,
    longest: int,
    *,
    margin: float = READ_MARGIN,
    least: float = MIN_PAUSE,
) -> float:
    """Seconds to leave the line unread, 0 to read on as bytes come.

    ``awaiting``: bytes the URC in progress still needs; ``line_rate``: bytes a second
    (baud / 10 for 8N1; 0 when unknown: no pause); ``longest``: the longest recv line, a
    bound on the wait whatever a damaged header claimed."""
    if awaiting <= 0 or line_rate <= 0:
        return 0.0
    line_time = min(awaiting, longest) / line_rate
    if line_time < least:
        return 0.0
    return line_time + margin


class ReadPacer:
    """:func:`read_pause` with a margin learnt from the line: whether the read after
    each pause found all the bytes awaited."""

    def __init__(self) -> None:
        self.margin = READ_MARGIN

    def pause(self, awaiting: int, line_rate: float, longest: int) -> float:
        return read_pause(awaiting, line_rate, longest, margin=self.margin)

    def pause_after_payload(
        self, sent: int, answer: int, line_rate: float, prompt_delay: float
    ) -> float:
        """Seconds to leave the line unread after writing a ``sent``-byte payload, which
        the module answers with ``answer`` bytes once it has it (it is in data mode
        meanwhile and sends nothing); 0 to read on as bytes come."""
        if line_rate <= 0 or ANSWER_PACING_SHARE * (prompt_delay + sent / line_rate) < MAX_MARGIN:
            return 0.0
        on_line = sent + answer
        return read_pause(on_line, line_rate, on_line, margin=self.margin)

    def read_after_pause(self, awaited: int, got: int) -> None:
        """The read a pause ended with brought ``got`` bytes of the ``awaited``."""
        if got < awaited:
            self.margin = min(self.margin + MARGIN_STEP, MAX_MARGIN)
        else:
            self.margin = max(self.margin - MARGIN_STEP / 4, READ_MARGIN)
