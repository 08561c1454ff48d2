"""SIGKILL under load: every message acknowledged AA is on disk, exactly once, after restart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

from adapters.mllp.client import MLLPClient, parse_ack
from adapters.mllp.errors import MLLPError
from edge.inbox.schema import TABLE
from tests.integration.conftest import DaemonProcess, NotifySocket, make_instance
from tests.integration.test_mllp_intake import adt

CONNECTIONS = 4
KILL_AFTER = 600  # acknowledgements seen across all connections before the SIGKILL
CYCLES = 3


async def _load(host: str, port: int, cycle: int, conn: int, acked: list[str],
                kill: asyncio.Event) -> None:
    """Pipelines small batches until the connection dies; records what was acknowledged."""
    sent = 0
    try:
        async with MLLPClient.connect(host, port, timeout=10) as client:
            while True:
                ids = [f"K{cycle}-{conn}-{sent + i}" for i in range(10)]
                sent += 10
                answers = await client.send_many(adt(i) for i in ids)
                for control_id, answer in zip(ids, answers, strict=True):
                    ack = parse_ack(answer)
                    assert ack.control_id == control_id
                    if ack.code == "AA":
                        acked.append(control_id)
                if len(acked) >= KILL_AFTER * (cycle + 1):
                    kill.set()
    except (MLLPError, ConnectionError, OSError):
        return  # the daemon was killed under us


async def test_sigkill_under_load_loses_no_acknowledged_message(
        tmp_path: Path, notify_socket: NotifySocket) -> None:
    config = make_instance(tmp_path / "inst")
    acked: list[str] = []
    for cycle in range(CYCLES):
        daemon = DaemonProcess(config, notify_socket)
        daemon.wait_ready()
        host, port = daemon.mllp()
        kill = asyncio.Event()
        clients = [asyncio.create_task(_load(host, port, cycle, c, acked, kill))
                   for c in range(CONNECTIONS)]
        await asyncio.wait_for(kill.wait(), 120)
        daemon.kill()  # SIGKILL: no shutdown path runs
        await asyncio.wait_for(asyncio.gather(*clients), 60)

    # One more start proves the database opens after the last kill.
    daemon = DaemonProcess(config, notify_socket)
    daemon.wait_ready()
    host, port = daemon.mllp()
    async with MLLPClient.connect(host, port) as client:
        assert parse_ack(await client.send(adt("AFTER-CRASHES"))).code == "AA"
    assert daemon.stop() == 0

    db = tmp_path / "inst" / "data" / "edge.db"
    with sqlite3.connect(db) as conn:
        stored = Counter(cid for (cid,) in conn.execute(f"SELECT control_id FROM {TABLE}"))
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
    assert integrity == "ok"
    assert len(acked) >= CYCLES * KILL_AFTER
    missing = [cid for cid in acked if stored[cid] == 0]
    duplicated = [cid for cid, n in stored.items() if n > 1]
    assert missing == []
    assert duplicated == []
