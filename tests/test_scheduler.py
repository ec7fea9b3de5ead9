"""The fair scheduler: one send at a time, round-robin, no starvation; and with real channels."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridged.core.channel import Channel, QueueLimits, ReconnectPolicy
from bridged.core.scheduler import Refusal, Scheduler, Settled


@dataclass
class FakeChannel:
    name: int
    pending: int = 0
    unconfirmed_sends: int = 0
    window: int = 1
    epoch: int = 1
    stream_open: bool = True

    def sendable(self) -> int:
        return self.pending

    def set_max_unconfirmed(self, n: int) -> None:
        self.window = n


def serve(scheduler: Scheduler[FakeChannel], rounds: int) -> list[int]:
    """Pick and finish `rounds` sends; the names of the channels served."""
    served = []
    for _ in range(rounds):
        channel = scheduler.pick()
        if channel is None:
            break
        served.append(channel.name)
        scheduler.done()
    return served


def test_nothing_to_send_picks_nothing() -> None:
    scheduler = Scheduler([FakeChannel(i) for i in range(6)])
    assert scheduler.pick() is None
    assert not scheduler.busy


def test_one_send_at_a_time() -> None:
    channels = [FakeChannel(i, pending=100) for i in range(6)]
    scheduler = Scheduler(channels)
    first = scheduler.pick()
    assert first is channels[0]
    assert scheduler.busy
    assert scheduler.pick() is None  # busy until the send in flight is done
    scheduler.done()
    assert scheduler.pick() is channels[1]


def test_turns_go_round_in_order() -> None:
    scheduler = Scheduler([FakeChannel(i, pending=1) for i in range(6)])
    assert serve(scheduler, 13) == [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 0]


def test_idle_channels_are_skipped_and_the_cursor_moves_past_the_one_served() -> None:
    channels = [FakeChannel(i) for i in range(6)]
    channels[2].pending = channels[4].pending = 1
    scheduler = Scheduler(channels)
    assert serve(scheduler, 5) == [2, 4, 2, 4, 2]


def test_a_channel_that_becomes_ready_waits_at_most_one_turn_of_each_other() -> None:
    channels = [FakeChannel(i, pending=1) for i in range(6)]
    channels[3].pending = 0
    scheduler = Scheduler(channels)
    assert serve(scheduler, 4) == [0, 1, 2, 4]
    channels[3].pending = 1
    assert serve(scheduler, 6) == [5, 0, 1, 2, 3, 4]


def test_six_busy_channels_each_get_a_sixth_of_the_picks() -> None:
    scheduler = Scheduler([FakeChannel(i, pending=10**9) for i in range(6)])
    counts = Counter(serve(scheduler, 6001))
    assert all(1000 <= counts[name] <= 1001 for name in range(6))


@given(st.lists(st.lists(st.booleans(), min_size=6, max_size=6), min_size=1, max_size=60))
def test_no_starvation_whatever_the_others_do(readiness: list[list[bool]]) -> None:
    """Channel 0 always has data; the other five come and go. Between two turns of
    channel 0 there are at most five other sends."""
    channels = [FakeChannel(i) for i in range(6)]
    scheduler = Scheduler(channels)
    since_last_turn = 0
    for ready in readiness:
        for channel, has_data in zip(channels, ready, strict=True):
            channel.pending = int(has_data)
        channels[0].pending = 1
        picked = scheduler.pick()
        assert picked is not None
        scheduler.done()
        since_last_turn = 0 if picked.name == 0 else since_last_turn + 1
        assert since_last_turn <= 5


def test_with_real_channels_every_byte_goes_out_once_in_order_and_fairly() -> None:
    """Six open channels with different amounts queued: the scheduler interleaves full
    coalesced chunks, one channel per turn, until everything is sent."""
    channels = [
        Channel(
            i,
            "persistent",
            limits=QueueLimits(send_max_bytes=10**6),
            reconnect=ReconnectPolicy(),
            max_chunk=730,
            rng=random.Random(i),
        )
        for i in range(6)
    ]
    written = {}
    for channel in channels:
        channel.module_ready()
        channel.open_result(0)
        channel.client_connected()
        payload = random.Random(channel.connect_id).randbytes(1000 * (channel.connect_id + 1))
        for start in range(0, len(payload), 100):  # many small writes, coalesced when sent
            channel.client_data(payload[start : start + 100])
        written[channel.connect_id] = payload
    scheduler = Scheduler(channels)
    sent: dict[int, bytearray] = {i: bytearray() for i in range(6)}
    order = []
    while (sender := scheduler.pick()) is not None:
        chunk = sender.next_chunk()
        sent[sender.connect_id] += chunk
        order.append((sender.connect_id, len(chunk)))
        sender.send_done(len(chunk))
        scheduler.done()
    assert {i: bytes(data) for i, data in sent.items()} == written
    assert all(size == 730 for _, size in order[:6])  # full chunks, not 100-byte writes
    assert [connect_id for connect_id, _ in order[:12]] == list(range(6)) * 2


def test_a_reload_changes_the_channels_in_place_and_a_send_in_flight_keeps_the_line() -> None:
    old, kept, new = FakeChannel(0, pending=5), FakeChannel(1, pending=5), FakeChannel(0)
    scheduler = Scheduler([old, kept])
    assert scheduler.pick() is old  # a send of the old socket 0 holds the line
    scheduler.set_channels([new, kept])  # reload: socket 0 replaced
    assert scheduler.busy and scheduler.pick() is None
    scheduler.done()
    assert serve(scheduler, 3) == [1, 1, 1]  # the retired channel is never served again


# --- the send window (pipelined sends, issue 15) -------------------------------------------


def test_a_refused_pipelined_send_sets_the_window_to_1_then_for_good_once_confirmed() -> None:
    channels = [FakeChannel(0, pending=100), FakeChannel(1, pending=100)]
    scheduler = Scheduler(channels, max_unconfirmed=3)
    assert (scheduler.window, [c.window for c in channels]) == (3, [3, 3])
    assert scheduler.pick() is channels[0]  # nothing unconfirmed: not pipelined
    assert scheduler.refused() is Refusal.FAILED  # an ordinary failure
    scheduler.done()
    assert scheduler.window == 3
    channels[1].unconfirmed_sends = 2
    assert scheduler.pick() is channels[1]  # pipelined
    assert scheduler.refused() is Refusal.RETRY  # the chunk goes back
    scheduler.done()
    assert [c.window for c in channels] == [1, 1]  # every channel, at once
    assert scheduler.settle() is None  # its earlier sends still await their results
    channels[1].unconfirmed_sends = 0  # ... confirmed on the same connection
    assert scheduler.settle() is Settled.FELL_BACK  # the caller logs it, once
    assert scheduler.settle() is None
    assert (scheduler.window, scheduler.fell_back) == (1, True)
    scheduler.set_max_unconfirmed(3)  # the same profile again: the module still refuses
    assert (scheduler.window, channels[0].window) == (1, 1)
    scheduler.set_max_unconfirmed(4)  # another profile: its own window
    assert (scheduler.window, scheduler.fell_back, channels[1].window) == (4, False, 4)


@pytest.mark.parametrize("ended", ["closed", "reopened"])
def test_a_refusal_as_the_connection_ends_keeps_pipelining(ended: str) -> None:
    channel = FakeChannel(0, pending=100, unconfirmed_sends=2)
    scheduler = Scheduler([channel], max_unconfirmed=3)
    scheduler.pick()
    assert scheduler.refused() is Refusal.RETRY
    scheduler.done()
    assert channel.window == 1
    if ended == "closed":
        channel.stream_open = False  # a failed result or the closed URC ended it
    else:
        channel.epoch += 1  # and a new connection opened since
    channel.unconfirmed_sends = 0
    assert scheduler.settle() is Settled.RESTORED
    assert (scheduler.window, scheduler.fell_back, channel.window) == (3, False, 3)


def test_a_refusal_with_no_send_on_the_line_is_a_failure() -> None:
    scheduler = Scheduler([FakeChannel(0, pending=1, unconfirmed_sends=1)], max_unconfirmed=2)
    assert scheduler.refused() is Refusal.FAILED


def test_a_window_below_1_is_refused() -> None:
    with pytest.raises(ValueError, match="max_unconfirmed_sends"):
        Scheduler([], max_unconfirmed=0)
