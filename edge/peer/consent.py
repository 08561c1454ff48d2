"""FHIR Consent resources: created, revoked and listed here for ``hie-edge consent`` and for
the local FHIR API (:func:`store_consent` takes a Consent resource as a client POSTs it).

A consent is one FHIR R4 Consent (scope ``patient-privacy``, category LOINC 59284-0) with one
top-level ``provision``: ``type`` permit or deny; ``period``; ``actor`` (role IRCP, each a
facility ``urn:hie-edge:facility|<id>`` or a practitioner
``urn:hie-edge:practitioner|<facility>/<id>``; none = every member); ``purpose`` (v3
ActReason codes; none = every purpose); ``class`` (resource types); ``code`` (categories);
``securityLabel`` (the sensitive labels this permit explicitly covers). Revoking stores a new
version with ``status`` ``inactive``: the history keeps what was allowed when.

Consents are stored like records (encrypted under the patient's key, ledgered), each change
with an AuditEvent in the same transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from edge.peer.audit import Actor, AuditRecord, build_audit_event
from edge.peer.codes import (
    ACT_CODE,
    ACT_REASON,
    CONFIDENTIALITY,
    FACILITY_SYSTEM,
    PRACTITIONER_SYSTEM,
    PURPOSES,
    SENSITIVE_LABELS,
)
from edge.peer.decision import Provision
from edge.peer.errors import ConsentInputError
from edge.peer.patients import by_ref
from edge.store.keys import PatientRef
from edge.store.ledgered import put_ledgered
from edge.store.resources import ResourceStore, fhir_instant
from edge.uuid7 import uuid7

_SCOPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                      "code": "patient-privacy"}]}
_CATEGORY = [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}]
_RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
_RECIPIENT = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                          "code": "IRCP"}]}


@dataclass(frozen=True, slots=True)
class ConsentSpec:
    """What ``consent grant`` asks for (see the module docstring for the meaning)."""

    facilities: tuple[str, ...] = ()
    practitioners: tuple[str, ...] = ()  # "facility/practitioner"
    purposes: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    start: date | None = None
    end: date | None = None
    deny: bool = False

    def check(self) -> None:
        unknown = sorted(set(self.purposes) - PURPOSES)
        if unknown:
            raise ConsentInputError(f"Consent.provision.purpose: unknown code(s) {unknown}")
        labels = sorted(set(self.labels) - SENSITIVE_LABELS)
        if labels:
            raise ConsentInputError(f"Consent.provision.securityLabel: unknown {labels}")
        if any("/" not in p for p in self.practitioners):
            raise ConsentInputError("Consent.provision.actor: practitioner must be "
                                    "FACILITY/PRACTITIONER")
        if self.start and self.end and self.end < self.start:
            raise ConsentInputError("Consent.provision.period: end before start")


def _label_coding(label: str) -> dict[str, str]:
    return {"system": CONFIDENTIALITY if label in ("R", "V") else ACT_CODE, "code": label}


def build_consent(spec: ConsentSpec, *, patient_id: str, now: datetime,
                  consent_id: str | None = None) -> dict[str, Any]:
    """A new active Consent resource for ``spec``."""
    spec.check()
    provision: dict[str, Any] = {"type": "deny" if spec.deny else "permit"}
    if spec.start or spec.end:
        provision["period"] = {k: v.isoformat() for k, v in
                               (("start", spec.start), ("end", spec.end)) if v}
    actors = [(FACILITY_SYSTEM, f) for f in spec.facilities]
    actors += [(PRACTITIONER_SYSTEM, p) for p in spec.practitioners]
    if actors:
        provision["actor"] = [{"role": _RECIPIENT,
                               "reference": {"identifier": {"system": s, "value": v}}}
                              for s, v in actors]
    if spec.purposes:
        provision["purpose"] = [{"system": ACT_REASON, "code": p} for p in spec.purposes]
    if spec.classes:
        provision["class"] = [{"system": _RESOURCE_TYPES, "code": c} for c in spec.classes]
    if spec.categories:
        provision["code"] = [{"coding": [{"code": c}]} for c in spec.categories]
    if spec.labels:
        provision["securityLabel"] = [_label_coding(label) for label in spec.labels]
    return {
        "resourceType": "Consent",
        "id": consent_id or str(uuid7()),
        "status": "active",
        "scope": _SCOPE,
        "category": _CATEGORY,
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": fhir_instant(now),
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTOUT" if spec.deny
                                   else "OPTIN"}]},
        "provision": provision,
    }


def _date(value: Any, path: str) -> date | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConsentInputError(f"{path}: not a date")
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise ConsentInputError(f"{path}: not a date") from None


def _codes(items: Any, path: str) -> frozenset[str]:
    if items is None:
        return frozenset()
    if not isinstance(items, list):
        raise ConsentInputError(f"{path}: not a list")
    codes = set()
    for i, item in enumerate(items):
        codings = item.get("coding", [item]) if isinstance(item, Mapping) else None
        if not isinstance(codings, list):
            raise ConsentInputError(f"{path}[{i}]: not a Coding or CodeableConcept")
        for coding in codings:
            code = coding.get("code") if isinstance(coding, Mapping) else None
            if not isinstance(code, str) or not code:
                raise ConsentInputError(f"{path}[{i}]: code missing")
            codes.add(code)
    return frozenset(codes)


def provisions_of(consent: Mapping[str, Any]) -> list[Provision]:
    """The rules of an *active* Consent (none for any other status). Raises
    :class:`ConsentInputError` naming the element for a consent it cannot read."""
    if consent.get("resourceType") != "Consent":
        raise ConsentInputError("Consent.resourceType: not a Consent")
    if consent.get("status") != "active":
        return []
    provision = consent.get("provision")
    if not isinstance(provision, Mapping):
        raise ConsentInputError("Consent.provision: missing")
    kind = provision.get("type")
    if kind not in ("permit", "deny"):
        raise ConsentInputError("Consent.provision.type: must be permit or deny")
    period = provision.get("period") or {}
    if not isinstance(period, Mapping):
        raise ConsentInputError("Consent.provision.period: not a Period")
    facilities: set[str] = set()
    practitioners: set[str] = set()
    for i, actor in enumerate(provision.get("actor") or []):
        ident = (actor.get("reference") or {}).get("identifier") if isinstance(
            actor, Mapping) else None
        if not isinstance(ident, Mapping) or not isinstance(ident.get("value"), str):
            raise ConsentInputError(f"Consent.provision.actor[{i}].reference.identifier: "
                                    "missing")
        if ident.get("system") == FACILITY_SYSTEM:
            facilities.add(ident["value"])
        elif ident.get("system") == PRACTITIONER_SYSTEM:
            practitioners.add(ident["value"])
        else:
            raise ConsentInputError(f"Consent.provision.actor[{i}].reference.identifier."
                                    "system: not a facility or practitioner system")
    purposes = _codes(provision.get("purpose"), "Consent.provision.purpose")
    if purposes - PURPOSES:
        raise ConsentInputError("Consent.provision.purpose: unknown purpose of use")
    return [Provision(
        consent_id=str(consent.get("id", "")), permit=kind == "permit",
        start=_date(period.get("start"), "Consent.provision.period.start"),
        end=_date(period.get("end"), "Consent.provision.period.end"),
        facilities=frozenset(facilities), practitioners=frozenset(practitioners),
        purposes=purposes, classes=_codes(provision.get("class"), "Consent.provision.class"),
        codes=_codes(provision.get("code"), "Consent.provision.code"),
        labels=_codes(provision.get("securityLabel"), "Consent.provision.securityLabel")
        & SENSITIVE_LABELS)]


def store_consent(conn: sqlite3.Connection, store: ResourceStore, consent: Mapping[str, Any],
                  *, patient: PatientRef, actor: Actor, facility: str,
                  now: datetime) -> dict[str, Any]:
    """Store a Consent (new, or a new version) for ``patient`` with its AuditEvent, in one
    transaction; returns the stored resource (with ``meta``). For the local FHIR API: pass
    the resource a client sent; it is checked first (:func:`provisions_of`)."""
    provisions_of(consent)
    reference = (consent.get("patient") or {}).get("reference")
    patient_row = by_ref(conn, store, patient)
    if patient_row is None:
        raise ConsentInputError("Consent.patient: no record of that patient here")
    if reference != f"Patient/{patient_row.id}":
        raise ConsentInputError("Consent.patient: does not name that patient")
    event = build_audit_event(AuditRecord(
        "consent-change", "0", actor, now, patient_id=patient_row.id,
        consent_ids=(str(consent.get("id")),), decision=str(consent.get("status"))),
        facility=facility)
    stored, _ = put_ledgered(conn, store, [consent, event], patient=patient)
    return {**consent, "meta": {**(consent.get("meta") or {}),
                                "versionId": str(stored[0].version),
                                "lastUpdated": stored[0].last_updated}}


def grant(conn: sqlite3.Connection, store: ResourceStore, patient: PatientRef,
          spec: ConsentSpec, *, actor: Actor, facility: str, now: datetime) -> dict[str, Any]:
    """Create an active Consent for ``patient`` (``consent grant``)."""
    patient_row = by_ref(conn, store, patient)
    if patient_row is None:
        raise ConsentInputError("Consent.patient: no record of that patient here")
    consent = build_consent(spec, patient_id=patient_row.id, now=now)
    return store_consent(conn, store, consent, patient=patient, actor=actor,
                         facility=facility, now=now)


def revoke(conn: sqlite3.Connection, store: ResourceStore, patient: PatientRef,
           consent_id: str, *, actor: Actor, facility: str, now: datetime) -> dict[str, Any]:
    """Mark the patient's consent ``consent_id`` inactive (a new version)."""
    current = next((v.resource for v in list_versions(conn, store, patient)
                    if v.id == consent_id), None)
    if current is None:
        raise ConsentInputError("Consent.id: no consent with that id for that patient")
    if current.get("status") != "active":
        raise ConsentInputError("Consent.status: already inactive")
    revoked = {k: v for k, v in current.items() if k != "meta"}
    revoked["status"] = "inactive"
    return store_consent(conn, store, revoked, patient=patient, actor=actor, facility=facility,
                         now=now)


def list_versions(conn: sqlite3.Connection, store: ResourceStore,
                  patient: PatientRef) -> Sequence[Any]:
    return store.search(conn, patient=patient, type="Consent")


def list_consents(conn: sqlite3.Connection, store: ResourceStore,
                  patient: PatientRef) -> list[dict[str, Any]]:
    """The patient's consents (current versions, active or not), by id."""
    return [v.resource for v in list_versions(conn, store, patient)]


def active_provisions(conn: sqlite3.Connection, store: ResourceStore,
                      patient: PatientRef) -> list[Provision]:
    """Every rule of the patient's active consents, read now (decision at request time)."""
    return [p for consent in list_consents(conn, store, patient) for p in provisions_of(consent)]
