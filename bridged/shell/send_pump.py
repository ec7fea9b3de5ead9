"""The send pump: one ``AT+QSSLSEND`` at a time (or a profile's window of them), taking
turns among the sockets with data as the :class:`~bridged.core.scheduler.Scheduler` says."""

from __future__ import annotations

from twisted.logger import Logger
from twisted.python.failure import Failure

from bridged.core.channel import Channel
from bridged.core.qssl_commands import SendRefused
from bridged.core.scheduler import Refusal, Scheduler, Settled
from bridged.shell.bridge import SocketBridge
from bridged.shell.qssl import QsslClient

log = Logger(namespace="bridged.socket")


class SendPump:
    """Runs one AT+QSSLSEND at a time, taking turns among sockets with data. One pump
    lives as long as the daemon: a reload changes its sockets in place, so a send in
    flight still holds the line and its result still reaches the socket it came from.

    With a module profile whose ``max_unconfirmed_sends`` is above 1, a socket's next
    send goes after the previous one's OK without waiting for its result (the scheduler's
    window). A module that refuses such a pipelined send (ERROR before ``>``) gets the
    chunk again later, and the window falls to 1: for good (logged once) if the socket's
    earlier sends are then confirmed, else (its connection ended) until then."""

    def __init__(self, bridges: list[SocketBridge]) -> None:
        self.bridges: dict[int, SocketBridge] = {}
        self.scheduler: Scheduler[Channel] = Scheduler([])
        self.qssl: QsslClient | None = None
        self.chunks_sent = 0
        self._refusal = ""  # what the module answered to the refused pipelined send
        self.set_bridges(bridges)

    def set_bridges(self, bridges: list[SocketBridge]) -> None:
        self.bridges = {b.connect_id: b for b in bridges}
        self.scheduler.set_channels([b.channel for b in bridges])

    def kick(self) -> None:
        qssl = self.qssl
        if qssl is None or self.scheduler.busy:
            return
        # The profile may have changed (the module identified, a reload).
        self.scheduler.set_max_unconfirmed(qssl.profile.max_unconfirmed_sends)
        settled = self.scheduler.settle()
        if settled is Settled.FELL_BACK:
            log.warn(
                "the module refused a pipelined AT+QSSLSEND ({why}): sending one at a time "
                "from now on (max_unconfirmed_sends {n} -> 1)",
                why=self._refusal,
                n=qssl.profile.max_unconfirmed_sends,
            )
        elif settled is Settled.RESTORED:
            log.info(
                "a pipelined AT+QSSLSEND was answered with ERROR as its connection ended "
                "({why}): sends stay pipelined",
                why=self._refusal,
            )
        channel = self.scheduler.pick()
        if channel is None:
            return
        bridge = self.bridges[channel.connect_id]
        chunk, epoch = channel.next_chunk(), channel.epoch
        try:
            accepted, confirmed = qssl.send(bridge.connect_id, chunk, bridge.data_format)
        except Exception as e:  # the channel handed out a chunk it should not have
            self.scheduler.done()
            bridge.send_failed(f"cannot send: {e}", epoch)
            return
        self.chunks_sent += 1

        def line_free(_: object) -> None:
            self.scheduler.done()
            self.kick()

        def sent(_: object) -> None:
            bridge.send_done(len(chunk), epoch)

        def not_sent(failure: Failure) -> None:
            # Runs before line_free: the refused send still holds the line.
            if isinstance(failure.value, SendRefused) and self.scheduler.refused() is Refusal.RETRY:
                self._refusal = failure.getErrorMessage()
                bridge.send_refused(chunk, epoch)
                return
            bridge.send_failed(failure.getErrorMessage(), epoch)

        accepted.addBoth(line_free)
        confirmed.addCallbacks(sent, not_sent)
