"""The processing stage commits in inbox order even when conversions finish out of order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config
from edge.crypto.errors import IndexInputError
from edge.crypto.keys import load_keyring
from edge.er7.header import parse_header
from edge.inbox.schema import TABLE as INBOX
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import Arrival, InboxStore
from edge.instance import InitOptions, init_instance
from edge.normalize.context import NormalizeContext
from edge.processing.processor import MAX_ATTEMPTS, Processed, ProcessingOrderError, Processor
from edge.processing.worker import Converted
from edge.storage.database import connect, database_path, migrate
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore

A01 = (b"MSH|^~\\&|ADT1|HOSP|HIE|EDGE|202601011200||ADT^{event}^ADT_A01|{id}|P|2.5.1\r"
       b"EVN|{event}|202601011200\r"
       b"PID|1||MRN777^^^HOSP^MR||{family}^ANN||19700101|F\r"
       b"PV1|1|I|W1^1^1\r")


class SecondFirstExecutor(Executor):
    """Runs in the event loop's thread. The first conversion is held back; the second
    finishes at once and the first only a few loop turns later, after the second's caller
    has resumed: without ordering, the second message would commit first."""

    def __init__(self) -> None:
        self._held: tuple[Future[Any], Callable[..., Any], tuple[Any, ...]] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        if self._held is None:
            self._held = (future, fn, args)
            return future
        held_future, held_fn, held_args = self._held
        loop = asyncio.get_running_loop()

        def release(turns: int) -> None:
            if turns:
                loop.call_soon(release, turns - 1)
            else:
                held_future.set_result(held_fn(*held_args))

        loop.call_soon(release, 3)
        future.set_result(fn(*args))
        return future


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Any, GroupCommitter, StoreKeys]]:
    config = init_instance(tmp_path / "inst", InitOptions(mllp_port=0, admin_port=0, fhir_port=0))
    settings = load_config(config)
    path = database_path(settings.storage.dir)
    settings.storage.dir.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrate(conn)
    conn.close()
    committer = GroupCommitter(path)
    committer.start()
    keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
    yield settings, committer, keys
    committer.close()


async def test_an_a08_converted_first_still_commits_after_its_a01(
        instance: tuple[Any, GroupCommitter, StoreKeys]) -> None:
    settings, committer, keys = instance
    path = database_path(settings.storage.dir)
    conn = connect(path)
    sealer = InboxSealer(keys, conn)
    inbox = InboxStore(committer, sealer)
    messages = [A01.replace(b"{event}", e).replace(b"{id}", i).replace(b"{family}", f)
                for e, i, f in ((b"A01", b"M1", b"FIRST"), (b"A08", b"M2", b"SECOND"))]
    rows = []
    for raw in messages:
        arrival = Arrival(raw, "adt", "test", datetime.now(UTC), parse_header(raw))
        stored = await inbox.store(arrival, state="received", reason="",
                                   ack_for=lambda rid: ("AA", b"ACK"))
        rows.append(stored.row_id)
    processor = Processor(path, committer, keys, sealer,
                          NormalizeContext(facility_id=settings.facility.id),
                          SecondFirstExecutor())
    results = await asyncio.gather(*(processor.process(row, raw)
                                     for row, raw in zip(rows, messages, strict=True)))
    assert [r.state for r in results] == ["processed", "processed"]
    [patient_id] = {v[1] for r in results for v in r.versions if v[0] == "Patient"}
    store = ResourceStore(keys)
    latest = store.read(conn, "Patient", patient_id)
    assert latest is not None and latest.version == 2
    assert latest.resource["name"][0]["family"] == "SECOND"
    conn.close()


class HeldExecutor(Executor):
    """Runs conversions in the event loop's thread, all at once when released; ``replace``
    swaps chosen messages' outcomes (by position) for one that cannot be stored."""

    def __init__(self, *, hold: bool = True, replace: set[int] | None = None,
                 refuse: set[int] | None = None) -> None:
        self.hold = hold
        self.replace = replace or set()
        self.refuse = refuse or set()  # submissions (by position) refused, as after shutdown
        self._held: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []
        self.calls = 0
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.submitted += 1
        if self.submitted - 1 in self.refuse:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future[Any] = Future()
        self._held.append((future, fn, args))
        if not self.hold:
            self.release()
        return future

    def release(self) -> None:
        held, self._held = self._held, []
        for future, fn, args in held:
            outcome = fn(*args)
            if self.calls in self.replace:
                # The patient key is not SYSTEM|VALUE: storing this message raises.
                outcome = Converted(outcome.records, "no separator")
            self.calls += 1
            future.set_result(outcome)


async def stored_messages(settings: Any, committer: GroupCommitter, keys: StoreKeys,
                          count: int) -> tuple[list[int], list[bytes], InboxSealer]:
    """``count`` A01/A08 messages for one patient, the n-th naming the family Fn."""
    conn = connect(database_path(settings.storage.dir))
    sealer = InboxSealer(keys, conn)
    inbox = InboxStore(committer, sealer)
    rows, messages = [], []
    for n in range(count):
        raw = (A01.replace(b"{event}", b"A01" if n == 0 else b"A08")
               .replace(b"{id}", f"M{n}".encode()).replace(b"{family}", f"F{n}".encode()))
        arrival = Arrival(raw, "adt", "test", datetime.now(UTC), parse_header(raw))
        stored = await inbox.store(arrival, state="received", reason="",
                                   ack_for=lambda rid: ("AA", b"ACK"))
        rows.append(stored.row_id)
        messages.append(raw)
    return rows, messages, sealer


def states(settings: Any, rows: list[int]) -> list[tuple[str, int]]:
    conn = connect(database_path(settings.storage.dir))
    try:
        found = dict(conn.execute(
            f"SELECT id, state || ':' || attempts FROM {INBOX} WHERE id IN "
            f"({', '.join('?' * len(rows))})", rows).fetchall())
    finally:
        conn.close()
    return [(found[r].split(":")[0], int(found[r].split(":")[1])) for r in rows]


def latest_family(settings: Any, keys: StoreKeys, results: list[Processed]) -> tuple[int, str]:
    [patient_id] = {v[1] for r in results for v in r.versions if v[0] == "Patient"}
    conn = connect(database_path(settings.storage.dir))
    try:
        latest = ResourceStore(keys).read(conn, "Patient", patient_id)
    finally:
        conn.close()
    assert latest is not None
    return latest.version, latest.resource["name"][0]["family"]


@dataclass
class Together:
    """Messages claimed together and converted all at once (see :func:`process_together`)."""

    rows: list[int]
    messages: list[bytes]
    processor: Processor
    outcomes: list[Processed | BaseException]
    operations: int  # writer operations from the release of the conversions to the end


async def process_together(instance: tuple[Any, GroupCommitter, StoreKeys], count: int,
                           executor: HeldExecutor) -> Together:
    """``count`` stored messages (:func:`stored_messages`) handed to ``process`` at once,
    their conversions held by ``executor`` until every one is claimed, then released."""
    settings, committer, keys = instance
    rows, messages, sealer = await stored_messages(settings, committer, keys, count)
    processor = Processor(database_path(settings.storage.dir), committer, keys, sealer,
                          NormalizeContext(facility_id=settings.facility.id), executor)
    calls = [asyncio.ensure_future(processor.process(row, raw))
             for row, raw in zip(rows, messages, strict=True)]
    await asyncio.sleep(0)
    before = committer.stats.operations
    executor.release()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    return Together(rows, messages, processor, outcomes, committer.stats.operations - before)


async def test_messages_converted_together_commit_in_one_writer_operation_in_order(
        instance: tuple[Any, GroupCommitter, StoreKeys]) -> None:
    settings, _, keys = instance
    run = await process_together(instance, 12, HeldExecutor())
    assert [getattr(r, "state", r) for r in run.outcomes] == ["processed"] * 12
    # One operation (one transaction, one fsync) for the twelve, not one each.
    assert run.operations == 1
    assert latest_family(settings, keys, run.outcomes) == (12, "F11")  # type: ignore[arg-type]


async def test_a_message_failing_mid_batch_keeps_it_and_the_later_ones_received(
        instance: tuple[Any, GroupCommitter, StoreKeys]) -> None:
    settings, _, keys = instance
    executor = HeldExecutor(replace={2})
    run = await process_together(instance, 5, executor)
    outcomes = run.outcomes
    assert [o.state for o in outcomes[:2] if isinstance(o, Processed)] == ["processed"] * 2
    assert isinstance(outcomes[2], IndexInputError)  # the cause, not a wrapper
    assert all(isinstance(o, ProcessingOrderError) for o in outcomes[3:])
    assert states(settings, run.rows) == [("processed", 0)] * 2 + [("received", 0)] * 3
    # A failure does not poison the order: the retry of the same messages goes through.
    executor.hold = False
    retried = await asyncio.gather(*(run.processor.process(row, raw) for row, raw
                                     in zip(run.rows[2:], run.messages[2:], strict=True)))
    assert [r.state for r in retried] == ["processed"] * 3
    assert latest_family(settings, keys, [*outcomes[:2], *retried]) == (5, "F4")  # type: ignore[list-item]


async def test_a_claim_refused_before_converting_still_holds_back_the_later_ones(
        instance: tuple[Any, GroupCommitter, StoreKeys]) -> None:
    settings = instance[0]
    run = await process_together(instance, 4, HeldExecutor(refuse={1}))
    outcomes = run.outcomes
    assert isinstance(outcomes[0], Processed) and outcomes[0].state == "processed"
    assert isinstance(outcomes[1], RuntimeError)
    assert all(isinstance(o, ProcessingOrderError) for o in outcomes[2:])
    # The A08s after the refused one did not commit ahead of it.
    assert states(settings, run.rows) == [("processed", 0)] + [("received", 0)] * 3


async def test_the_background_loop_dead_letters_only_the_message_that_keeps_failing(
        instance: tuple[Any, GroupCommitter, StoreKeys]) -> None:
    settings, committer, keys = instance
    rows, _, sealer = await stored_messages(settings, committer, keys, 6)
    # The fourth conversion fails on every attempt (each retry converts it again first).
    executor = HeldExecutor(hold=False, replace={3, 6, 9, 12, 15})
    pauses: list[float] = []

    async def no_pause(seconds: float) -> None:
        pauses.append(seconds)
        await asyncio.sleep(0)

    processor = Processor(database_path(settings.storage.dir), committer, keys, sealer,
                          NormalizeContext(facility_id=settings.facility.id), executor,
                          sleep=no_pause)
    task = asyncio.create_task(processor.run())

    async def settled() -> None:
        while any(state == "received" for state, _ in states(settings, rows)):
            await asyncio.sleep(0.01)

    await asyncio.wait_for(settled(), 30)
    processor.stop()
    await asyncio.wait_for(task, 10)
    assert states(settings, rows) == ([("processed", 0)] * 3 + [("dead-letter", MAX_ATTEMPTS)]
                                      + [("processed", 0)] * 2)
    # Paused between retries, longer each time (shorter pauses: yielding to intake).
    assert [p for p in pauses if p >= 1.0] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert processor.counts["processed"] == 5
    assert processor.last_error == "IndexInputError"
    conn = connect(database_path(settings.storage.dir))
    (reason,) = conn.execute(f"SELECT reason FROM {INBOX} WHERE id = ?",
                             (rows[3],)).fetchone()
    conn.close()
    assert reason == f"processing failed {MAX_ATTEMPTS} times (IndexInputError); replay after a fix"
