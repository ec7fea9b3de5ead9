"""The HTTP endpoint (twisted.web, in the reactor thread): ``/metrics`` and ``/healthz``.

``GET /healthz`` answers 200 when the serial port is up and the module ready (bridged
listening), 503 otherwise, with a JSON body of the per-socket state. Both read a
:class:`~bridged.ops.snapshot.DaemonSnapshot`, never the daemon.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from twisted.logger import Logger
from twisted.web import http, pages
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from bridged.core.channel import ChannelState
from bridged.ops.snapshot import DaemonSnapshot

log = Logger(namespace="bridged.metrics")

# The classic text format, which every Prometheus understands. (prometheus_client >= 0.22
# calls "1.0.0" its latest; generate_latest without escaping options writes what 0.0.4
# specifies, and our names need nothing newer.)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_report(snapshot: DaemonSnapshot) -> dict[str, Any]:
    """What ``/healthz`` returns; ``ok`` decides 200 or 503."""
    modem = snapshot.modem
    ok = modem.serial_up and modem.module_ready and snapshot.ready
    return {
        "status": "ok" if ok else "unavailable",
        "serial": "up" if modem.serial_up else "down",
        "module": modem.state,
        "listening": snapshot.listening,
        "sockets": [
            {
                "connect_id": s.connect_id,
                "state": s.state.name.lower(),
                "up": s.state is ChannelState.OPEN,
                "client": s.client_peer is not None,
                "queue_bytes": s.queued_bytes,
                "mode": s.mode,
                "listen": s.listen,
                "remote": s.remote,
            }
            for s in snapshot.sockets
        ],
    }


def _header(request: Request, name: bytes, value: bytes) -> None:
    request.responseHeaders.setRawHeaders(name, [value])


class MetricsResource(Resource):
    """``/metrics``: the registry in the Prometheus text format, rendered right here."""

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        try:
            body: bytes = generate_latest(self.registry)
        except Exception:
            log.failure("collecting metrics failed")
            request.setResponseCode(500)
            _header(request, b"content-type", b"text/plain; charset=utf-8")
            return b"collecting metrics failed; see the bridged log\n"
        _header(request, b"content-type", CONTENT_TYPE.encode("ascii"))
        _header(request, b"cache-control", b"no-store")
        return body


class HealthResource(Resource):
    """``/healthz``: 200 when serial is up and the module ready, else 503; JSON body."""

    isLeaf = True

    def __init__(self, snapshot: Callable[[], DaemonSnapshot]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.snapshot = snapshot

    def render_GET(self, request: Request) -> bytes:
        report = health_report(self.snapshot())
        request.setResponseCode(200 if report["status"] == "ok" else 503)
        _header(request, b"content-type", b"application/json")
        _header(request, b"cache-control", b"no-store")
        return json.dumps(report, indent=2).encode() + b"\n"


class IndexResource(Resource):
    """``/``: where to look."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]

    def render_GET(self, request: Request) -> bytes:
        _header(request, b"content-type", b"text/plain; charset=utf-8")
        return b"bridged: /metrics (Prometheus), /healthz (JSON)\n"

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"":
            return self
        return pages.notFound()  # type: ignore[return-value]


class QuietSite(Site):
    """A Site that does not log every request (a scrape every 15 s is not news)."""

    noisy = False

    def log(self, request: http.Request) -> None:
        pass

    def startFactory(self) -> None:
        # HTTPFactory caches the access log's date and refreshes it every second: a
        # reactor wake-up a second, all day, for a log this site does not write.
        self._logFile = None


def make_site(registry: CollectorRegistry, snapshot: Callable[[], DaemonSnapshot]) -> Site:
    root = IndexResource()
    root.putChild(b"metrics", MetricsResource(registry))
    root.putChild(b"healthz", HealthResource(snapshot))
    return QuietSite(root)  # type: ignore[no-untyped-call]


__all__ = ["CONTENT_TYPE", "health_report", "make_site"]
