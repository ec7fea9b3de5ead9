"""Reading the shell's parts into the snapshot operations read (:mod:`bridged.ops.snapshot`).

The composition root (:mod:`bridged.shell.daemon`) assembles a
:class:`~bridged.ops.snapshot.DaemonSnapshot` from these; each reads one part, copies
plain values and keeps no reference to it.
"""

from __future__ import annotations

from bridged.ops.snapshot import EngineSnapshot, LinkSnapshot, ModemSnapshot, SocketSnapshot
from bridged.shell.at_engine import ATEngine
from bridged.shell.bridge import SocketBridge
from bridged.shell.link_health import LinkHealth
from bridged.shell.modem import Modem


def modem_snapshot(modem: Modem) -> ModemSnapshot:
    return ModemSnapshot(
        device=modem.options.device,
        baudrate=modem.options.baudrate,
        state=modem.state.value,
        healthy=modem.healthy,
        serial_reopens=modem.serial_reopens,
        restarts=dict(modem.restarts),
    )


def engine_snapshot(engine: ATEngine | None) -> EngineSnapshot | None:
    if engine is None:
        return None
    return EngineSnapshot(
        connected=engine.connected, healthy=engine.healthy, pending=engine.pending
    )


def socket_snapshot(bridge: SocketBridge) -> SocketSnapshot:
    config, stats, client = bridge.config, bridge.stats, bridge.client
    return SocketSnapshot(
        connect_id=bridge.connect_id,
        mode=config.mode,
        listen=str(config.listen),
        remote=str(config.remote),
        state=bridge.state,
        client_peer=client.peer if client is not None else None,
        queued_bytes=bridge.channel.queued_bytes,
        recv_buffered_bytes=bridge.channel.recv_buffered_bytes,
        idle_timeout=config.timeouts.idle,
        tx_bytes=stats.tx_bytes,
        rx_bytes=stats.rx_bytes,
        rx_dropped_bytes=stats.rx_dropped_bytes,
        tx_lost_bytes=stats.tx_lost_bytes,
        remote_closes=stats.remote_closes,
        send_failures=stats.send_failures,
        opens=dict(stats.opens),
        client_connections=dict(stats.client_connections),
        streams_broken=dict(stats.streams_broken),
        state_since=stats.state_since,
        client_since=stats.client_since,
        last_error=stats.last_error,
        last_error_at=stats.last_error_at,
    )


def link_snapshot(health: LinkHealth) -> LinkSnapshot:
    return LinkSnapshot(readings=health.readings, read_at=health.updated_at)


__all__ = ["engine_snapshot", "link_snapshot", "modem_snapshot", "socket_snapshot"]
