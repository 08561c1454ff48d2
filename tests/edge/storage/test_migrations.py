"""Migrations reach databases made by earlier releases."""

from __future__ import annotations

from pathlib import Path

from edge.storage.database import connect, migrate, schema_version


def test_a_database_of_the_release_before_the_change_epoch_gets_it(tmp_path: Path) -> None:
    # What the previous release left: every migration up to 40, no change epoch.
    conn = connect(tmp_path / "edge.db")
    migrate(conn)
    with conn:
        for trigger in ("resources_updated", "resources_deleted", "resources_moved"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE resource_change_epoch")
        conn.execute("DELETE FROM schema_migrations WHERE version > 40")
    assert schema_version(conn) == 40
    assert migrate(conn) == [41, 42, 43]
    with conn:
        conn.execute("INSERT INTO resources (type, id, version, key_id, last_updated, body, "
                     "leaf_hash) VALUES ('Observation', 'o', 1, 'k', 't', x'00', x'00')")
        conn.execute("UPDATE resources SET ledger_index = 0")
    assert conn.execute("SELECT epoch FROM resource_change_epoch").fetchone() == (1,)
    conn.close()


def test_a_migration_numbered_below_the_highest_applied_is_applied_too(tmp_path: Path) -> None:
    # Two changes made side by side: a database got 41-43 first, then a release registers 13.
    conn = connect(tmp_path / "edge.db")
    migrate(conn)
    with conn:
        conn.execute("DROP INDEX resources_by_patient_type")
        conn.execute("CREATE INDEX resources_by_patient ON resources (patient)")
        conn.execute("DELETE FROM schema_migrations WHERE version = 13")
    assert schema_version(conn) == 43
    assert migrate(conn) == [13]
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(resources)")}
    assert "resources_by_patient_type" in indexes and "resources_by_patient" not in indexes
    conn.close()
