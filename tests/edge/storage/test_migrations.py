"""Migrations reach databases made by earlier releases."""

from __future__ import annotations

from pathlib import Path

from edge.storage.database import connect, migrate, schema_version


def test_a_database_of_the_release_before_the_change_epoch_gets_it(tmp_path: Path) -> None:
    # What the previous release left: every migration up to 40, no change epoch. ``migrate``
    # applies the versions above the highest applied, so the epoch's number must be above 40.
    conn = connect(tmp_path / "edge.db")
    migrate(conn)
    with conn:
        for trigger in ("resources_updated", "resources_deleted", "resources_moved"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE resource_change_epoch")
        conn.execute("DELETE FROM schema_migrations WHERE name = 'resource change epoch'")
    assert schema_version(conn) == 40
    assert migrate(conn) == [41]
    with conn:
        conn.execute("INSERT INTO resources (type, id, version, key_id, last_updated, body, "
                     "leaf_hash) VALUES ('Observation', 'o', 1, 'k', 't', x'00', x'00')")
        conn.execute("UPDATE resources SET ledger_index = 0")
    assert conn.execute("SELECT epoch FROM resource_change_epoch").fetchone() == (1,)
    conn.close()
