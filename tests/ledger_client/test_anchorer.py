"""The anchorer: interval and early checkpoints, outbox retries with backoff, restarts,
idempotency, and never holding up appends. Driven by a fake clock; nothing sleeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ledger_client.anchorer import Anchorer, AnchorPolicy
from ledger_client.checkpoint import NoteSigner, open_checkpoint
from ledger_client.errors import AnchorConflict
from ledger_client.log import MerkleLog
from ledger_client.testing import FakeBackend, FakeClock

from .ledger_support import FACILITY, make_leaves

POLICY = AnchorPolicy(interval_s=10, max_pending_leaves=100, backoff_initial_s=2,
                      backoff_max_s=60)


def anchorer(mlog: MerkleLog, backend: FakeBackend, signer: NoteSigner, clock: FakeClock,
             db: Path | None = None) -> Anchorer:
    return Anchorer(mlog, backend, signer, FACILITY, db=db, policy=POLICY, clock=clock,
                    sleep=clock.sleep, jitter=lambda: 1.0)


async def until(cond: object, rounds: int = 1000) -> None:
    """Let other tasks run until ``cond()`` holds (no time passes)."""
    for _ in range(rounds):
        if cond():  # type: ignore[operator]
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def test_anchors_on_interval_with_a_verifiable_signed_checkpoint(
        mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    await a.tick()
    assert backend.published == []  # empty log: nothing to anchor
    mlog.append(make_leaves(10))
    await a.tick()
    assert [s.checkpoint.tree_size for s in backend.published] == [10]
    cp = open_checkpoint(backend.published[0].note, signer.verifier)
    assert cp.root_hash == mlog.root(10) and cp.timestamp_ms == int(clock() * 1000)
    mlog.append(make_leaves(5, 10))
    await a.tick()  # interval not over yet
    assert len(backend.published) == 1
    st = a.status()
    assert (st.log_size, st.last_anchored_size, st.leaves_pending) == (15, 10, 5)
    assert st.backend_reachable is True and st.last_anchored_at == clock()
    clock.advance(10)
    await a.tick()
    assert [s.checkpoint.tree_size for s in backend.published] == [10, 15]
    assert a.status().leaves_pending == 0
    assert [x.checkpoint.tree_size for x in a.anchored()] == [10, 15]


async def test_many_waiting_leaves_anchor_before_the_interval(
        mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(1))
    await a.tick()
    mlog.append(make_leaves(99, 1))
    a.notify(mlog.size)
    await a.tick()
    assert len(backend.published) == 1  # 99 waiting: below the threshold
    mlog.append(make_leaves(1, 100))
    await a.tick()
    assert [s.checkpoint.tree_size for s in backend.published] == [1, 101]


async def test_notify_reads_no_table_per_append_and_still_wakes_at_the_threshold(
        mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(1))
    await a.tick()  # checkpoint 1 queued (and published)
    mlog.append(make_leaves(99, 1))
    statements: list[str] = []
    mlog.connection.set_trace_callback(statements.append)
    for _ in range(3):
        a.notify(100)  # 99 waiting: below the threshold
    assert statements == [] and not a._wake.is_set()
    a.notify(101)  # 100 waiting
    assert statements == [] and a._wake.is_set()
    mlog.connection.set_trace_callback(None)
    mlog.append(make_leaves(1, 100))
    # A checkpoint queued by another process (the CLI's anchorer): this one wakes early
    # once, and its tick catches up with the table.
    a._wake.clear()
    other = anchorer(mlog, backend, signer, clock)
    assert other.make_checkpoint() is not None  # size 101, queued elsewhere
    a.notify(mlog.size)
    assert a._wake.is_set()
    a._wake.clear()
    await a.tick()
    mlog.append(make_leaves(50, 101))
    a.notify(mlog.size)  # 50 waiting since 101
    assert not a._wake.is_set()


async def test_unreachable_backend_retries_with_backoff_and_catches_up(
        mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    backend.unreachable = True
    mlog.append(make_leaves(3))
    await a.tick()
    st = a.status()
    assert st.backend_reachable is False and st.checkpoints_pending == 1
    assert st.last_error is not None and "BackendUnavailable" in st.last_error
    clock.advance(1.9)  # first backoff step is 2 s
    await a.tick()
    assert a.status().checkpoints_pending == 1 and backend.published == []
    clock.advance(0.2)
    await a.tick()  # second failure: the next step is 4 s
    clock.advance(3.9)
    mlog.append(make_leaves(4, 3))  # intake goes on meanwhile
    await a.tick()
    assert backend.published == []
    clock.advance(10)
    backend.unreachable = False
    await a.tick()
    # The newest checkpoint superseded the older pending one; one publish covers both.
    assert [s.checkpoint.tree_size for s in backend.published] == [7]
    st = a.status()
    assert (st.last_anchored_size, st.checkpoints_pending, st.backend_reachable) == (7, 0, True)
    assert st.last_error is None


async def test_pending_checkpoint_survives_a_restart(db_path: Path, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    first_log = MerkleLog.open(db_path)
    first_log.append(make_leaves(6))
    backend.unreachable = True
    await anchorer(first_log, backend, signer, clock).tick()
    first_log.close()
    backend.unreachable = False
    clock.advance(60)
    second_log = MerkleLog.open(db_path)
    again = anchorer(second_log, backend, signer, clock, db=db_path)
    await again.tick()
    assert [s.checkpoint.tree_size for s in backend.published] == [6]
    assert again.status().last_anchored_size == 6
    second_log.close()


async def test_republishing_an_anchored_size_is_fine(mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(4))
    signed = a.make_checkpoint()
    assert signed is not None
    # A crash after the backend accepted it but before the outbox recorded it:
    ref = await backend.publish(signed)
    assert await a.publish_pending() == ref
    assert a.status().last_anchored_size == 4


async def test_conflicting_root_is_a_final_failure(mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(4))
    backend.fail_next(AnchorConflict(4))
    await a.tick()
    st = a.status()
    assert st.checkpoints_pending == 0 and st.last_anchored_size == 0
    assert st.last_error is not None and "root-conflict" in st.last_error
    clock.advance(3600)
    await a.tick()
    assert backend.published == []  # never retried


async def test_a_slow_backend_never_blocks_appends(mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(5))
    backend.hold()
    task = asyncio.create_task(a.tick())
    await until(lambda: backend.waiting == 1)
    for i in range(3):  # the intake keeps appending while the publish hangs
        mlog.append(make_leaves(10, 5 + 10 * i))
    assert mlog.size == 35
    backend.release()
    await task
    assert a.status().last_anchored_size == 5


async def test_run_loop_anchors_and_stops(mlog: MerkleLog, signer: NoteSigner) -> None:
    clock, backend = FakeClock(), FakeBackend()
    a = anchorer(mlog, backend, signer, clock)
    mlog.append(make_leaves(2))
    task = asyncio.create_task(a.run())
    await until(lambda: len(backend.published) == 1)
    mlog.append(make_leaves(3, 2))
    await until(lambda: len(backend.published) == 2)
    a.stop()
    await task
    assert [s.checkpoint.tree_size for s in backend.published] == [2, 5]
    assert all(s <= POLICY.interval_s for s in clock.sleeps)
