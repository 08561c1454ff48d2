from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.storage.errors import StorageError
from edge.storage.group_commit import GroupCommitter


@pytest.fixture
def committer(tmp_path: Path) -> Iterator[GroupCommitter]:
    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT UNIQUE)")
    gc = GroupCommitter(path, max_batch=64)
    gc.start()
    yield gc
    gc.close()


def insert(value: str):  # type: ignore[no-untyped-def]
    def op(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO t (v) VALUES (?)", (value,))
        return value
    return op


def values(committer: GroupCommitter) -> list[str]:
    with sqlite3.connect(committer._path) as conn:
        return [v for (v,) in conn.execute("SELECT v FROM t ORDER BY rowid")]


async def test_concurrent_writes_share_transactions(committer: GroupCommitter) -> None:
    results = await asyncio.gather(*(committer.run(insert(f"v{i}")) for i in range(200)))
    assert results == [f"v{i}" for i in range(200)]
    assert len(values(committer)) == 200
    assert committer.stats.transactions < 200  # grouped: fewer fsyncs than writes


async def test_a_failing_operation_does_not_sink_its_neighbours(committer: GroupCommitter) -> None:
    outcomes = await asyncio.gather(committer.run(insert("a")), committer.run(insert("a")),
                                    committer.run(insert("b")), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "b"
    assert isinstance(outcomes[1], StorageError) and not outcomes[1].retriable
    assert values(committer) == ["a", "b"]


async def test_a_failed_commit_fails_every_write_in_it_retriably(committer: GroupCommitter) -> None:
    await committer.run(insert("seed"))

    def fill(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await committer.run(fill)
    big = "x" * 50_000
    with pytest.raises(StorageError) as info:
        await committer.run(insert(big))
    assert info.value.retriable
    await committer.run(lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
    assert await committer.run(insert(big)) == big


async def test_foreground_writes_go_before_queued_background_work(
        committer: GroupCommitter) -> None:
    gate = threading.Event()

    def blocker(conn: sqlite3.Connection) -> None:
        gate.wait(10)  # holds the writer until everything below is queued

    first = committer.submit(blocker)
    background = [committer.submit(insert(f"bg{i}"), background=True) for i in range(3)]
    foreground = committer.submit(insert("fg"))
    gate.set()
    await asyncio.gather(first, foreground, *background)
    assert values(committer) == ["fg", "bg0", "bg1", "bg2"]


async def test_close_finishes_both_lanes(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT UNIQUE)")
    gc = GroupCommitter(path)
    gc.start()
    futures = [gc.submit(insert(f"b{i}"), background=True) for i in range(5)]
    futures.append(gc.submit(insert("f")))
    await asyncio.to_thread(gc.close)
    await asyncio.gather(*futures)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 6


def _temp_files_open() -> list[str]:
    """Files this process holds open in SQLite's temp naming (``etilqs_``): SQLite unlinks
    them on creation, so /proc/self/fd is where they can be seen."""
    names = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            names.append(str(fd.readlink()))
        except OSError:
            continue  # closed between listing and reading
    return [n for n in names if "etilqs_" in n]


async def test_operation_undo_journals_stay_in_memory(committer: GroupCommitter) -> None:
    """An operation that changes far more than SQLite's 64 KiB in-memory sub-journal limit
    writes no temp file, and rolling it back to its savepoint still works."""
    await committer.run(lambda conn: conn.executemany(
        "INSERT INTO t (v) VALUES (?)", ((f"{i:06d}" + "x" * 500,) for i in range(2000))))
    seen: list[str] = []

    def rewrite_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE t SET v = 'y' || v")  # ~1 MB of existing pages
        seen.extend(_temp_files_open())
        raise RuntimeError("this operation fails after its changes")

    failing = committer.run(rewrite_then_fail)
    neighbour = committer.run(insert("after"))
    with pytest.raises(RuntimeError):
        await failing
    assert await neighbour == "after"
    assert seen == []
    stored = values(committer)
    assert len(stored) == 2001 and stored[-1] == "after"
    assert not any(v.startswith("y") for v in stored)
