"""systemd's service notification protocol (sd_notify(3)).

systemd-python is used when it is importable; otherwise the datagram is sent by hand, which is
the whole protocol: one AF_UNIX datagram of newline-separated ``KEY=value`` lines to the socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` names an abstract socket). Without the variable,
notifications are no-ops, so the daemon runs the same outside systemd.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

try:  # pragma: no cover - depends on the optional systemd extra
    from systemd import daemon as _sd_daemon
except ImportError:  # pragma: no cover
    _sd_daemon = None


def _send_datagram(state: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        try:
            sock.sendto(state.encode("utf-8"), address)
        except OSError:
            return False
    return True


def _send_systemd(state: str) -> bool:  # pragma: no cover - needs libsystemd
    assert _sd_daemon is not None
    return bool(_sd_daemon.notify(state))


class Notifier:
    """Sends lifecycle states to the service manager. Never raises: a missing or broken
    socket must not take the daemon down."""

    def __init__(self, send: Callable[[str], bool] | None = None) -> None:
        self._send = send or (_send_systemd if _sd_daemon is not None else _send_datagram)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def reloading(self) -> None:
        # Type=notify-reload (systemd 253+) wants MONOTONIC_USEC with RELOADING=1.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self._send("STOPPING=1")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings: half of ``$WATCHDOG_USEC`` (sd_watchdog_enabled(3)),
    or None when the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2_000_000
