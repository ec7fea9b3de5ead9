"""Channels + scheduler + reload, with epochs: a hypothesis stateful model.

Three sockets share one scheduler and one fake module. Clients write, half-close and
leave; reloads retire a socket's channel and put a new one (a new generation) in its
place; the module answers opens, sends and closes late and in any order, sometimes after
the channel that asked was retired; received data is damaged. After every step:

- every byte a client wrote is confirmed, still queued, or counted lost, per channel;
- the module's connection on a connectID only ever carries bytes of the generation and
  epoch that opened it (nothing of a retired socket reaches the new remote);
- a new generation opens only once the old one's connection is closed;
- the scheduler never hands the line to a retired channel.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bridged.core.channel import (
    Action,
    Channel,
    ChannelState,
    CloseSocket,
    CountTxLost,
    CountTxSent,
    OpenSocket,
    QueueLimits,
    ReconnectPolicy,
    StartTimer,
    Timeouts,
)
from bridged.core.scheduler import Scheduler

IDS = (0, 1, 2)


@dataclass
class Op:
    kind: str  # open | send | close
    connect_id: int
    channel: Channel
    epoch: int
    size: int = 0


class ChannelsWithReload(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.generation = dict.fromkeys(IDS, 0)
        self.channels = {cid: self._new_channel(cid) for cid in IDS}
        self.gen_of: dict[int, int] = {id(ch): 0 for ch in self.channels.values()}
        self.retired: list[Channel] = []
        # The new generation of a connectID, waiting for every older one to close.
        self.waiting: dict[int, Channel] = {}
        self.scheduler: Scheduler[Channel] = Scheduler(list(self.channels.values()))
        # The module: which (channel, epoch) holds each connectID's connection.
        self.module: dict[int, tuple[Channel, int] | None] = dict.fromkeys(IDS)
        self.pending: list[Op] = []
        # Running timers by (connectID, generation, name): stable across runs, unlike id().
        self.timers: set[tuple[int, int, str]] = set()
        self.written: dict[int, int] = {}
        self.confirmed: dict[int, int] = {}
        self.lost: dict[int, int] = {}
        for channel in self.channels.values():
            self.apply(channel, channel.module_ready())

    def _new_channel(self, cid: int) -> Channel:
        return Channel(
            cid,
            "on-demand" if cid == 0 else "persistent",
            limits=QueueLimits(send_max_bytes=2000, recv_buffer_bytes=50),
            reconnect=ReconnectPolicy(initial=1.0, max=4.0, jitter=0.0, open_retries=1),
            max_chunk=100,
            rng=random.Random(cid),
            timeouts=Timeouts(idle=0.0, half_close=30.0, handover_wait=0.0),
        )

    def tag(self, channel: Channel) -> int:
        return self.gen_of[id(channel)] % 256

    def apply(self, channel: Channel, actions: list[Action]) -> None:
        cid = channel.connect_id
        for action in actions:
            match action:
                case OpenSocket(epoch=epoch):
                    assert channel not in self.retired
                    # A new generation opens only once the old connection is closed.
                    assert self.module[cid] is None, f"socket {cid} opened twice"
                    self.module[cid] = (channel, epoch)
                    self.pending.append(Op("open", cid, channel, epoch))
                case CloseSocket(epoch=epoch):
                    self.pending.append(Op("close", cid, channel, epoch))
                case CountTxSent(n):
                    self.confirmed[id(channel)] = self.confirmed.get(id(channel), 0) + n
                case CountTxLost(n, _):
                    self.lost[id(channel)] = self.lost.get(id(channel), 0) + n
                case StartTimer(name, _):
                    self.timers.add((cid, self.gen_of[id(channel)], name))
        self.maybe_ready(cid)

    def maybe_ready(self, cid: int) -> None:
        """The daemon readies a new socket once every retired one on its connectID is
        closed."""
        new = self.waiting.get(cid)
        older = [ch for ch in self.retired if ch.connect_id == cid]
        if new is not None and all(ch.state is ChannelState.CLOSED for ch in older):
            del self.waiting[cid]
            self.apply(new, new.module_ready())

    # --- clients ---

    @rule(cid=st.sampled_from(IDS))
    def client_connects(self, cid: int) -> None:
        channel = self.channels[cid]
        if not channel.client_attached:
            self.apply(channel, channel.client_connected())

    @rule(cid=st.sampled_from(IDS), size=st.integers(1, 300))
    def client_writes(self, cid: int, size: int) -> None:
        channel = self.channels[cid]
        if channel.client_attached and not channel.client_half_closed:
            self.written[id(channel)] = self.written.get(id(channel), 0) + size
            self.apply(channel, channel.client_data(bytes([self.tag(channel)]) * size))

    @rule(cid=st.sampled_from(IDS), half=st.booleans())
    def client_leaves(self, cid: int, half: bool) -> None:
        channel = self.channels[cid]
        if channel.client_attached:
            self.apply(channel, channel.client_eof() if half else channel.client_closed())

    # --- reload ---

    @rule(cid=st.sampled_from(IDS))
    def reload_changes_socket(self, cid: int) -> None:
        old = self.channels[cid]
        self.retired.append(old)
        new = self._new_channel(cid)
        self.generation[cid] += 1
        self.gen_of[id(new)] = self.generation[cid]
        self.channels[cid] = new
        self.waiting[cid] = new
        self.scheduler.set_channels(list(self.channels.values()))
        self.apply(old, old.retire("socket reconfigured"))

    # --- the line and the module ---

    @precondition(lambda self: not self.scheduler.busy)
    @rule()
    def scheduler_sends(self) -> None:
        channel = self.scheduler.pick()
        if channel is None:
            return
        assert channel not in self.retired
        chunk = channel.next_chunk()
        epoch = channel.epoch
        cid = channel.connect_id
        holder = self.module[cid]
        # The connection carries only bytes of the generation and epoch that opened it.
        assert holder is not None and holder[0] is channel and holder[1] == epoch
        assert set(chunk) == {self.tag(channel)}
        self.pending.append(Op("send", cid, channel, epoch, len(chunk)))
        self.scheduler.done()  # the module took the payload: the line is free

    @precondition(lambda self: self.pending)
    @rule(which=st.integers(0, 20), ok=st.booleans())
    def a_result_arrives(self, which: int, ok: bool) -> None:
        op = self.pending.pop(which % len(self.pending))
        channel, cid = op.channel, op.connect_id
        if op.kind == "open":
            if not ok and self.module[cid] == (channel, op.epoch):
                self.module[cid] = None
            self.apply(channel, channel.open_result(0 if ok else -2, op.epoch))
        elif op.kind == "send":
            if ok:
                self.apply(channel, channel.send_done(op.size, op.epoch))
            else:
                self.apply(channel, channel.send_failed("ERROR", op.epoch))
        else:
            if self.module[cid] is not None and self.module[cid][0] is channel:  # type: ignore[index]
                self.module[cid] = None
            self.apply(channel, channel.close_done(op.epoch))

    @rule(cid=st.sampled_from(IDS))
    def received_data_damaged(self, cid: int) -> None:
        channel = self.channels[cid]
        self.apply(channel, channel.recv_damaged("bad_hex"))

    @precondition(lambda self: self.timers)
    @rule(data=st.data())
    def a_timer_fires(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.timers)))
        self.timers.discard(key)
        cid, generation, name = key
        channel = next(
            ch
            for ch in [*self.channels.values(), *self.retired]
            if ch.connect_id == cid and self.gen_of[id(ch)] == generation
        )
        self.apply(channel, channel.timer_fired(name))

    # --- invariants ---

    @invariant()
    def every_byte_is_confirmed_queued_or_lost(self) -> None:
        for channel in [*self.channels.values(), *self.retired]:
            key = id(channel)
            written = self.written.get(key, 0)
            accounted = self.confirmed.get(key, 0) + self.lost.get(key, 0) + channel.queued_bytes
            assert written == accounted, channel

    @invariant()
    def retired_channels_hold_nothing(self) -> None:
        for channel in self.retired:
            assert channel.queued_bytes == 0 and not channel.client_attached
            assert channel.state in (ChannelState.CLOSING, ChannelState.CLOSED)


ChannelsWithReload.TestCase.settings = settings(
    max_examples=150, stateful_step_count=60, deadline=None
)
TestChannelsWithReload = ChannelsWithReload.TestCase
