"""The peer worker processes, as the daemon runs them: they share the connections evenly
(the daemon hands each to the worker holding the fewest), and they outlive nothing: when the
daemon is SIGKILLed (no shutdown path runs), its workers see their channel close and end, so
the peer port is free for the next start instead of held by orphans answering with nobody to
commit their audit records."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import ssl
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.peer.tls import client_context
from edge.devca import IssuedCert, create_ca, issue
from ledger_client.checkpoint import NoteSigner
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance
from tests.integration.test_peer import peer_entry_toml


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


def _instance(tmp_path: Path, *members: str) -> tuple[Path, IssuedCert, dict[str, IssuedCert]]:
    """(config, CA, member certificates): an instance serving the peer API through two
    workers under a dev CA; each of ``members`` gets a certificate and a directory entry."""
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = create_ca(tls, name="t")
    server = issue(ca, tls, "server", common_name="server")
    text = f"""
[peer]
bind = "127.0.0.1:0"
workers = 2
[peer.tls]
cert = "{server.cert}"
key = "{server.key}"
ca = "{ca.cert}"
"""
    issued = {}
    for name in members:
        issued[name] = issue(ca, tls, name, common_name=name)
        der = x509.load_pem_x509_certificate(issued[name].cert.read_bytes()).public_bytes(
            serialization.Encoding.DER)
        vkey = NoteSigner(f"hie-edge/{name}", Ed25519PrivateKey.generate()).verifier.vkey()
        text += peer_entry_toml(name, "https://127.0.0.1:9", hashlib.sha256(der).hexdigest(),
                                vkey)
    return make_instance(tmp_path / "inst", text), ca, issued


def _peer_port(daemon: DaemonProcess) -> int:
    listeners = daemon.runtime()["listeners"]
    assert isinstance(listeners, dict)
    return int(listeners["peer"][0].rpartition(":")[2])


async def test_workers_end_when_the_daemon_is_killed(tmp_path: Path,
                                                     notify_socket: NotifySocket) -> None:
    config, _, _ = _instance(tmp_path)
    daemon = DaemonProcess(config, notify_socket)
    try:
        daemon.wait_ready()
        port = _peer_port(daemon)
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


def _established(pid: int, port: int) -> set[int]:
    """The client ports of the established TCP connections to ``port`` that process ``pid``
    holds (its socket descriptors matched against /proc/net/tcp, proc(5))."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and inode in inodes and int(local.rpartition(":")[2], 16) == port:
            ports.add(int(remote.rpartition(":")[2], 16))
    return ports


async def test_connections_go_to_the_worker_holding_the_fewest(
        tmp_path: Path, notify_socket: NotifySocket) -> None:
    """Eight connections from a member split 4/4; when the four one worker holds close, the
    next four all go to it. (The kernel's SO_REUSEPORT hash, used before, splits eight 4/4
    with probability 70/256.)"""
    config, ca, issued = _instance(tmp_path, "member")
    member = issued["member"]
    context = client_context(cert=member.cert, key=member.key, ca=ca.cert)
    daemon = DaemonProcess(config, notify_socket)
    held: list[ssl.SSLSocket] = []

    def connect(port: int) -> int:
        """A member's connection, handshake done and admitted; its client port."""
        sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                                   server_hostname="127.0.0.1")
        held.append(sock)
        return int(sock.getsockname()[1])

    async def split(workers: list[int], port: int, expected: int) -> list[set[int]]:
        async with asyncio.timeout(30):
            while True:
                found = [_established(pid, port) for pid in workers]
                if sum(map(len, found)) == expected:
                    return found
                await asyncio.sleep(0.05)

    try:
        daemon.wait_ready()
        port = _peer_port(daemon)
        workers = _children(daemon.proc.pid)
        assert len(workers) == 2
        first = {connect(port) for _ in range(8)}
        held_by = await split(workers, port, 8)
        assert [len(ports) for ports in held_by] == [4, 4]
        assert set.union(*held_by) == first
        for sock in [s for s in held if s.getsockname()[1] in held_by[0]]:
            sock.close()
            held.remove(sock)
        await split(workers, port, 4)  # the worker saw them close (and told the daemon)
        await asyncio.sleep(0.2)  # its "closed" messages travel on the channel
        second = {connect(port) for _ in range(4)}
        after = await split(workers, port, 8)
        assert after[0] == second and after[1] == held_by[1]
        # /status shows what the balancing counts, per worker.
        admin = daemon.runtime()["admin"][0]  # type: ignore[index]
        with urllib.request.urlopen(f"http://{admin}/status", timeout=10) as resp:
            status = json.loads(resp.read())
        assert status["peer"]["worker_connections"] == {str(pid): 4 for pid in workers}
        assert "Traceback" not in daemon.log()
    finally:
        for sock in held:
            sock.close()
        daemon.stop()
