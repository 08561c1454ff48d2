"""A damaged database page (bit rot, a torn write, a bad sector) under stored records: the
damage is reported, naming the row or the page, and no read ever returns wrong data.

SQLite has no page checksums: bytes changed inside a record are invisible to
``PRAGMA integrity_check`` and caught by the AES-GCM tag every record carries (the row is
named); damage to the b-tree structure is what ``integrity_check`` sees (the page is named).
The daemon is stopped while the file is edited, as a disk would do it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adapters.mllp.client import MLLPClient, parse_ack
from edge.config import Settings, load_config
from edge.crypto.errors import IntegrityError
from edge.crypto.keys import load_keyring
from edge.errors import EdgeError
from edge.storage.database import connect, database_path
from edge.store.keys import StoreKeys
from edge.store.resources import ResourceStore
from tests.faults.support import integrity_check, message, record_figures
from tests.integration.conftest import daemon_with, start_daemon
from tests.integration.test_ledger_cli import hie_edge
from tests.integration.test_verify import ingest_and_anchor

pytestmark = pytest.mark.timeout(180)


async def stored_instance(directory: Path) -> Settings:
    """An instance holding 40 anchored ORU messages' records, its daemon stopped, the WAL
    folded into the database file (so edits to the file are what a reader sees)."""
    async with daemon_with(directory, replace={
            'ack = "on-commit"': 'ack = "on-processed"'}) as running:
        await ingest_and_anchor(running, 40)
        settings = running.settings
    db = database_path(settings.storage.dir)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return settings


def locate(db: Path, row: int) -> tuple[int, int, str, str]:
    """Where row ``row`` of ``resources`` keeps its sealed body in the file: (byte offset of
    the body, page number, type, id)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        body, rtype, rid = conn.execute(
            "SELECT body, type, id FROM resources WHERE row = ?", (row,)).fetchone()
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    data = db.read_bytes()
    offset = data.index(bytes(body)[64:128]) - 64  # ciphertext: unique in the file
    assert data.count(bytes(body)[64:128]) == 1
    return offset, offset // page_size + 1, rtype, rid


def flip(db: Path, offset: int, count: int = 1) -> None:
    with db.open("r+b") as f:
        f.seek(offset)
        old = f.read(count)
        f.seek(offset)
        f.write(bytes(b ^ 0xFF for b in old))


def page_size(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    return int(size)


def page_bytes(db: Path, page: int, at: int, data: bytes) -> None:
    with db.open("r+b") as f:
        f.seek((page - 1) * page_size(db) + at)
        f.write(data)


def verify(settings_dir: Path) -> tuple[int, dict[str, Any], str]:
    result = hie_edge("verify", "--all", "--json", "--config", str(settings_dir / "edge.toml"))
    report = json.loads(result.stdout) if result.stdout.strip().startswith("{") else {}
    return result.returncode, report, result.stderr


def store_of(settings: Settings) -> ResourceStore:
    return ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))


async def test_changed_bytes_inside_a_record_are_caught_naming_the_row(tmp_path: Path) -> None:
    settings = await stored_instance(tmp_path / "inst")
    db = database_path(settings.storage.dir)
    rows = int(sqlite3.connect(db).execute("SELECT count(*) FROM resources").fetchone()[0])
    victim = rows // 2
    offset, page, rtype, rid = locate(db, victim)
    flip(db, offset + 40)

    # SQLite cannot see it (no page checksums); the record's authentication tag does.
    assert integrity_check(db) == ["ok"]
    code, report, stderr = verify(tmp_path / "inst")
    assert code == 65, stderr
    assert report["findings"] == [{"what": f"row {victim}", "problem": "integrity"}]
    assert report["verified"] == rows - 1

    # The daemon's read path refuses the record, naming the row; others still read.
    store = store_of(settings)
    conn = connect(db, readonly=True)
    try:
        with pytest.raises(IntegrityError) as caught:
            store.read(conn, rtype, rid)
        assert f"(row {victim})" in str(caught.value)
        assert caught.value.row_id == f"{rtype}/{rid}"
        other = store.verify_row(conn, 1)
        assert other.resource["id"] == other.id
    finally:
        conn.close()

    # And the daemon itself starts and takes messages beside the damaged record.
    running = await start_daemon(tmp_path / "inst" / "edge.toml")
    try:
        host, port = running.mllp()
        async with MLLPClient.connect(host, port) as client:
            ack = parse_ack(await client.send(message("AFTER-DAMAGE", 0)))
        assert ack.code == "AA"
    finally:
        assert await running.stop() == 0
    record_figures("corrupt_record", {"rows": rows, "damaged_row": victim, "page": page,
                                      "verify_exit": code, "integrity_check": "ok",
                                      "wrong_data_returned": 0})


async def test_a_damaged_btree_page_is_named_by_integrity_check_and_fails_verify(
        tmp_path: Path) -> None:
    settings = await stored_instance(tmp_path / "inst")
    db = database_path(settings.storage.dir)
    victim = int(sqlite3.connect(db).execute("SELECT count(*) FROM resources").fetchone()[0])
    _, page, _, _ = locate(db, victim // 2)
    # Bytes 8-11 of a leaf page are its first two cell pointers (SQLite file format 1.6):
    # swapped, the page's rows are out of order, a b-tree fault reads can trip over.
    with db.open("rb") as f:
        f.seek((page - 1) * page_size(db) + 8)
        first, second = f.read(2), f.read(2)
    page_bytes(db, page, 8, second + first)

    problems = integrity_check(db)
    assert problems != ["ok"]
    assert any(f"page {page}" in line for line in problems), problems
    code, report, stderr = verify(tmp_path / "inst")
    assert code == 65, stderr
    assert report["ok"] is False and report["findings"]
    assert report["verified"] < report["checked"]
    record_figures("corrupt_page", {"damaged_page": page, "verify_exit": code,
                                    "findings": len(report["findings"]),
                                    "integrity_check_names_page": True})


async def test_a_zeroed_page_gives_a_clear_error_not_an_internal_error(tmp_path: Path) -> None:
    settings = await stored_instance(tmp_path / "inst")
    db = database_path(settings.storage.dir)
    pristine = tmp_path / "pristine.db"
    shutil.copy(db, pristine)
    victim = int(sqlite3.connect(db).execute("SELECT count(*) FROM resources").fetchone()[0])
    _, page, rtype, rid = locate(db, victim // 2)
    page_bytes(db, page, 0, bytes(page_size(db)))

    assert integrity_check(db) != ["ok"]
    store = store_of(settings)
    conn = connect(db, readonly=True)
    try:
        with pytest.raises(EdgeError):  # a named storage/integrity error, not sqlite3's
            store.read(conn, rtype, rid)
    finally:
        conn.close()
    code, _, stderr = verify(tmp_path / "inst")
    assert "internal error" not in stderr
    assert code in (65, 74), stderr
    assert load_config(tmp_path / "inst" / "edge.toml")  # the config is not what broke
