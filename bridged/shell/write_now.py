"""Writing to a Twisted transport without waiting for the next loop turn.

``transport.write`` only buffers: the bytes go out on the next reactor turn, after a
``startWriting`` and before a ``stopWriting`` (two ``epoll_ctl`` calls and a turn for every
write). Both byte paths write once per recv URC or per AT command, so that was a large
part of the CPU a megabyte cost (docs/performance.md). :func:`write_now` hands the bytes
to the file descriptor at once when nothing of the transport's waits, and buffers only
what the descriptor did not take, behind it: the order of bytes is that of the calls.
"""

from __future__ import annotations

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import ITransport


def write_now(transport: ITransport, data: bytes) -> None:
    """Write ``data`` to ``transport``: at once if it has nothing buffered, else queued
    behind what it has (any other transport: its own ``write``)."""
    if (
        isinstance(transport, FileDescriptor)
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataLen
        and transport.offset == len(transport.dataBuffer)
    ):
        # Returns the bytes taken, 0 when the descriptor is full, or an exception when
        # the connection is lost: then write() buffers and the next doWrite reports it.
        sent = transport.writeSomeData(data)
        if isinstance(sent, int) and sent > 0:
            if sent >= len(data):
                return
            data = data[sent:]
    transport.write(data)
