"""Handing accepted peer connections to worker processes (edge.peer.channel's handoff and
edge.peer.workers' choice of worker), with real sockets in this process: a TCP connection on
loopback, the SOCK_SEQPACKET pairs the daemon makes for its workers."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.config.loader import load_config
from edge.peer.channel import hand_connection, handoff_pair, take_connections
from edge.peer.workers import PeerWorkers
from tests.integration.conftest import make_instance


@pytest.fixture
def tcp() -> Iterator[tuple[socket.socket, socket.socket]]:
    """(the client's end, the server's accepted end) of a loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    with client, accepted:
        yield client, accepted


def test_a_handed_connection_is_the_same_connection_on_the_other_side(
        tcp: tuple[socket.socket, socket.socket]) -> None:
    client, accepted = tcp
    ours, theirs = handoff_pair()
    theirs.setblocking(False)
    with ours, theirs:
        assert take_connections(theirs) == []  # nothing waiting: does not block
        hand_connection(ours, accepted)
        accepted.close()  # the daemon's copy; the worker's stays open
        (taken,) = take_connections(theirs)  # type: ignore[misc]
        with taken:
            client.sendall(b"ping")
            assert taken.recv(4) == b"ping"
            taken.sendall(b"pong")
            assert client.recv(4) == b"pong"
        ours.close()
        assert take_connections(theirs) is None  # the daemon closed its end


def _workers(tmp_path: Path, count: int) -> PeerWorkers:
    config = make_instance(tmp_path / "inst", f"""
[peer]
bind = "127.0.0.1:0"
[peer.tls]
cert = "{tmp_path}/server.pem"
key = "{tmp_path}/server-key.pem"
ca = "{tmp_path}/ca.pem"
""")
    return PeerWorkers(load_config(config), sink=None, count=count)  # type: ignore[arg-type]


def test_the_worker_holding_the_fewest_gets_it_and_a_gone_one_is_passed_over(
        tmp_path: Path, tcp: tuple[socket.socket, socket.socket],
        caplog: pytest.LogCaptureFixture) -> None:
    workers = _workers(tmp_path, 3)
    pairs = [handoff_pair() for _ in range(3)]
    try:
        for slot, (ours, theirs), held in zip(workers._slots, pairs, (2, 1, 1), strict=True):
            workers._serving(slot, ours)
            slot.open = held
            theirs.setblocking(False)
        first, second, _ = workers._slots
        _, accepted = tcp
        workers._hand(accepted)
        # Slots 1 and 2 hold one each: the one handed fewer so far gets it (both 0: slot 1).
        assert len(take_connections(pairs[1][1]) or []) == 1
        assert (second.open, second.handed) == (2, 1)
        workers._hand(accepted)
        assert len(take_connections(pairs[2][1]) or []) == 1
        # Slot 1's worker is gone (its end closed) before the daemon noticed: the next
        # connection goes to the one after it, though that one holds more.
        pairs[1][1].close()
        pairs[2][1].close()
        workers._hand(accepted)
        assert len(take_connections(pairs[0][1]) or []) == 1
        assert first.open == 3
        pairs[0][1].close()
        with caplog.at_level(logging.WARNING, logger="edge.peer.workers"):
            workers._hand(accepted)  # nobody can take it
        assert "no worker could take it" in caplog.text
        for slot in workers._slots:
            workers._serving(slot, None)
        assert not workers._taking.is_set()  # the accept loop waits, the backlog holds them
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
