"""AuditEvents (FHIR R4) for every peer access, every consent decision and every local
administrative access to records, after the IHE BALP patterns (Basic Audit Log Patterns):
PatientQuery (``rest``/``search-type``, action E), PatientRead (``rest``/``read``, R),
operations such as ``$everything`` (``rest``/``operation``, E), PrivacyDisclosure
(``iso-21089-lifecycle#disclose``), and the consent decision itself.

Each event is stored like any record: encrypted under the patient's data key (the SYSTEM key
when there is no patient) through :meth:`ResourceStore.put`, and its leaf appended to the
Merkle log in the same transaction (:func:`edge.store.ledgered.put_ledgered`), so the
accounting of disclosures is anchored with everything else and cannot be edited unseen.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from edge.peer.codes import ACT_REASON, FACILITY_SYSTEM, PRACTITIONER_SYSTEM
from edge.store.keys import PatientRef
from edge.store.ledgered import put_ledgered
from edge.store.prepared import PreparedRecord, prepare_record
from edge.store.resources import ResourceStore, ResourceVersion, StoredVersion, fhir_instant
from edge.uuid7 import uuid7

Pattern = Literal["patient-query", "patient-read", "operation", "disclosure",
                  "consent-decision", "consent-change", "admin-read", "refused"]
Outcome = Literal["0", "4", "8"]  # AuditEvent.outcome: success, minor failure, serious failure

_EVENT_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_LIFECYCLE: Final = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
_INTERACTION: Final = "http://hl7.org/fhir/restful-interaction"
_DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_OWN: Final = "urn:hie-edge:audit"  # our codes where BALP has none (the consent decision)
FLAG_SYSTEM: Final = "urn:hie-edge:audit-flag"
BALP: Final = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."

# pattern -> (type system, type code, subtype code or None, action, BALP profile or None)
_PATTERNS: Final[dict[str, tuple[str, str, str | None, str, str | None]]] = {
    "patient-query": (_EVENT_TYPE, "rest", "search-type", "E", "PatientQuery"),
    "patient-read": (_EVENT_TYPE, "rest", "read", "R", "PatientRead"),
    "operation": (_EVENT_TYPE, "rest", "operation", "E", "PatientQuery"),
    "disclosure": (_LIFECYCLE, "disclose", None, "R", "PrivacyDisclosure.Source"),
    "consent-decision": (_OWN, "consent-decision", None, "E", None),
    "consent-change": (_EVENT_TYPE, "rest", "update", "U", "Update"),
    "admin-read": (_EVENT_TYPE, "rest", "search-type", "E", "PatientQuery"),
    "refused": (_EVENT_TYPE, "rest", None, "E", None),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: a peer facility's practitioner, or a local operator (``kind`` local, the
    OS user as ``user``, our facility as ``facility``)."""

    kind: Literal["peer", "local"]
    facility: str
    user: str
    role: str = ""
    purpose: str = ""
    reason: str = field(default="", repr=False)
    address: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """What happened, before it becomes an AuditEvent. ``query`` (the request path and
    query string) can hold identifiers: it only ever goes into the encrypted event."""

    pattern: Pattern
    outcome: Outcome
    actor: Actor
    recorded: datetime
    patient_id: str | None = None
    query: str | None = field(default=None, repr=False)
    data_classes: tuple[str, ...] = ()
    released: int = 0
    decision: str | None = None  # decision reason code (edge.peer.decision)
    basis: str | None = None
    consent_ids: tuple[str, ...] = ()
    break_glass: bool = False


def _facility(facility: str) -> dict[str, Any]:
    return {"identifier": {"system": FACILITY_SYSTEM, "value": facility}}


def build_audit_event(record: AuditRecord, *, facility: str,
                      event_id: str | None = None) -> dict[str, Any]:
    """The AuditEvent resource for ``record`` at our ``facility``."""
    type_system, type_code, subtype, action, profile = _PATTERNS[record.pattern]
    actor = record.actor
    user_id = actor.user if actor.kind == "local" else f"{actor.facility}/{actor.user}"
    user: dict[str, Any] = {
        "type": {"coding": [{"system": _PARTICIPATION, "code": "IRCP"}]},
        "who": {"identifier": {"system": PRACTITIONER_SYSTEM, "value": user_id}},
        "requestor": True,
    }
    if actor.role:
        user["role"] = [{"coding": [{"system": "urn:hie-edge:role", "code": actor.role}]}]
    purpose = ([{"coding": [{"system": ACT_REASON, "code": actor.purpose}]}]
               if actor.purpose else [])
    if purpose:
        user["purposeOfUse"] = purpose
    agents: list[dict[str, Any]] = [user]
    if actor.kind == "peer":
        client: dict[str, Any] = {
            "type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": _facility(actor.facility), "requestor": False}
        if actor.address:
            client["network"] = {"address": actor.address, "type": "2"}
        agents.append(client)
        agents.append({
            "type": {"coding": [{"system": _DCM, "code": "110152",
                                 "display": "Destination Role ID"}]},
            "who": _facility(facility), "requestor": False})
    entities: list[dict[str, Any]] = []
    if record.patient_id:
        entities.append({"what": {"reference": f"Patient/{record.patient_id}"},
                         "type": {"system": _ENTITY_TYPE, "code": "1"},
                         "role": {"system": _OBJECT_ROLE, "code": "1"}})
    if record.query:
        entities.append({"type": {"system": _ENTITY_TYPE, "code": "2"},
                         "role": {"system": _OBJECT_ROLE, "code": "24"},
                         "query": base64.b64encode(record.query.encode()).decode("ascii")})
    detail = [{"type": "released", "valueString": str(record.released)}]
    if record.data_classes:
        detail.append({"type": "data-classes", "valueString": ",".join(record.data_classes)})
    if record.decision:
        detail.append({"type": "decision", "valueString": record.decision})
    if record.basis:
        detail.append({"type": "basis", "valueString": record.basis})
    if actor.reason:
        detail.append({"type": "reason", "valueString": actor.reason})
    entities.append({"type": {"system": _ENTITY_TYPE, "code": "2"},
                     "role": {"system": _OBJECT_ROLE, "code": "4"}, "detail": detail})
    entities += [{"what": {"reference": f"Consent/{cid}"},
                  "type": {"system": _ENTITY_TYPE, "code": "2"},
                  "role": {"system": _OBJECT_ROLE, "code": "13"}} for cid in record.consent_ids]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id or str(uuid7()),
        "type": {"system": type_system, "code": type_code},
        "action": action,
        "recorded": fhir_instant(record.recorded),
        "outcome": record.outcome,
        "agent": agents,
        "source": {"observer": _facility(facility),
                   "type": [{"system": _SOURCE_TYPE, "code": "4"}]},
        "entity": entities,
    }
    meta: dict[str, Any] = {}
    if profile:
        meta["profile"] = [BALP + profile]
    tags = [{"system": FLAG_SYSTEM, "code": record.pattern}]
    if record.break_glass:
        # The emergency override is flagged on the event itself, so the accounting of
        # disclosures can list it first (issue 8: "flagged, audited as an override").
        tags.append({"system": FLAG_SYSTEM, "code": "break-glass"})
    meta["tag"] = tags
    event["meta"] = meta
    if subtype:
        event["subtype"] = [{"system": _INTERACTION, "code": subtype}]
    if purpose:
        event["purposeOfEvent"] = purpose
    return event


def write_audit(conn: sqlite3.Connection, store: ResourceStore, events: list[dict[str, Any]],
                patient: PatientRef | None) -> tuple[list[StoredVersion], int]:
    """Store the events (encrypted, ledgered) in the caller's transaction."""
    return put_ledgered(conn, store, events, patient=patient)


def prepare_audit(events: list[dict[str, Any]]) -> list[PreparedRecord]:
    """The events made ready to store (:func:`edge.store.prepared.prepare_record`), away from
    the writer: pass them to :func:`edge.store.ledgered.put_prepared` inside the
    group-commit op. :func:`build_audit_event` writes literal ASCII keys, strings and
    booleans only (counts as strings), so their JSON layout is known
    (tests/edge/peer/test_audit.py checks every pattern against the walk and rfc8785)."""
    return [prepare_record(event, layout_known=True) for event in events]


def trail_position(version: ResourceVersion) -> tuple[str, int]:
    """Where an AuditEvent stands in the accounting: ``(recorded, row)``. Events of one
    request share ``recorded``; the row order is the order they were written."""
    return str(version.resource.get("recorded", "")), version.row


def audit_versions(conn: sqlite3.Connection, store: ResourceStore,
                   patient: PatientRef) -> list[ResourceVersion]:
    """:func:`audit_trail` with the stored versions (their rows: a position to page from,
    :func:`trail_position`)."""
    versions = store.search(conn, patient=patient, type="AuditEvent")
    versions.sort(key=trail_position)
    return versions


def audit_trail(conn: sqlite3.Connection, store: ResourceStore,
                patient: PatientRef) -> list[dict[str, Any]]:
    """Every AuditEvent about ``patient``, oldest first (the accounting of disclosures)."""
    return [v.resource for v in audit_versions(conn, store, patient)]


def summarize(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an AuditEvent a patient's accounting shows."""
    tags = {t.get("code") for t in event.get("meta", {}).get("tag", [])
            if t.get("system") == FLAG_SYSTEM}
    user: Mapping[str, Any] = next((a for a in event.get("agent", []) if a.get("requestor")),
                                   {})
    facility = next((a["who"]["identifier"]["value"] for a in event.get("agent", [])
                     if a.get("type", {}).get("coding", [{}])[0].get("code") == "110153"),
                    None)
    details: dict[str, str] = {}
    for entity in event.get("entity", []):
        for item in entity.get("detail", []):
            details[str(item.get("type"))] = str(item.get("valueString", ""))
    purposes = [c["code"] for p in event.get("purposeOfEvent", []) for c in p.get("coding", [])]
    pattern = next((t for t in sorted(tags - {"break-glass"})), "")
    return {
        "id": event.get("id"),
        "recorded": event.get("recorded"),
        "event": pattern,
        "outcome": "success" if event.get("outcome") == "0" else "refused",
        "facility": facility,
        "user": user.get("who", {}).get("identifier", {}).get("value"),
        "role": next((c.get("code") for r in user.get("role", []) for c in r.get("coding", [])),
                     None),
        "purpose": purposes[0] if purposes else None,
        "break_glass": "break-glass" in tags,
        "data_classes": [c for c in details.get("data-classes", "").split(",") if c],
        "released": int(details.get("released", "0") or 0),
        "decision": details.get("decision"),
    }
