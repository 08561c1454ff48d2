"""The dataclasses that cross between our processes on every request pickle by calling the
class with their fields (edge.pickled): every field survives, in order."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from edge.peer.audit_batch import AuditWrite
from edge.pickled import reduce_by_fields
from edge.store.keys import PatientRef
from edge.store.prepared import PreparedRecord, prepare_record


def _write() -> AuditWrite:
    event = prepare_record({"resourceType": "AuditEvent", "id": "ev-1", "action": "E"})
    return AuditWrite("a-jwt-id", "there", 1_700_000_060_000, 1_700_000_000_000, [event],
                      PatientRef("urn:oid:1.2.3", "MRN-1"),
                      {"type": "access-notification", "recipient": "there"})


@pytest.mark.parametrize("cls", [AuditWrite, PatientRef, PreparedRecord])
def test_the_slots_are_the_fields_in_order(cls: type) -> None:
    # reduce_by_fields passes the slots positionally to the class: a field added out of
    # step with its slots (or with init=False) would land in the wrong argument.
    assert cls.__reduce__ is reduce_by_fields
    assert list(cls.__slots__) == [f.name for f in dataclasses.fields(cls) if f.init]


def test_an_audit_write_round_trips_whole() -> None:
    write = _write()
    again = pickle.loads(pickle.dumps(write, protocol=pickle.HIGHEST_PROTOCOL))
    assert again == write
    assert again.jti == "a-jwt-id" and again.notice == write.notice
    assert again.events[0].canonical(2, "2026-01-01T00:00:00.000Z") == write.events[
        0].canonical(2, "2026-01-01T00:00:00.000Z")
    assert isinstance(again.patient, PatientRef) and again.patient.value == "MRN-1"


def test_a_patient_ref_pickles_without_a_readable_repr() -> None:
    ref = PatientRef("urn:oid:1.2.3", "MRN-1")
    again = pickle.loads(pickle.dumps(ref))
    assert again == ref and repr(again) == "PatientRef(<redacted>)"
