"""Timing profiles: ``fast`` for tests, ``nbiot`` for a realistic NB-IoT link."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EmulatorProfile:
    """Everything about the emulator's timing that is not the baud rate.

    Durations are seconds. Tests adjust one field with ``dataclasses.replace``.
    """

    name: str
    #: After ``>`` is on the line the module enters data mode after uniform(0, this).
    #: None: the module profile's ``prompt_delay`` (what the real module needs); a
    #: number is a timing override (tests run faster than a real module would).
    prompt_max_delay: float | None
    #: QSSLOPEN result no sooner than uniform(lo, hi) after the command.
    open_latency: tuple[float, float]
    #: Network round trip: half before the server sees sent data, half for replies.
    rtt: float
    #: Uplink payload rate in bytes/s; None: unlimited.
    uplink_rate: float | None
    #: Delay between QSSLCLOSE's OK and ``+QSSLCLOSE``.
    close_latency: float
    #: Data mode gives up after this long without a byte (ERROR). None: the socket's
    #: ``"timeout"`` setting, as the module does.
    data_mode_timeout: float | None
    #: Multiplies the ``"timeout"`` setting (10..300 s) wherever it applies, so a test
    #: can see a -7 without waiting 10 s.
    timeout_scale: float
    #: After a reboot input is ignored until ``RDY``, this long after the banner.
    boot_time: float
    #: ``+CPIN: READY`` this long after ``RDY``.
    sim_ready_delay: float


FAST = EmulatorProfile(
    name="fast",
    prompt_max_delay=0.05,
    open_latency=(0.0, 0.0),
    rtt=0.0,
    uplink_rate=None,
    close_latency=0.0,
    data_mode_timeout=3.0,
    timeout_scale=1.0,
    boot_time=0.05,
    sim_ready_delay=0.02,
)

NBIOT = EmulatorProfile(
    name="nbiot",
    prompt_max_delay=None,
    open_latency=(4.0, 10.0),
    rtt=1.0,
    uplink_rate=2048.0,
    close_latency=0.2,
    data_mode_timeout=None,
    timeout_scale=1.0,
    boot_time=2.0,
    sim_ready_delay=1.0,
)

PROFILES: dict[str, EmulatorProfile] = {p.name: p for p in (FAST, NBIOT)}
