"""Migration 42: blind index search terms written by the release before (full 32-byte HMACs)
are cut to 16 bytes, and the store finds and verifies them afterwards."""

from __future__ import annotations

import sqlite3

import pytest

from edge.crypto.blind_index import TERM_LEN, IndexKind
from edge.storage import database
from edge.storage.database import migrate, schema_version
from edge.store.prepared import index_terms
from edge.store.resources import ResourceStore
from edge.store.verify import verify_store
from tests.edge.store.store_support import (
    SYSTEM,
    Env,
    observation_resource,
    patient_ref,
    patient_resource,
)

TRUNCATION = 42


def _previous_release(env: Env, monkeypatch: pytest.MonkeyPatch) -> sqlite3.Connection:
    """A database with every migration but 42, holding rows indexed the way that release
    indexed them: the full HMAC-SHA256 of each term."""
    env.db_path.unlink()
    conn = env.connect()
    with monkeypatch.context() as patch:
        database._load_schema_modules()
        patch.delitem(database._MIGRATIONS, TRUNCATION)
        migrate(conn)
    assert TRUNCATION not in {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    store = ResourceStore(env.keys())
    owned = [(patient_resource(1), 1), (patient_resource(2), 2), (observation_resource(1, 0), 1)]
    for resource, n in owned:
        store.put(conn, resource, patient=patient_ref(n))
    resources = [resource for resource, _ in owned]
    indexer = store.keys.indexer(conn)
    conn.execute("DELETE FROM resource_identifiers")
    conn.execute("DELETE FROM patient_demographics")
    for resource in resources:
        (row,) = conn.execute("SELECT row FROM resources WHERE id = ?",
                              (resource["id"],)).fetchone()
        for kind, fields in index_terms(resource):
            full = indexer._digest(kind, fields)
            assert len(full) == 32
            if kind is IndexKind.IDENTIFIER:
                conn.execute("INSERT INTO resource_identifiers (resource, value) VALUES (?, ?)",
                             (row, full))
            else:
                conn.execute("INSERT INTO patient_demographics (resource, kind, value) "
                             "VALUES (?, ?, ?)", (row, kind.value, full))
    return conn


def test_full_digests_are_cut_to_search_terms(env: Env,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _previous_release(env, monkeypatch)
    before = {(t, r, bytes(v)) for t, r, v in conn.execute(
        "SELECT 'i', resource, value FROM resource_identifiers UNION ALL "
        "SELECT kind, resource, value FROM patient_demographics")}
    store = ResourceStore(env.keys())
    # Before the migration the new code finds nothing by those rows (they are 32 bytes).
    assert store.search(conn, identifier=f"{SYSTEM}|MRN000001") == []

    assert migrate(conn) == [TRUNCATION]
    assert schema_version(conn) >= TRUNCATION
    after = {(t, r, bytes(v)) for t, r, v in conn.execute(
        "SELECT 'i', resource, value FROM resource_identifiers UNION ALL "
        "SELECT kind, resource, value FROM patient_demographics")}
    assert after == {(t, r, v[:TERM_LEN]) for t, r, v in before}
    assert all(type(v) is bytes for _, _, v in after)  # still BLOBs

    found = store.search(conn, identifier=f"{SYSTEM}|MRN000001")
    assert [item.id for item in found] == ["pat-1"]
    assert [p.id for p in store.search_patients(conn, family="Quxfamily2")] == ["pat-2"]
    assert [o.id for o in store.search(conn, identifier="urn:accession|ACC1-0")] == ["obs-1-0"]
    assert verify_store(conn, env.keys()).ok
    # New writes index the same way as the migrated rows.
    store.put(conn, patient_resource(3), patient=patient_ref(3))
    assert {len(v) for (v,) in conn.execute("SELECT value FROM resource_identifiers")} == {16}
    assert [p.id for p in store.search_patients(conn, family="Quxfamily3")] == ["pat-3"]
    assert migrate(conn) == []  # applied once
    conn.close()
