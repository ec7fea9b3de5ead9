"""systemd service notifications (``sd_notify``) without libsystemd.

Under ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``: an ``AF_UNIX`` datagram socket,
either a path (``/run/systemd/notify``) or, with a leading ``@``, a name in the abstract
namespace. Each notification is one datagram of ``KEY=VALUE`` lines. Without
``$NOTIFY_SOCKET`` (run by hand, in tests, under another supervisor) everything here is a
no-op.

:func:`install_systemd_notify` connects a running daemon to it: it reads a
:class:`~bridged.ops.snapshot.DaemonSnapshot` and hears the daemon's announcements
("ready", "stopping", "module lost: ...");

* ``READY=1`` once the module is initialised and the listeners are up (the first "ready");
* ``STATUS=`` whenever the daemon's state changes, and on each watchdog tick if the text
  changed (the number of open SSL sockets changes without a daemon-level event);
* ``STOPPING=1`` at shutdown;
* ``WATCHDOG=1`` every ``WatchdogSec/2`` while the daemon is alive, as defined by
  :func:`watchdog_ok`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from bridged.core.channel import ChannelState
from bridged.ops.snapshot import INITIALISING, SERIAL_DOWN, DaemonSnapshot, ModemSnapshot

log = Logger(namespace="bridged.sdnotify")

SEND_TIMEOUT = 2.0  # s; systemd's notify socket has a deep queue, this is a safety net
RECHECK_MAX = 1.0  # s between re-checks while the watchdog is held back


class SystemdNotifier:
    """Sends ``sd_notify`` datagrams to ``$NOTIFY_SOCKET``; a no-op when it is unset.

    Sending never raises: a notification that cannot be delivered is logged (once per
    kind of error) and dropped, because losing the supervisor must not stop the bridge.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.address = _socket_address(self.environ.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._errors_logged: set[str] = set()
        self.daemon_hook: DaemonNotifier | None = None  # set by install_systemd_notify

    @property
    def enabled(self) -> bool:
        return self.address is not None

    # ------------------------------------------------------------------ messages

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields as one datagram. True if it was sent."""
        if self.address is None or not fields:
            return False
        data = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.settimeout(SEND_TIMEOUT)
            self._sock.sendto(data, self.address)
        except OSError as e:
            kind = type(e).__name__ if e.errno is None else str(e.errno)
            if kind not in self._errors_logged:
                self._errors_logged.add(kind)
                log.warn(
                    "cannot notify systemd at {address}: {error}",
                    address=self.environ.get("NOTIFY_SOCKET"),
                    error=e,
                )
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up is complete (with a ``STATUS=`` line in the same datagram)."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status_field(status))

    def status(self, text: str) -> bool:
        """``STATUS=``: one line shown by ``systemctl status``."""
        return self.notify(_status_field(text))

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        if status is None:
            return self.notify("STOPPING=1")
        return self.notify("STOPPING=1", _status_field(status))

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC=`` (required by ``Type=notify-reload``).

        Send :meth:`ready` again when the reload is done.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the service is alive."""
        return self.notify("WATCHDOG=1")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of ``WatchdogSec``), or None if disabled.

        As ``sd_watchdog_enabled()``: ``$WATCHDOG_USEC`` must be a positive integer, and
        ``$WATCHDOG_PID``, when set, must be this process (otherwise the variables were
        inherited from a parent and are not meant for us).
        """
        try:
            usec = int(self.environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            return None
        if usec <= 0:
            return None
        pid = self.environ.get("WATCHDOG_PID")
        if pid is not None:
            try:
                if int(pid) != os.getpid():
                    return None
            except ValueError:
                return None
        return usec / 2 / 1_000_000

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _socket_address(value: str) -> str | None:
    """``$NOTIFY_SOCKET`` as a ``sendto`` address: a path, or ``\\0name`` for ``@name``."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        # e.g. "vsock:..." (systemd 253+, for VMs): not something a gateway daemon sees.
        log.warn("NOTIFY_SOCKET={value!r} is not supported; not notifying", value=value)
    return None


def _status_field(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())


# ---------------------------------------------------------------------- the daemon's side


def watchdog_ok(modem: ModemSnapshot) -> bool:
    """May we tell systemd that we are alive? (The reactor running is the other half.)

    The watchdog is there to restart a *wedged* daemon, and a restart must be able to help.

    * Modem healthy (``Modem.healthy``: the lifecycle is not climbing its recovery ladder
      and the AT session is not resynchronising): alive. It turns unhealthy at a command
      timeout and healthy again when a resync gets its answer; a module that stays mute
      makes the lifecycle climb its recovery ladder (reopen the port, ``AT+QRST=1``), which
      takes seconds, and the modem stays unhealthy until the module is ready again. A modem
      that stays unhealthy for ``WatchdogSec/2`` and more is stuck (a wedged ladder
      included), and a fresh process (new port, new state) is the next rung of that ladder.
    * Serial port down (device unplugged, USB bridge gone): alive. The modem is already
      retrying the open with backoff; a restarted daemon would find the same missing
      device, and a restart loop would only reset that backoff, flood the journal, drop the
      clients' listeners and, through StartLimitBurst=, could end with no bridge at all
      once the device comes back.
    """
    if modem.state == SERIAL_DOWN:
        return True
    return modem.healthy


def status_text(snapshot: DaemonSnapshot, event: str | None = None) -> str:
    """One line for ``systemctl status``: what the bridge is doing now.

    ``event`` is the daemon's last announcement ("ready", "stopping", "module lost: ...").
    """
    if event == "stopping":
        return "stopping: closing SSL sockets"
    if snapshot.ready:
        total = len(snapshot.sockets)
        opened = sum(1 for s in snapshot.sockets if s.state is ChannelState.OPEN)
        text = f"ready: {total} socket(s), {opened} open"
    else:
        modem = snapshot.modem
        if modem.state == SERIAL_DOWN:
            phase = "waiting for the serial device"
        elif modem.state == INITIALISING:
            phase = "initialising the module"
        else:
            phase = "module ready, starting listeners"
        if event is not None and event.startswith("module lost: "):
            text = f"{event}; {phase}"
        else:
            text = f"starting: {phase}"
    if snapshot.modem.state != SERIAL_DOWN and not snapshot.modem.healthy:
        text += " (module not answering, resynchronising)"
    return text


class DaemonNotifier:
    """Feeds a :class:`SystemdNotifier` from a daemon's events and snapshots and runs the
    watchdog."""

    def __init__(
        self,
        snapshot: Callable[[], DaemonSnapshot],
        clock: IReactorTime,
        notifier: SystemdNotifier,
    ) -> None:
        self.snapshot = snapshot
        self.clock = clock
        self.notifier = notifier
        self.ready_sent = False
        self.last_event: str | None = None
        self.last_status: str | None = None
        self.pings = 0
        self.held_back = 0  # watchdog ticks at which no ping was sent
        self.interval = notifier.watchdog_interval()
        self._loop: LoopingCall | None = None
        self._recheck: IDelayedCall | None = None

    def start(
        self, state_observers: list[Callable[[str], None]], ready_once: defer.Deferred[None]
    ) -> None:
        """Hear the daemon's announcements and its first readiness from now on."""
        state_observers.append(self.state_changed)
        ready_once.addCallback(self._first_ready)
        self._send_status()
        if self.interval is not None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self.clock
            # Pinging from the start (if alive) arms systemd's watchdog before READY=1:
            # harmless, and a daemon that hangs while initialising is caught too.
            self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None

    # ------------------------------------------------------------------ events

    def state_changed(self, event: str) -> None:
        self.last_event = event
        if event == "stopping":
            self.last_status = status_text(self.snapshot(), event)
            self.notifier.stopping(self.last_status)
            return
        if event == "ready" and not self.ready_sent:
            self._send_ready()
            return
        self._send_status()

    def _first_ready(self, result: None) -> None:
        # The daemon announces "ready" before firing ready_once; this is the fallback.
        if not self.ready_sent:
            self._send_ready()

    def _send_ready(self) -> None:
        self.ready_sent = True
        self.last_status = status_text(self.snapshot(), self.last_event)
        self.notifier.ready(self.last_status)

    def _send_status(self) -> None:
        text = status_text(self.snapshot(), self.last_event)
        if text != self.last_status:
            self.last_status = text
            self.notifier.status(text)

    # ------------------------------------------------------------------ watchdog

    def _tick(self) -> None:
        if self.last_event != "stopping":
            self._send_status()
        if watchdog_ok(self.snapshot().modem):
            self._ping()
            return
        self.held_back += 1
        # Held back: re-check often and ping as soon as the engine recovers, so only an
        # engine that stays stuck (WatchdogSec/2 and more) lets systemd's deadline pass,
        # not one unlucky sample during a one-second resync.
        if self._recheck is None:
            assert self.interval is not None
            self._recheck = self.clock.callLater(
                min(RECHECK_MAX, self.interval / 4), self._recheck_now
            )

    def _recheck_now(self) -> None:
        self._recheck = None
        if watchdog_ok(self.snapshot().modem):
            self._ping()
        elif self._loop is not None:
            assert self.interval is not None
            self._recheck = self.clock.callLater(
                min(RECHECK_MAX, self.interval / 4), self._recheck_now
            )

    def _ping(self) -> None:
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None
        self.pings += 1
        self.notifier.watchdog()


def install_systemd_notify(
    reactor: Any,
    snapshot: Callable[[], DaemonSnapshot],
    state_observers: list[Callable[[str], None]],
    ready_once: defer.Deferred[None],
) -> SystemdNotifier:
    """Report the daemon's state to systemd; returns the notifier (a no-op without systemd).

    ``snapshot`` reads the daemon; ``state_observers`` is where it announces its events and
    ``ready_once`` fires when it is first ready. Call it after building the daemon and
    before running the reactor. ``reactor`` is used for its clock (``callLater``), so a
    :class:`twisted.internet.task.Clock` works in tests.
    """
    notifier = SystemdNotifier()
    if not notifier.enabled:
        return notifier
    hook = DaemonNotifier(snapshot, reactor, notifier)
    notifier.daemon_hook = hook
    hook.start(state_observers, ready_once)
    return notifier
