"""The channel's stateful model (tests/test_channel.py), plus data from connections the
channel is not open on, at any point of any module-lost / module-ready interleaving.

Such data reaches bridged in the field: recv URCs of a socket the module kept open over a
serial hang-up (before bridged's re-initialisation closes it), and recv URCs that were on
their way while bridged closes a socket after a failed send. They belong to no client: a
client waiting for its own connection must never see them, nor may they be buffered for
the next client of a persistent socket. ``FUZZ_EXAMPLES=2000`` runs it longer.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from bridged.core.channel import CountRxDropped
from tests.test_channel import ChannelModel

STALE = 0xFF  # the model's server bytes count modulo 251: 0xFF is never one of them


class ChannelWithStaleData(ChannelModel):
    @precondition(lambda self: self.conn != "open")
    @rule(size=st.integers(1, 300))
    def stale_recv_arrives(self, size: int) -> None:
        delivered, buffered = len(self.delivered), self.channel.recv_buffered_bytes
        actions = self.channel.recv(bytes([STALE]) * size)
        assert len(actions) == 1, actions
        (dropped,) = actions
        assert isinstance(dropped, CountRxDropped) and dropped.n == size
        assert len(self.delivered) == delivered
        assert self.channel.recv_buffered_bytes == buffered


ChannelWithStaleData.TestCase.settings = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), stateful_step_count=50, deadline=None
)
TestChannelWithStaleData = ChannelWithStaleData.TestCase
