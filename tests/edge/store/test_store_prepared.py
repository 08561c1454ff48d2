"""Records prepared off the writer (edge.store.prepared) and stored in batches (put_many):
the spliced canonical JSON is byte for byte RFC 8785 of the final record, and a batch writes
what one put per resource would have written, with its leaves in the log."""

from __future__ import annotations

import pickle
import sqlite3
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.store import prepared
from edge.store.errors import ResourceInputError
from edge.store.prepared import prepare_record
from edge.store.resources import ResourceStore
from ledger_client.log import MerkleLog
from tests.edge.store.store_support import observation_resource, patient_ref, patient_resource

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300)
@given(extra=st.dictionaries(st.text(max_size=8), _values, max_size=5),
       meta=st.dictionaries(st.sampled_from(["source", "profile", "tag", "security", "z",
                                             "versionId", "lastUpdated"]), _values, max_size=3),
       version=st.integers(1, 10**6))
def test_spliced_json_is_rfc8785_of_the_final_record(extra: dict[str, Any],
                                                     meta: dict[str, Any],
                                                     version: int) -> None:
    resource = {**extra, "resourceType": "Observation", "id": "obs-1", "meta": meta}
    try:
        record = prepare_record(resource)
    except ResourceInputError:
        return  # no canonical form (a lone surrogate): refused before anything is written
    now = "2024-05-01T12:00:00.123Z"
    final = {**resource, "meta": {**meta, "versionId": str(version), "lastUpdated": now}}
    assert record.canonical(version, now) == rfc8785.dumps(final)


def test_a_prepared_record_crosses_processes_and_shows_no_content() -> None:
    record = prepare_record(patient_resource(7))
    again = pickle.loads(pickle.dumps(record))
    assert again.canonical(3, "2024-01-01T00:00:00.000Z") == record.canonical(
        3, "2024-01-01T00:00:00.000Z")
    assert repr(record) == "PreparedRecord(Patient/pat-7)"
    assert "Quxfamily" not in repr(record)


def test_a_resource_quoting_the_placeholder_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepared.secrets, "token_hex", lambda n: "0" * (2 * n))
    sneaky = {**observation_resource(1, 1), "note": [{"text": "hie" + "0" * 32 + "v"}]}
    with pytest.raises(ResourceInputError, match="placeholder"):
        prepare_record(sneaky)


@pytest.mark.parametrize("resource, path", [
    ({"id": "x"}, "Resource.resourceType"),
    ({"resourceType": "Patient", "id": "bad id!"}, "Patient.id"),
    ({"resourceType": "Patient", "id": "p", "meta": []}, "Patient.meta"),
    ({"resourceType": "Patient", "id": "p", "gender": "M"}, "Patient.gender"),
    ({"resourceType": "Patient", "id": "p", "identifier": ["x"]}, "Patient.identifier[0]"),
])
def test_what_the_store_cannot_take_is_refused_naming_the_element(resource: dict[str, Any],
                                                                  path: str) -> None:
    with pytest.raises(ResourceInputError) as err:
        prepare_record(resource)
    assert err.value.path == path


def test_a_batch_appends_its_leaves_and_keeps_indexes_for_the_newest_version(
        store: ResourceStore, conn: sqlite3.Connection) -> None:
    log = MerkleLog(conn)
    first_patient = patient_resource(1)
    renamed = patient_resource(1, name=[{"family": "Otherfamily", "given": ["Zorbgiven1"]}])
    batch = [prepare_record(r) for r in (first_patient, observation_resource(1, 1), renamed)]
    conn.execute("BEGIN IMMEDIATE")
    stored = store.put_many(conn, batch, patient=patient_ref(1), log=log)
    conn.execute("COMMIT")

    assert [(v.type, v.id, v.version) for v in stored] == [
        ("Patient", "pat-1", 1), ("Observation", "obs-1-1", 1), ("Patient", "pat-1", 2)]
    assert [v.ledger_index for v in stored] == [0, 1, 2]
    assert [log.leaf(i) for i in range(3)] == [v.leaf_hash for v in stored]
    for v in stored:
        read = store.vread(conn, v.type, v.id, v.version)
        assert read is not None and read.ledger_index == v.ledger_index
    # The index rows describe version 2 only: the old family name finds nothing.
    assert [p.version for p in store.search_patients(conn, family="Otherfamily")] == [2]
    assert store.search_patients(conn, family="Quxfamily1") == []
    assert conn.execute("SELECT count(*) FROM patient_demographics d JOIN resources r "
                        "ON r.row = d.resource WHERE r.version = 1").fetchone() == (0,)


def test_a_batch_without_a_log_leaves_the_rows_for_the_ledger_stage(
        store: ResourceStore, conn: sqlite3.Connection) -> None:
    stored = store.put_many(conn, [prepare_record(observation_resource(2, k)) for k in range(3)],
                            patient=patient_ref(2))
    assert [v.ledger_index for v in stored] == [None, None, None]
    assert [row for row, _ in store.unanchored(conn)] == [v.row for v in stored]
