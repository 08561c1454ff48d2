"""Resource versions: put, read, vread, history, search, and what a stored row holds."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import pytest

from edge.crypto.errors import IndexInputError
from edge.store.errors import ResourceInputError
from edge.store.keys import PatientRef
from edge.store.prepared import prepare_record
from edge.store.resources import ResourceStore
from edge.store.schema import CHANGE_EPOCH, DEMOGRAPHICS, IDENTIFIERS
from ledger_client.leaf import record_leaf
from tests.edge.store.store_support import (
    SYSTEM,
    Env,
    observation_resource,
    patient_ref,
    patient_resource,
)


def test_put_then_read_returns_the_record_with_meta_and_a_matching_leaf(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    resource = patient_resource(1)
    stored = store.put(conn, resource, patient=patient_ref(1))
    assert (stored.type, stored.id, stored.version) == ("Patient", "pat-1", 1)
    assert len(stored.salt) == 32
    got = store.read(conn, "Patient", "pat-1")
    assert got is not None
    assert got.resource["meta"]["versionId"] == "1"
    assert got.resource["name"] == resource["name"]
    assert got.salt == stored.salt and got.leaf_hash == stored.leaf_hash
    # The leaf is the ledger's: SHA-256(0x00 || salt || RFC 8785 JSON) of what read returns.
    assert record_leaf(got.resource, got.salt) == stored.leaf_hash
    assert "meta" not in resource  # the caller's dict is not modified


def test_versions_history_and_vread(conn: sqlite3.Connection, store: ResourceStore) -> None:
    ref = patient_ref(2)
    for active in (True, False, True):
        store.put(conn, patient_resource(2, active=active), patient=ref)
    history = store.history(conn, "Patient", "pat-2")
    assert [v.version for v in history] == [3, 2, 1]
    assert [v.resource["active"] for v in history] == [True, False, True]
    assert len({v.salt for v in history}) == 3  # a fresh salt per version
    v2 = store.vread(conn, "Patient", "pat-2", 2)
    assert v2 is not None and v2.resource["active"] is False
    assert store.vread(conn, "Patient", "pat-2", 4) is None
    assert store.read(conn, "Patient", "nope") is None
    assert store.history(conn, "Patient", "nope") == []


def test_search_by_identifier_and_patient_returns_current_versions(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    for n in (1, 2):
        store.put(conn, patient_resource(n), patient=patient_ref(n))
        for k in range(3):
            store.put(conn, observation_resource(n, k), patient=patient_ref(n))
    store.put(conn, patient_resource(1, active=False), patient=patient_ref(1))

    found = store.search(conn, identifier=f"{SYSTEM}|MRN000001")
    assert [(v.type, v.id, v.version) for v in found] == [("Patient", "pat-1", 2)]
    assert store.search(conn, identifier="http://hl7.org/fhir/sid/us-ssn|999-00-0002")[0].id \
        == "pat-2"
    assert [v.id for v in store.search(conn, identifier="urn:accession|ACC2-1")] == ["obs-2-1"]
    assert store.search(conn, identifier=f"{SYSTEM}|mrn000001") == []  # identifiers keep case

    everything = store.search(conn, patient=patient_ref(1))
    assert [(v.type, v.id) for v in everything] == [
        ("Observation", "obs-1-0"), ("Observation", "obs-1-1"), ("Observation", "obs-1-2"),
        ("Patient", "pat-1")]
    assert all(v.version == 1 or v.type == "Patient" for v in everything)
    only_obs = store.search(conn, patient=patient_ref(1), type="Observation")
    assert len(only_obs) == 3
    both = store.search(conn, patient=patient_ref(2), identifier="urn:accession|ACC2-0")
    assert [v.id for v in both] == ["obs-2-0"]
    assert store.search(conn, patient=patient_ref(1), identifier="urn:accession|ACC2-0") == []


def test_only_the_current_version_has_index_rows_however_long_the_history(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    for n in range(4):
        store.put(conn, patient_resource(1, identifier=[{"system": SYSTEM, "value": f"V{n}"}]),
                  patient=patient_ref(1))
    # Two versions in one write: the second is current.
    store.put_many(conn, [prepare_record(patient_resource(
        1, identifier=[{"system": SYSTEM, "value": f"V{n}"}])) for n in (4, 5)],
        patient=patient_ref(1))
    [current] = store.search(conn, identifier=f"{SYSTEM}|V5")
    assert current.version == 6
    assert all(store.search(conn, identifier=f"{SYSTEM}|V{n}") == [] for n in range(5))
    rows = {table: {row for (row,) in conn.execute(
        f"SELECT DISTINCT resource FROM {table}")}
        for table in (IDENTIFIERS, DEMOGRAPHICS)}
    assert rows == {IDENTIFIERS: {current.row}, DEMOGRAPHICS: {current.row}}
    assert store.search_patients(conn, family="Quxfamily1")[0].version == 6


def test_the_change_epoch_rises_for_every_change_but_a_new_row_of_the_same_patient(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    def epoch() -> int:
        return int(conn.execute(f"SELECT epoch FROM {CHANGE_EPOCH}").fetchone()[0])

    obs = observation_resource(1, 1)
    first = store.put(conn, obs, patient=patient_ref(1))
    store.put(conn, obs, patient=patient_ref(1))  # version 2, same patient
    store.put(conn, observation_resource(1, 2), patient=None)
    assert epoch() == 0
    store.put(conn, obs, patient=patient_ref(2))  # version 3 moves to another patient
    assert epoch() == 1
    with conn:
        conn.execute("UPDATE resources SET ledger_index = 7 WHERE row = ?", (first.row,))
    assert epoch() == 2
    with conn:
        conn.execute("DELETE FROM resources WHERE row = ?", (first.row,))
    assert epoch() == 3


def test_search_patients_by_demographics_uses_normalized_matching(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    resource = patient_resource(3)
    resource["name"] = [{"family": "Müller-Lüdenscheidt", "given": ["Anna", "Maria"]}]
    store.put(conn, resource, patient=patient_ref(3))
    store.put(conn, patient_resource(4), patient=patient_ref(4))
    hits = store.search_patients(conn, family="MULLER LUDENSCHEIDT", given="maria",
                                 birthdate=resource["birthDate"])
    assert [v.id for v in hits] == ["pat-3"]
    assert store.search_patients(conn, family="muller ludenscheidt", gender="male") == []


def test_resource_without_patient_uses_the_system_key(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    org = {"resourceType": "Organization", "id": "org-1", "name": "General Hospital",
           "identifier": [{"system": "urn:npi", "value": "1234567893"}]}
    store.put(conn, org, patient=None)
    (patient, key_id) = conn.execute(
        "SELECT patient, key_id FROM resources WHERE id = 'org-1'").fetchone()
    assert patient is None
    purpose = conn.execute("SELECT purpose FROM data_keys WHERE key_id = ?",
                           (key_id,)).fetchone()[0]
    assert purpose == "system"
    assert store.search(conn, identifier="urn:npi|1234567893")[0].id == "org-1"


def test_one_data_key_per_patient(conn: sqlite3.Connection, store: ResourceStore) -> None:
    for n in (1, 2):
        store.put(conn, patient_resource(n), patient=patient_ref(n))
        store.put(conn, observation_resource(n, 0), patient=patient_ref(n))
    rows = conn.execute("SELECT id, key_id FROM resources ORDER BY id").fetchall()
    by_id = dict(rows)
    assert by_id["pat-1"] == by_id["obs-1-0"] != by_id["pat-2"] == by_id["obs-2-0"]


def test_rows_hold_no_plaintext(conn: sqlite3.Connection, store: ResourceStore) -> None:
    store.put(conn, patient_resource(5), patient=patient_ref(5))
    dump = "\n".join(conn.iterdump())
    for secret in ("MRN000005", "Quxfamily5", "Zorbgiven5", "999-00-0005",
                   patient_resource(5)["birthDate"]):
        assert secret not in dump


@pytest.mark.parametrize(("resource", "path"), [
    ({"id": "x"}, "Resource.resourceType"),
    ({"resourceType": "Patient"}, "Patient.id"),
    ({"resourceType": "Patient", "id": "has space"}, "Patient.id"),
    ({"resourceType": "Patient", "id": "x", "gender": "M"}, "Patient.gender"),
    ({"resourceType": "Patient", "id": "x", "birthDate": "1970-13-01"}, "Patient.birthDate"),
    ({"resourceType": "Patient", "id": "x", "identifier": ["MRN"]}, "Patient.identifier[0]"),
    ({"resourceType": "Observation", "id": "x", "valueQuantity": {"value": float("nan")}},
     "Observation"),
])
def test_bad_resources_are_refused_naming_the_element_and_nothing_is_written(
        conn: sqlite3.Connection, store: ResourceStore, resource: dict[str, object],
        path: str) -> None:
    with pytest.raises(ResourceInputError) as info:
        store.put(conn, resource, patient=patient_ref(9))
    assert info.value.path == path
    assert "MRN" not in str(info.value) and "1970" not in str(info.value)
    assert conn.execute("SELECT count(*) FROM resources").fetchone()[0] == 0
    assert not conn.in_transaction


def test_put_inside_a_caller_transaction_rolls_back_with_it(
        conn: sqlite3.Connection, store: ResourceStore) -> None:
    conn.execute("BEGIN IMMEDIATE")
    store.put(conn, patient_resource(6), patient=patient_ref(6))
    assert conn.in_transaction  # put used a savepoint, the caller decides
    conn.execute("ROLLBACK")
    assert store.read(conn, "Patient", "pat-6") is None


def test_clock_sets_last_updated(env: Env, conn: sqlite3.Connection) -> None:
    moment = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)
    store = ResourceStore(env.keys(), clock=lambda: moment)
    stored = store.put(conn, patient_resource(7), patient=patient_ref(7))
    assert stored.last_updated == "2024-05-01T12:30:15.123Z"
    got = store.read(conn, "Patient", "pat-7")
    assert got is not None and got.resource["meta"]["lastUpdated"] == stored.last_updated


def test_search_needs_a_criterion_and_a_system(conn: sqlite3.Connection,
                                               store: ResourceStore) -> None:
    store.put(conn, patient_resource(1), patient=patient_ref(1))
    with pytest.raises(ResourceInputError):
        store.search(conn)
    with pytest.raises(IndexInputError):
        store.search(conn, identifier="MRN000001")  # a token without SYSTEM|


def test_reads_on_an_empty_store_do_not_write(env: Env, store: ResourceStore) -> None:
    ro = sqlite3.connect(f"{env.db_path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        assert store.search(ro, patient=PatientRef(SYSTEM, "x")) == []
        assert store.read(ro, "Patient", "x") is None
    finally:
        ro.close()


def test_unanchored_rows_and_ledger_index(conn: sqlite3.Connection,
                                          store: ResourceStore) -> None:
    a = store.put(conn, patient_resource(1), patient=patient_ref(1))
    b = store.put(conn, observation_resource(1, 0), patient=patient_ref(1))
    assert store.unanchored(conn) == [(a.row, a.leaf_hash), (b.row, b.leaf_hash)]
    store.set_ledger_index(conn, a.row, 0)
    assert store.unanchored(conn) == [(b.row, b.leaf_hash)]
    got = store.read(conn, "Patient", "pat-1")
    assert got is not None and got.ledger_index == 0


def test_reprs_hold_no_phi(conn: sqlite3.Connection, store: ResourceStore) -> None:
    stored = store.put(conn, patient_resource(8), patient=patient_ref(8))
    got = store.read(conn, "Patient", "pat-8")
    for text in (repr(stored), repr(got), repr(patient_ref(8)), repr(store.keys)):
        assert "MRN000008" not in text and "Quxfamily8" not in text
