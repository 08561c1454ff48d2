"""The peer worker processes outlive nothing: when the daemon is SIGKILLed (no shutdown path
runs), its workers see their channel close and end, so the peer port is free for the next
start instead of held by orphans answering with nobody to commit their audit records."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from edge.devca import create_ca, issue
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance


def _children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"edge.peer.worker" in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_workers_end_when_the_daemon_is_killed(tmp_path: Path,
                                                     notify_socket: NotifySocket) -> None:
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = create_ca(tls, name="t")
    server = issue(ca, tls, "server", common_name="server")
    config = make_instance(tmp_path / "inst", f"""
[peer]
bind = "127.0.0.1:0"
workers = 2
[peer.tls]
cert = "{server.cert}"
key = "{server.key}"
ca = "{ca.cert}"
""")
    daemon = DaemonProcess(config, notify_socket)
    try:
        daemon.wait_ready()
        listeners = daemon.runtime()["listeners"]
        assert isinstance(listeners, dict)
        port = int(listeners["peer"][0].rpartition(":")[2])
        workers = _children(daemon.proc.pid)
        assert len(workers) == 2
        daemon.kill()
        async with asyncio.timeout(30):
            while any(_alive(pid) for pid in workers):
                await asyncio.sleep(0.05)
        # Nobody holds the port any more.
        socket.create_server(("127.0.0.1", port)).close()
        assert "Traceback" not in daemon.log()
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
    assert json.dumps(workers)  # the pids were real numbers, for the failure message
