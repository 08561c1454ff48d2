"""Backup while writing, restore into an empty storage dir, verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from edge.cli.backup import run_backup, run_restore
from edge.cli.exits import CLIError
from edge.config.model import StorageSettings
from edge.storage.database import connect, database_path
from edge.storage.group_commit import GroupCommitter
from edge.store.backup import BackupError, backup_database
from edge.store.resources import ResourceStore
from edge.store.verify import verify_store
from tests.edge.store.store_support import (
    Env,
    observation_resource,
    patient_ref,
    patient_resource,
)


def _restore_target(env: Env, name: str = "restored") -> Env:
    storage = StorageSettings(dir=env.root / name)
    return Env(env.root, env.settings.model_copy(update={"storage": storage}))


async def test_backup_taken_while_writing_restores_and_verifies(
        env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    committer = GroupCommitter(env.db_path, max_batch=8)
    committer.start()
    store = ResourceStore(env.keys())
    backup_file = env.root / "backup.db"
    first_done = asyncio.Event()

    async def ingest() -> int:
        count = 0
        for n in range(40):
            for k in range(-1, 2):
                resource = patient_resource(n) if k < 0 else observation_resource(n, k)
                await committer.run(lambda c, r=resource, n=n: store.put(  # type: ignore[misc]
                    c, r, patient=patient_ref(n)))
                count += 1
                if count == 30:
                    first_done.set()
        return count

    async def backup() -> None:
        await first_done.wait()  # the backup starts while ingestion is under way
        args = argparse.Namespace(file=backup_file)
        assert await asyncio.to_thread(run_backup, args, env.settings) == 0

    try:
        written, _ = await asyncio.gather(ingest(), backup())
    finally:
        committer.close()
    assert stat.S_IMODE(backup_file.stat().st_mode) == 0o600

    target = _restore_target(env)
    assert run_restore(argparse.Namespace(file=backup_file, json=True), target.settings) == 0
    report = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert report["failures"] == []
    in_backup = report["checked"]["resources"]
    assert 30 <= in_backup <= written  # a consistent snapshot from during the ingestion
    conn = connect(database_path(target.settings.storage.dir))
    try:
        restored = ResourceStore(target.keys())
        # Every version in the backup reads; each Patient's records are all there or not yet.
        assert len(restored.search(conn, patient=patient_ref(0))) == 3
        assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == in_backup
    finally:
        conn.close()


def test_backup_never_overwrites(env: Env, tmp_path: Path) -> None:
    existing = tmp_path / "exists.db"
    existing.write_bytes(b"keep")
    conn = env.connect()
    try:
        with pytest.raises(BackupError):
            backup_database(conn, existing)
    finally:
        conn.close()
    assert existing.read_bytes() == b"keep"
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".hie-edge-copy-")] == []


def test_restore_refuses_an_existing_database(env: Env, tmp_path: Path) -> None:
    conn = env.connect()
    backup_database(conn, tmp_path / "b.db")
    conn.close()
    with pytest.raises(CLIError) as info:
        run_restore(argparse.Namespace(file=tmp_path / "b.db", json=False), env.settings)
    assert info.value.status == 73


def test_restore_refuses_while_the_daemon_runs(env: Env, tmp_path: Path) -> None:
    conn = env.connect()
    backup_database(conn, tmp_path / "b.db")
    conn.close()
    target = _restore_target(env)
    target.settings.storage.dir.mkdir()
    (target.settings.storage.dir / "daemon.json").write_text(json.dumps({"pid": os.getpid()}))
    with pytest.raises(CLIError) as info:
        run_restore(argparse.Namespace(file=tmp_path / "b.db", json=False), target.settings)
    assert info.value.status == 75
    assert not target.db_path.exists()


def test_restore_reports_rows_that_fail(env: Env, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    conn = env.connect()
    store = ResourceStore(env.keys())
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    store.put(conn, observation_resource(1, 0), patient=patient_ref(1))
    body = bytearray(conn.execute("SELECT body FROM resources WHERE id = 'obs-1-0'").fetchone()[0])
    body[50] ^= 4
    conn.execute("UPDATE resources SET body = ? WHERE id = 'obs-1-0'", (bytes(body),))
    backup_database(conn, tmp_path / "b.db")
    conn.close()
    target = _restore_target(env)
    assert run_restore(argparse.Namespace(file=tmp_path / "b.db", json=False),
                       target.settings) == 65
    out = capsys.readouterr().out
    assert "FAILED resources Observation/obs-1-0 v1" in out
    assert "Quxfamily1" not in out


def test_restore_refuses_what_is_not_a_database(env: Env, tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 100)
    target = _restore_target(env)
    with pytest.raises(CLIError) as info:
        run_restore(argparse.Namespace(file=junk, json=False), target.settings)
    assert info.value.status == 65
    with pytest.raises(CLIError) as info:
        run_restore(argparse.Namespace(file=tmp_path / "missing.db", json=False),
                    target.settings)
    assert info.value.status == 66


def test_the_backup_holds_no_plaintext(env: Env, tmp_path: Path) -> None:
    conn = env.connect()
    store = ResourceStore(env.keys())
    for n in range(3):
        store.put(conn, patient_resource(n), patient=patient_ref(n))
    backup_database(conn, tmp_path / "b.db")
    conn.close()
    data = (tmp_path / "b.db").read_bytes()
    for n in range(3):
        for text in (f"MRN{n:06d}", f"Quxfamily{n}", patient_resource(n)["birthDate"]):
            assert text.encode() not in data
    check = connect(tmp_path / "b.db")
    try:
        assert verify_store(check, env.keys()).ok
    finally:
        check.close()
