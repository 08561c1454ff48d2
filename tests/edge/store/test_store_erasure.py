"""Erasure: the patient's key, rows and raw messages go; nothing left decrypts to them;
other patients are untouched. Raw messages re-keyed to the patient go with them."""

from __future__ import annotations

import sqlite3

import pytest

from edge.crypto.envelope import AAD, open_
from edge.crypto.errors import IntegrityError
from edge.store.erasure import erase_patient
from edge.store.errors import ErasureError
from edge.store.keys import PatientRef
from edge.store.rekey import DROPPED_KEY_ID, rekey_inbox_message
from edge.store.resources import ResourceStore
from edge.store.verify import verify_store
from tests.edge.store.store_support import (
    SYSTEM,
    Env,
    add_inbox_message,
    file_bytes,
    hl7_message,
    observation_resource,
    patient_ref,
    patient_resource,
    phi_strings,
)


def _fill(conn: sqlite3.Connection, store: ResourceStore, patients: range) -> dict[int, int]:
    """Two versions of each Patient, three Observations, one raw message re-keyed to them."""
    inbox = {}
    for n in patients:
        store.put(conn, patient_resource(n), patient=patient_ref(n))
        store.put(conn, patient_resource(n, active=True), patient=patient_ref(n))
        for k in range(3):
            store.put(conn, observation_resource(n, k), patient=patient_ref(n))
        row_id = add_inbox_message(conn, store.keys, hl7_message(n))
        rekey_inbox_message(conn, store.keys, row_id, patient_ref(n))
        inbox[n] = row_id
    return inbox


def _secrets_of(conn: sqlite3.Connection, n: int, inbox_row: int,
                before_rekey: bytes) -> list[bytes]:
    """Distinctive byte strings that must vanish from disk: chunks of every ciphertext of
    patient ``n``, their wrapped key, and the key id."""
    owner_key = conn.execute("SELECT key_id FROM resources WHERE id = ?",
                             (f"pat-{n}",)).fetchone()[0]
    blobs = [bytes(b) for (b,) in conn.execute("SELECT body FROM resources WHERE key_id = ?",
                                               (owner_key,))]
    blobs.append(bytes(conn.execute("SELECT payload FROM inbox_messages WHERE id = ?",
                                    (inbox_row,)).fetchone()[0]))
    blobs.append(before_rekey)
    blobs.append(bytes(conn.execute("SELECT wrapped FROM data_keys WHERE key_id = ?",
                                    (owner_key,)).fetchone()[0]))
    chunks = [blob[30:62] for blob in blobs]  # past the header: random-looking bytes
    return [*chunks, bytes.fromhex(owner_key), owner_key.encode()]


def test_erase_removes_everything_of_one_patient_and_nothing_else(
        env: Env, conn: sqlite3.Connection, store: ResourceStore) -> None:
    # Capture patient 1's raw message ciphertext while still under the inbox key.
    inbox = {}
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    first_raw = add_inbox_message(conn, store.keys, hl7_message(1))
    before_rekey = bytes(conn.execute("SELECT payload FROM inbox_messages WHERE id = ?",
                                      (first_raw,)).fetchone()[0])
    rekey_inbox_message(conn, store.keys, first_raw, patient_ref(1))
    inbox = _fill(conn, store, range(2, 4))
    for k in range(3):
        store.put(conn, observation_resource(1, k), patient=patient_ref(1))
    store.put(conn, patient_resource(1, active=True), patient=patient_ref(1))
    secrets = _secrets_of(conn, 1, first_raw, before_rekey)
    assert all(chunk in file_bytes(env.db_path) for chunk in secrets[:2])  # test is meaningful

    report = erase_patient(conn, store.keys, SYSTEM, "MRN000001")

    assert report.found and report.scrubbed
    assert (report.resources, report.raw_messages, report.keys) == (5, 1, 1)
    # Reads of that patient return nothing.
    assert store.read(conn, "Patient", "pat-1") is None
    assert store.history(conn, "Observation", "obs-1-0") == []
    assert store.search(conn, patient=patient_ref(1)) == []
    assert store.search(conn, identifier=f"{SYSTEM}|MRN000001") == []
    assert store.search_patients(conn, family="Quxfamily1") == []
    # No stored byte of theirs is left in the database file or the WAL.
    on_disk = file_bytes(env.db_path)
    for chunk in secrets:
        assert chunk not in on_disk
    # Whatever is left opens, and none of it is theirs.
    assert verify_store(conn, store.keys).ok
    plaintexts = [str(v.resource) for n in (2, 3)
                  for v in store.search(conn, patient=patient_ref(n))]
    for row_id in inbox.values():
        key_id, payload = conn.execute("SELECT key_id, payload FROM inbox_messages WHERE id = ?",
                                       (row_id,)).fetchone()
        plaintexts.append(open_(store.keys.get(conn, key_id), payload,
                                AAD("inbox_messages", str(row_id), 1)).decode())
    for text in plaintexts:
        for phi in phi_strings(1):
            assert phi not in text
    # Other patients are untouched.
    for n in (2, 3):
        assert len(store.search(conn, patient=patient_ref(n))) == 4
        got = store.read(conn, "Patient", f"pat-{n}")
        assert got is not None and got.version == 2
    assert conn.execute("SELECT count(*) FROM inbox_messages").fetchone()[0] == 2


def test_the_erasure_event_holds_counts_only(env: Env, conn: sqlite3.Connection,
                                             store: ResourceStore) -> None:
    _fill(conn, store, range(1, 3))
    report = erase_patient(conn, store.keys, SYSTEM, "MRN000002")
    row = conn.execute("SELECT * FROM erasures").fetchall()
    assert row == [(report.erasure_id, report.at, 5, 5, 4, 1, 1)]  # no index, no id
    owner_index = store.keys.patient_index(conn, patient_ref(2))
    assert owner_index not in file_bytes(env.db_path)  # not even the patient's HMAC is kept


def test_erase_by_another_identifier_of_the_patient(conn: sqlite3.Connection,
                                                    store: ResourceStore) -> None:
    _fill(conn, store, range(1, 3))
    report = erase_patient(conn, store.keys, "http://hl7.org/fhir/sid/us-ssn", "999-00-0002")
    assert report.resources == 5
    assert store.read(conn, "Patient", "pat-2") is None
    assert store.read(conn, "Patient", "pat-1") is not None


def test_an_identifier_naming_two_patients_is_refused(conn: sqlite3.Connection,
                                                      store: ResourceStore) -> None:
    shared = {"system": "urn:family-account", "value": "ACC-77"}
    for n in (1, 2):
        resource = patient_resource(n)
        resource["identifier"].append(shared)
        store.put(conn, resource, patient=patient_ref(n))
    with pytest.raises(ErasureError, match="2 patients"):
        erase_patient(conn, store.keys, "urn:family-account", "ACC-77")
    assert store.read(conn, "Patient", "pat-1") is not None


def test_an_unknown_patient_erases_nothing(conn: sqlite3.Connection,
                                           store: ResourceStore) -> None:
    _fill(conn, store, range(1, 2))
    report = erase_patient(conn, store.keys, SYSTEM, "MRN999999")
    assert not report.found
    assert conn.execute("SELECT count(*) FROM erasures").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == 5


def test_new_records_after_an_erasure_get_a_new_key(env: Env, conn: sqlite3.Connection,
                                                    store: ResourceStore) -> None:
    # The daemon's cache still holds the erased key; it must not seal with it again.
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    old_key = conn.execute("SELECT key_id FROM resources").fetchone()[0]
    other = env.connect()
    try:
        erase_patient(other, env.keys(), SYSTEM, "MRN000001")  # e.g. the CLI, another process
    finally:
        other.close()
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    new_key = conn.execute("SELECT key_id FROM resources").fetchone()[0]
    assert new_key != old_key
    assert store.read(conn, "Patient", "pat-1") is not None
    assert store.keys.prune(conn) == 1  # the erased key's material leaves memory


def test_rekey_moves_the_payload_to_the_patient_key(conn: sqlite3.Connection,
                                                    store: ResourceStore) -> None:
    row_id = add_inbox_message(conn, store.keys, hl7_message(1))
    inbox_key = conn.execute("SELECT key_id FROM inbox_messages").fetchone()[0]
    new_key = rekey_inbox_message(conn, store.keys, row_id, patient_ref(1))
    assert new_key != inbox_key
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    assert conn.execute("SELECT key_id FROM resources").fetchone()[0] == new_key
    key_id, payload = conn.execute("SELECT key_id, payload FROM inbox_messages").fetchone()
    aad = AAD("inbox_messages", str(row_id), 1)
    assert open_(store.keys.get(conn, key_id), payload, aad) == hl7_message(1)
    with pytest.raises(IntegrityError):
        open_(store.keys.get(conn, inbox_key), payload, aad)
    assert rekey_inbox_message(conn, store.keys, row_id, patient_ref(1)) == new_key  # idempotent


def test_rekey_without_retention_drops_the_payload(conn: sqlite3.Connection,
                                                   store: ResourceStore) -> None:
    row_id = add_inbox_message(conn, store.keys, hl7_message(1))
    assert rekey_inbox_message(conn, store.keys, row_id, PatientRef(SYSTEM, "MRN000001"),
                               retain=False) == DROPPED_KEY_ID
    key_id, payload, fmt = conn.execute(
        "SELECT key_id, payload, payload_format FROM inbox_messages").fetchone()
    assert (key_id, bytes(payload), fmt) == (DROPPED_KEY_ID, b"", 0)
    assert verify_store(conn, store.keys).ok


def test_rekey_refuses_a_tampered_payload(conn: sqlite3.Connection,
                                          store: ResourceStore) -> None:
    row_id = add_inbox_message(conn, store.keys, hl7_message(1))
    payload = bytearray(conn.execute("SELECT payload FROM inbox_messages").fetchone()[0])
    payload[-1] ^= 1
    conn.execute("UPDATE inbox_messages SET payload = ?", (bytes(payload),))
    with pytest.raises(IntegrityError, match="inbox_messages"):
        rekey_inbox_message(conn, store.keys, row_id, patient_ref(1))
    assert conn.execute("SELECT payload FROM inbox_messages").fetchone()[0] == bytes(payload)
