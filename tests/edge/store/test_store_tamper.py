"""Tampering with stored rows is detected, reported with the row, and never returned."""

from __future__ import annotations

import sqlite3

import pytest

from edge.crypto.envelope import AAD, open_, seal
from edge.crypto.errors import IntegrityError
from edge.store.resources import ResourceStore
from edge.store.verify import verify_store
from tests.edge.store.store_support import (
    Env,
    observation_resource,
    patient_ref,
    patient_resource,
)


@pytest.fixture
def filled(conn: sqlite3.Connection, store: ResourceStore) -> sqlite3.Connection:
    for n in (1, 2):
        store.put(conn, patient_resource(n), patient=patient_ref(n))
        store.put(conn, observation_resource(n, 0), patient=patient_ref(n))
        store.put(conn, observation_resource(n, 1), patient=patient_ref(n))
    store.put(conn, patient_resource(1, active=True), patient=patient_ref(1))  # version 2
    return conn


def _row(conn: sqlite3.Connection, rid: str, version: int = 1) -> int:
    return int(conn.execute("SELECT row FROM resources WHERE id = ? AND version = ?",
                            (rid, version)).fetchone()[0])


def _body(conn: sqlite3.Connection, row: int) -> bytes:
    return bytes(conn.execute("SELECT body FROM resources WHERE row = ?", (row,)).fetchone()[0])


def _set(conn: sqlite3.Connection, row: int, column: str, value: object) -> None:
    conn.execute(f"UPDATE resources SET {column} = ? WHERE row = ?", (value, row))


def _assert_refused(call: object, row: int, rid: str) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        call()  # type: ignore[operator]
    message = str(info.value)
    assert f"row {row}" in message and rid in message  # names the row
    assert "Quxfamily" not in message and "MRN0" not in message  # and no content
    return info.value


@pytest.mark.parametrize("offset", [0, 5, 20, 40, -1])
def test_a_flipped_ciphertext_byte_is_detected(filled: sqlite3.Connection,
                                               store: ResourceStore, offset: int) -> None:
    row = _row(filled, "obs-1-0")
    body = bytearray(_body(filled, row))
    body[offset] ^= 0x01
    _set(filled, row, "body", bytes(body))
    error = _assert_refused(lambda: store.read(filled, "Observation", "obs-1-0"), row,
                            "Observation/obs-1-0")
    assert error.table == "resources" and error.version == 1
    # Searches that would include the row refuse too, rather than return the others silently.
    _assert_refused(lambda: store.search(filled, patient=patient_ref(1)), row, "obs-1-0")
    # Other rows still read.
    assert store.read(filled, "Observation", "obs-1-1") is not None


def test_swapped_bodies_between_resources_are_detected(filled: sqlite3.Connection,
                                                      store: ResourceStore) -> None:
    a, b = _row(filled, "obs-1-0"), _row(filled, "obs-1-1")
    body_a, body_b = _body(filled, a), _body(filled, b)
    _set(filled, a, "body", body_b)
    _set(filled, b, "body", body_a)
    _assert_refused(lambda: store.read(filled, "Observation", "obs-1-0"), a, "obs-1-0")
    _assert_refused(lambda: store.read(filled, "Observation", "obs-1-1"), b, "obs-1-1")


def test_a_body_copied_from_another_patient_is_detected(filled: sqlite3.Connection,
                                                       store: ResourceStore) -> None:
    mine, theirs = _row(filled, "obs-1-0"), _row(filled, "obs-2-0")
    _set(filled, mine, "body", _body(filled, theirs))
    _assert_refused(lambda: store.read(filled, "Observation", "obs-1-0"), mine, "obs-1-0")


def test_a_row_moved_to_another_patient_is_detected(filled: sqlite3.Connection,
                                                   store: ResourceStore) -> None:
    # Re-point patient 2's observation at patient 1, key id and all: it would decrypt under
    # patient 2's key, but that key is not patient 1's.
    row = _row(filled, "obs-2-0")
    owner = filled.execute("SELECT patient FROM resources WHERE row = ?",
                           (_row(filled, "obs-1-0"),)).fetchone()[0]
    _set(filled, row, "patient", owner)
    error = _assert_refused(lambda: store.search(filled, patient=patient_ref(1)), row,
                            "obs-2-0")
    assert "another owner" in str(error)


def test_a_replayed_old_version_is_detected(filled: sqlite3.Connection,
                                           store: ResourceStore) -> None:
    v1, v2 = _row(filled, "pat-1", 1), _row(filled, "pat-1", 2)
    _set(filled, v2, "body", _body(filled, v1))
    _set(filled, v2, "leaf_hash", filled.execute(
        "SELECT leaf_hash FROM resources WHERE row = ?", (v1,)).fetchone()[0])
    _assert_refused(lambda: store.read(filled, "Patient", "pat-1"), v2, "Patient/pat-1")
    _assert_refused(lambda: store.history(filled, "Patient", "pat-1"), v2, "pat-1")
    old = store.vread(filled, "Patient", "pat-1", 1)  # the untouched version still reads
    assert old is not None and "active" not in old.resource


def test_an_altered_leaf_hash_is_detected(filled: sqlite3.Connection,
                                         store: ResourceStore) -> None:
    row = _row(filled, "obs-1-1")
    assert _body(filled, row)[0] == 2  # format 2: the leaf hash is in the AAD
    leaf = filled.execute("SELECT leaf_hash FROM resources WHERE row = ?", (row,)).fetchone()[0]
    for altered in (bytes(32), leaf[:-1] + bytes([leaf[-1] ^ 1]), leaf[:16], leaf.hex()):
        _set(filled, row, "leaf_hash", altered)
        error = _assert_refused(lambda: store.read(filled, "Observation", "obs-1-1"), row,
                                "obs-1-1")
        assert "leaf hash" in str(error)
        assert not verify_store(filled, store.keys).ok


def _as_format_1(conn: sqlite3.Connection, store: ResourceStore, row: int) -> None:
    """Seal a row again the way the store did before format 2 (leaf hash not in the AAD)."""
    rtype, rid, version, key_id, body, leaf = conn.execute(
        "SELECT type, id, version, key_id, body, leaf_hash FROM resources WHERE row = ?",
        (row,)).fetchone()
    key = store.keys.get(conn, key_id)
    aad = AAD("resources", f"{rtype}/{rid}", version)
    plain = open_(key, body, aad, bound=leaf)
    _set(conn, row, "body", seal(key, plain, aad))


def test_format_1_rows_still_open_and_are_hashed_again(filled: sqlite3.Connection,
                                                      store: ResourceStore) -> None:
    row = _row(filled, "obs-1-1")
    before = store.read(filled, "Observation", "obs-1-1")
    _as_format_1(filled, store, row)
    assert _body(filled, row)[0] == 1
    after = store.read(filled, "Observation", "obs-1-1")
    assert after is not None and before is not None
    assert (after.resource, after.salt, after.leaf_hash) == (before.resource, before.salt,
                                                             before.leaf_hash)
    assert verify_store(filled, store.keys).ok
    # Without the AAD binding, the leaf hash is checked against the record itself.
    _set(filled, row, "leaf_hash", bytes(32))
    error = _assert_refused(lambda: store.read(filled, "Observation", "obs-1-1"), row,
                            "obs-1-1")
    assert "the leaf hash does not match the record" in str(error)


def test_a_format_2_body_relabelled_as_format_1_is_detected(filled: sqlite3.Connection,
                                                           store: ResourceStore) -> None:
    # Claiming the old format would skip the AAD binding of the leaf hash: it cannot open.
    row = _row(filled, "obs-1-1")
    _set(filled, row, "body", b"\x01" + _body(filled, row)[1:])
    error = _assert_refused(lambda: store.read(filled, "Observation", "obs-1-1"), row,
                            "obs-1-1")
    assert "failed authentication" in str(error)


def test_a_forged_identifier_index_row_is_detected(filled: sqlite3.Connection,
                                                  store: ResourceStore) -> None:
    # Point patient 1's MRN index at patient 2's record.
    value = store.keys.indexer(filled).identifier("urn:oid:2.16.840.1.113883.3.1234",
                                                  "MRN000001")
    assert filled.execute("SELECT count(*) FROM resource_identifiers WHERE value = ?",
                          (value,)).fetchone()[0] == 1
    target = _row(filled, "pat-2")
    filled.execute("INSERT INTO resource_identifiers (resource, value) VALUES (?, ?)",
                   (target, value))
    token = "urn:oid:2.16.840.1.113883.3.1234|MRN000001"
    with pytest.raises(IntegrityError, match="identifier index") as info:
        store.search(filled, identifier=token)
    assert f"row {target}" in str(info.value)


def test_an_altered_wrapped_key_is_detected(env: Env, filled: sqlite3.Connection) -> None:
    key_id = filled.execute("SELECT key_id FROM resources WHERE id = 'obs-1-0'").fetchone()[0]
    wrapped = bytearray(filled.execute("SELECT wrapped FROM data_keys WHERE key_id = ?",
                                       (key_id,)).fetchone()[0])
    wrapped[-1] ^= 0x80
    filled.execute("UPDATE data_keys SET wrapped = ? WHERE key_id = ?", (bytes(wrapped), key_id))
    fresh = ResourceStore(env.keys())  # nothing cached
    row = _row(filled, "obs-1-0")
    _assert_refused(lambda: fresh.read(filled, "Observation", "obs-1-0"), row, "obs-1-0")


def test_a_swapped_key_owner_is_detected(env: Env, filled: sqlite3.Connection) -> None:
    # Give patient 1's key row to patient 2: the owner is bound into the wrap.
    k1, o1 = filled.execute("SELECT r.key_id, k.owner FROM resources r JOIN data_keys k "
                            "ON k.key_id = r.key_id WHERE r.id = 'pat-1'").fetchone()
    k2, o2 = filled.execute("SELECT r.key_id, k.owner FROM resources r JOIN data_keys k "
                            "ON k.key_id = r.key_id WHERE r.id = 'pat-2'").fetchone()
    filled.execute("UPDATE data_keys SET owner = 'x' WHERE key_id = ?", (k1,))
    filled.execute("UPDATE data_keys SET owner = ? WHERE key_id = ?", (o1, k2))
    filled.execute("UPDATE data_keys SET owner = ? WHERE key_id = ?", (o2, k1))
    fresh = ResourceStore(env.keys())
    _assert_refused(lambda: fresh.read(filled, "Patient", "pat-2"), _row(filled, "pat-2"),
                    "pat-2")


def test_verify_lists_every_tampered_row(env: Env, filled: sqlite3.Connection) -> None:
    assert verify_store(filled, env.keys()).ok
    flipped, swapped = _row(filled, "obs-1-0"), _row(filled, "obs-2-1")
    body = bytearray(_body(filled, flipped))
    body[-3] ^= 0xFF
    _set(filled, flipped, "body", bytes(body))
    _set(filled, swapped, "body", _body(filled, _row(filled, "obs-2-0")))
    report = verify_store(filled, env.keys())
    assert not report.ok
    assert sorted(f.row for f in report.failures) == [
        f"Observation/obs-1-0 v1 (row {flipped})", f"Observation/obs-2-1 v1 (row {swapped})"]
    assert report.checked["resources"] == 7
    for failure in report.failures:
        assert "Quxfamily" not in failure.problem
