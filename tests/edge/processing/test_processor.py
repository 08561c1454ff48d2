"""The processing stage commits in inbox order even when conversions finish out of order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge.config import load_config
from edge.crypto.keys import load_keyring
from edge.er7.header import parse_header
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import Arrival, InboxStore
from edge.instance import InitOptions, init_instance
from edge.normalize.context import NormalizeContext
from edge.processing.processor import Processor
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
