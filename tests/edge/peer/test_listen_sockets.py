"""The peer workers' listening sockets (edge.peer.workers.bind_sockets), on real loopback."""

from __future__ import annotations

import select
import socket

import pytest

from edge.peer.workers import bind_sockets


def _accepted(sockets: list[socket.socket], expected: int) -> list[int]:
    """How many connections each socket has waiting, once ``expected`` arrived in all."""
    counts = [0] * len(sockets)
    for sock in sockets:
        sock.setblocking(False)
    while sum(counts) < expected:
        ready, _, _ = select.select(sockets, [], [], 5.0)
        assert ready, "connections did not arrive"
        for sock in ready:
            conn, _ = sock.accept()
            conn.close()
            counts[sockets.index(sock)] += 1
    return counts


def test_one_port_for_every_worker_and_the_kernel_spreads_connections() -> None:
    sockets = bind_sockets("127.0.0.1", 0, 2)
    try:
        ports = {sock.getsockname()[1] for sock in sockets}
        assert len(ports) == 1 and 0 not in ports
        port = ports.pop()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        try:
            counts = _accepted(sockets, len(clients))
        finally:
            for client in clients:
                client.close()
        # A hash of each connection's addresses picks the socket: 64 connections all on one
        # of two sockets has probability 2**-63.
        assert all(counts) and sum(counts) == 64
    finally:
        for sock in sockets:
            sock.close()


def test_a_port_another_process_listens_on_is_refused() -> None:
    taken = socket.create_server(("127.0.0.1", 0), reuse_port=True)
    try:
        # Without the probe, SO_REUSEPORT would let this bind share the other's port.
        with pytest.raises(OSError):
            bind_sockets("127.0.0.1", taken.getsockname()[1], 2)
    finally:
        taken.close()


def test_a_failed_bind_closes_the_sockets_already_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second socket fails (here: the process is out of file descriptors): the first is
    closed, so the port is free again and nothing leaks from a daemon that could not bind."""
    made: list[socket.socket] = []
    real = socket.create_server

    def create_server(*args: object, **kwargs: object) -> socket.socket:
        if made:
            raise OSError(24, "Too many open files")
        sock = real(*args, **kwargs)  # type: ignore[arg-type]
        made.append(sock)
        return sock

    monkeypatch.setattr(socket, "create_server", create_server)
    with pytest.raises(OSError, match="Too many open files"):
        bind_sockets("127.0.0.1", 0, 2)
    (first,) = made
    assert first.fileno() == -1  # closed
