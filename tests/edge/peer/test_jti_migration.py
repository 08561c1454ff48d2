"""Migration 43: ``peer_jti`` becomes a WITHOUT ROWID table keyed by the JWT id; the ids a
running daemon recorded before it survive, and a replay of one is still refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from edge.storage import database
from edge.storage.database import connect, migrate

JTI_KEYED = 43


def test_recorded_ids_survive_and_still_refuse_a_replay(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    conn = connect(tmp_path / "edge.db")
    with monkeypatch.context() as patch:
        database._load_schema_modules()
        patch.delitem(database._MIGRATIONS, JTI_KEYED)
        migrate(conn)
    rows = {("jti-live", "clinic-a", 2_000_000_000_000), ("jti-old", "clinic-b", 1_000)}
    conn.executemany("INSERT INTO peer_jti (jti, facility, expires_ms) VALUES (?, ?, ?)", rows)
    assert conn.execute("SELECT count(*) FROM peer_jti WHERE rowid > 0").fetchone() == (2,)

    assert migrate(conn) == [JTI_KEYED]
    assert set(conn.execute("SELECT jti, facility, expires_ms FROM peer_jti")) == rows
    with pytest.raises(sqlite3.IntegrityError):  # the replay check of edge.peer.audit_batch
        conn.execute("INSERT INTO peer_jti (jti, facility, expires_ms) "
                     "VALUES ('jti-live', 'clinic-a', 2000000000000)")
    with pytest.raises(sqlite3.OperationalError, match="rowid"):
        conn.execute("SELECT rowid FROM peer_jti")  # one B-tree, keyed by the id
    # The expiry sweep still finds expired ids by the index, not by reading every id.
    plan = " ".join(str(r) for r in conn.execute(
        "EXPLAIN QUERY PLAN DELETE FROM peer_jti WHERE expires_ms < ?", (5_000,)))
    assert "peer_jti_by_expiry" in plan
    conn.execute("DELETE FROM peer_jti WHERE expires_ms < ?", (5_000,))
    assert [j for (j,) in conn.execute("SELECT jti FROM peer_jti")] == ["jti-live"]
    conn.close()
