"""Requests waiting for the writer are written by one operation, each with its own events;
a replayed JWT id fails only its own request; a failed transaction fails every request in
it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from edge.crypto.keys import generate_kek_file, load_keyring
from edge.peer.audit import Actor, AuditRecord, audit_trail, build_audit_event, prepare_audit
from edge.peer.audit_batch import AuditBatcher, AuditWrite, Replayed
from edge.storage.database import connect, migrate
from edge.store._tx import write_transaction
from edge.store.keys import StoreKeys
from edge.store.ledgered import put_ledgered
from edge.store.resources import ResourceStore
from ledger_client.log import MerkleLog
from tests.edge.peer.support import REF, patient

T = TypeVar("T")


class GatedCommitter:
    """Runs operations on one connection, each in its own transaction, once ``gate`` opens
    (so the test decides what is waiting when the writer takes it)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.gate = asyncio.Event()
        self.fail = False

    async def run(self, op: Callable[[sqlite3.Connection], T], *,
                  background: bool = False) -> T:
        await self.gate.wait()
        with write_transaction(self.conn):
            result = op(self.conn)
            if self.fail:
                raise sqlite3.OperationalError("disk I/O error")
            return result


@pytest.fixture
def setup(tmp_path: Path) -> tuple[sqlite3.Connection, ResourceStore]:
    generate_kek_file(tmp_path / "kek")
    conn = connect(tmp_path / "edge.db")
    migrate(conn)
    store = ResourceStore(StoreKeys(lambda: load_keyring(tmp_path / "kek")))
    put_ledgered(conn, store, [patient()], patient=REF)
    return conn, store


def write(n: int, jti: str | None = None) -> AuditWrite:
    actor = Actor("peer", "there", f"dr-{n}", "physician", "TREAT")
    now = datetime.now(UTC)
    events = [build_audit_event(AuditRecord(pattern, "0", actor, now, patient_id="pat-1"),
                                facility="here", event_id=f"ev-{n}-{pattern}")
              for pattern in ("consent-decision", "operation", "disclosure")]
    return AuditWrite(jti or f"jti-{n:08d}", "there", 10**13, int(now.timestamp() * 1000),
                      prepare_audit(events), REF, None)


async def test_waiting_requests_share_one_operation(
        setup: tuple[sqlite3.Connection, ResourceStore]) -> None:
    conn, store = setup
    committer = GatedCommitter(conn)
    notices: list[int] = []
    batcher = AuditBatcher(committer, store, on_notice=lambda: notices.append(1))
    conn.execute("INSERT INTO peer_jti (jti, facility, expires_ms) VALUES ('used-before', "
                 "'there', 10000000000000)")
    tasks = [asyncio.ensure_future(batcher.write(write(n))) for n in range(5)]
    tasks.append(asyncio.ensure_future(batcher.write(write(9, "used-before"))))
    while len(batcher._pending) < 6:  # all six queued
        await asyncio.sleep(0)
    committer.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert batcher.operations == 1 and batcher.writes == 6
    assert isinstance(results[5], Replayed)
    size = MerkleLog(conn).size
    assert results[:5] == [size] * 5 and size == 1 + 15
    trail = [e["id"] for e in audit_trail(conn, store, REF)]
    assert sorted(trail) == sorted(f"ev-{n}-{p}" for n in range(5)
                                   for p in ("consent-decision", "operation", "disclosure"))
    # Each request's events are consecutive in the log, in its order.
    rows = conn.execute("SELECT id, ledger_index FROM resources WHERE type = 'AuditEvent' "
                        "ORDER BY ledger_index").fetchall()
    assert [r[0] for r in rows[:3]] == ["ev-0-consent-decision", "ev-0-operation",
                                        "ev-0-disclosure"]
    assert notices == []  # no notice was due
    # A later request starts a new operation.
    task = asyncio.ensure_future(batcher.write(write(7)))
    assert await task == size + 3 and batcher.operations == 2


async def test_a_failed_transaction_fails_every_request_in_it(
        setup: tuple[sqlite3.Connection, ResourceStore]) -> None:
    conn, store = setup
    committer = GatedCommitter(conn)
    committer.fail = True
    batcher = AuditBatcher(committer, store)
    tasks = [asyncio.ensure_future(batcher.write(write(n))) for n in range(3)]
    while len(batcher._pending) < 3:
        await asyncio.sleep(0)
    committer.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)
    assert audit_trail(conn, store, REF) == []
    committer.fail = False
    assert await batcher.write(write(4)) == MerkleLog(conn).size
