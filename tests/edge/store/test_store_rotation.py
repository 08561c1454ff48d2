"""KEK rotation while writes go on: nothing is lost, every key ends under the new KEK, the
old KEK is retired only when nothing needs it, and a daemon holding the old keyring keeps
working (it reloads on its own)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
from pathlib import Path

import pytest

from edge.cli.keys import run_keys
from edge.crypto.keys import archive_path, load_keyring, read_kek_file, rotate_kek_file
from edge.storage.group_commit import GroupCommitter
from edge.store.resources import ResourceStore
from edge.store.rotation import (
    kek_ids_in_use,
    record_current_kek,
    retire_unused_keks,
    rewrap_all,
)
from edge.store.verify import verify_store
from tests.edge.store.store_support import (
    Env,
    observation_resource,
    patient_ref,
    patient_resource,
)


def _rotate_args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {"action": "rotate", "batch_size": 3, "rewrap_only": False,
                                 "keep_old": False, "json": False}
    values.update(overrides)
    return argparse.Namespace(**values)


async def test_rotation_under_concurrent_group_commit_writes_loses_nothing(env: Env) -> None:
    # The "daemon": a group committer and a store whose keyring was loaded before rotation.
    committer = GroupCommitter(env.db_path, max_batch=16)
    committer.start()
    daemon = ResourceStore(env.keys())
    loop = asyncio.get_running_loop()
    written: list[tuple[str, str]] = []

    async def write(n: int, k: int) -> None:
        resource = patient_resource(n) if k < 0 else observation_resource(n, k)
        stored = await committer.run(lambda c: daemon.put(c, resource, patient=patient_ref(n)))
        written.append((stored.type, stored.id))

    try:
        for n in range(20):
            await write(n, -1)
        old_kek = read_kek_file(env.kek_file)
        writes_during: list[int] = []

        def after_batch(done: int) -> None:
            # Between every two re-wrap batches the daemon writes: a new patient (a new key,
            # which must go under the new KEK) and a record for an existing one.
            n = 100 + len(writes_during)
            asyncio.run_coroutine_threadsafe(write(n, -1), loop).result()
            asyncio.run_coroutine_threadsafe(write(n % 20, n), loop).result()
            writes_during.append(done)

        def rotate() -> list[str]:
            conn = env.connect()
            try:
                new, _ = rotate_kek_file(env.kek_file)
                keyring = load_keyring(env.kek_file)
                assert keyring.current.kek_id == new.kek_id
                record_current_kek(conn, new.kek_id)
                rewrap_all(conn, keyring, batch_size=3, progress=after_batch)
                return retire_unused_keks(conn, keyring, env.kek_file.parent)
            finally:
                conn.close()

        retired = await asyncio.to_thread(rotate)
        for n in range(20):  # and after
            await write(n, 999)
    finally:
        committer.close()

    assert len(writes_during) >= 7  # 20+ keys in batches of 3, a write between each
    assert retired == [old_kek.kek_id]
    assert not archive_path(env.kek_file.parent, old_kek.kek_id).exists()
    conn = env.connect()
    try:
        new_id = read_kek_file(env.kek_file).kek_id
        assert kek_ids_in_use(conn) == {new_id: conn.execute(
            "SELECT count(*) FROM data_keys").fetchone()[0]}
        # Everything written is there and opens with the new KEK alone.
        fresh = ResourceStore(env.keys())
        assert load_keyring(env.kek_file).kek_ids == (new_id,)
        for rtype, rid in written:
            assert fresh.read(conn, rtype, rid) is not None
        assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == len(written)
        assert verify_store(conn, fresh.keys).ok
    finally:
        conn.close()


def test_a_daemon_with_a_stale_keyring_reads_rewrapped_keys(env: Env,
                                                           conn: sqlite3.Connection) -> None:
    writer = ResourceStore(env.keys())
    for n in range(3):
        writer.put(conn, patient_resource(n), patient=patient_ref(n))
    stale = ResourceStore(env.keys())  # keyring loaded now, nothing unwrapped yet
    assert run_keys(_rotate_args(), env.settings) == 0
    # Its keyring lacks the new KEK and the old one is retired: it reloads and goes on.
    for n in range(3):
        assert stale.read(conn, "Patient", f"pat-{n}") is not None
    stale.put(conn, patient_resource(7), patient=patient_ref(7))
    assert set(kek_ids_in_use(conn)) == {read_kek_file(env.kek_file).kek_id}


def test_rotate_cli_twice_and_rewrap_only(env: Env, conn: sqlite3.Connection,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    store = ResourceStore(env.keys())
    for n in range(5):
        store.put(conn, patient_resource(n), patient=patient_ref(n))
    first = read_kek_file(env.kek_file).kek_id
    assert run_keys(_rotate_args(), env.settings) == 0
    assert run_keys(_rotate_args(keep_old=True), env.settings) == 0
    second_archive = sorted(p.name for p in env.kek_file.parent.iterdir())
    assert len(second_archive) == 2  # kek + the previous one kept
    assert f"kek.{first}" not in second_archive
    out = capsys.readouterr().out
    assert "re-wrapped 6 data keys" in out  # 5 patients + the index key
    assert run_keys(_rotate_args(rewrap_only=True), env.settings) == 0
    assert sorted(p.name for p in env.kek_file.parent.iterdir()) == ["kek"]
    fresh = ResourceStore(env.keys())
    assert all(fresh.read(conn, "Patient", f"pat-{n}") for n in range(5))


def test_rotate_refuses_without_a_database(tmp_path: Path, env: Env) -> None:
    from edge.cli.exits import CLIError

    env.db_path.unlink()
    with pytest.raises(CLIError) as info:
        run_keys(_rotate_args(), env.settings)
    assert info.value.status == 66
    assert not any(p.name.startswith("kek.") for p in env.kek_file.parent.iterdir())


def test_a_key_that_fails_to_unwrap_keeps_the_old_kek(env: Env,
                                                     conn: sqlite3.Connection) -> None:
    store = ResourceStore(env.keys())
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    key_id = conn.execute("SELECT key_id FROM resources").fetchone()[0]
    wrapped = bytearray(conn.execute("SELECT wrapped FROM data_keys WHERE key_id = ?",
                                     (key_id,)).fetchone()[0])
    wrapped[-1] ^= 1
    conn.execute("UPDATE data_keys SET wrapped = ? WHERE key_id = ?", (bytes(wrapped), key_id))
    old = read_kek_file(env.kek_file).kek_id
    assert run_keys(_rotate_args(), env.settings) == 65
    assert archive_path(env.kek_file.parent, old).exists()
