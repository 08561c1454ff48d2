"""P (E1394 section 8) -> Patient.

P-3 practice-assigned patient id, P-4 laboratory-assigned patient id and P-5 (patient id
no. 3, e.g. a national id) -> identifier, each in a facility-scoped system (ASTM carries no
assigning authority); the first of them present is the primary identifier: it gives the
Patient's id (the HL7 side's scheme, ``facility + system + value``) and the message's
``patient_key``. P-6 (last ^ first ^ middle ^ suffix ^ title) -> name; P-7 -> mother's
maiden name; P-8 -> birthDate; P-9 (M, F, U) -> gender.

A P record with demographics but no id gives a Patient scoped to the message (no
``patient_key``); one with neither gives no Patient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from edge.astm.records import Patient
from edge.normalize.astm.state import ASTMConversion
from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import code_from_map

__all__ = ["PATIENT_ID_AUTHORITIES", "PatientIdentity", "identity", "map_patient"]

# P field -> the local authority name given to context.facility_system.
PATIENT_ID_AUTHORITIES: Final = {
    3: "astm-practice-patient-id",
    4: "astm-laboratory-patient-id",
    5: "astm-patient-id-3",
}
_MAIDEN_NAME: Final = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"


@dataclass(frozen=True, slots=True)
class PatientIdentity:
    """Who a P record is: ``key`` (``system|value``) when identified, else ``position`` of
    a P record with demographics only; None when the P record says nothing (or is absent)."""

    key: str | None
    position: int | None


def _identifiers(conv: ASTMConversion, record: Patient) -> list[dict[str, Any]]:
    out = []
    for n, authority in PATIENT_ID_AUTHORITIES.items():
        value = conv.first(record, n)
        if value:
            out.append({"system": conv.ctx.facility_system(authority), "value": value})
    return out


def _has_demographics(conv: ASTMConversion, record: Patient) -> bool:
    return any(conv.first(record, n) for n in (6, 7, 8, 9))


def identity(conv: ASTMConversion, record: Patient | None) -> PatientIdentity | None:
    if record is None:
        return None
    identifiers = _identifiers(conv, record)
    if identifiers:
        return PatientIdentity(f"{identifiers[0]['system']}|{identifiers[0]['value']}", None)
    if _has_demographics(conv, record):
        return PatientIdentity(None, record.position)
    return None


def map_patient(conv: ASTMConversion, record: Patient | None) -> tuple[str | None, str | None]:
    """Add the Patient of a P record; returns its reference and the patient key (either may
    be None, see the module docstring)."""
    if record is None:
        return None, None
    identifiers = _identifiers(conv, record)
    if not identifiers and not _has_demographics(conv, record):
        return None, None
    patient: dict[str, Any] = {"resourceType": "Patient"}
    key = None
    if identifiers:
        primary = identifiers[0]
        key = f"{primary['system']}|{primary['value']}"
        patient["id"] = conv.make_id("Patient", primary["system"], primary["value"])
        patient["identifier"] = identifiers
    else:
        patient["id"] = conv.message_scoped_id("Patient", str(record.position))
    maiden = conv.first(record, 7)
    if maiden:
        patient["extension"] = [{"url": _MAIDEN_NAME, "valueString": maiden}]
    name = _human_name(record.name)
    if name:
        patient["name"] = [name]
    sex = conv.first(record, 9)
    if sex:
        gender = code_from_map(sex.upper(), "AdministrativeSex")
        if gender is None:
            conv.warnings.append(f"{conv.loc(record, 9)}: sex is not M, F or U")
        else:
            patient["gender"] = gender
    birth = conv.first(record, 8)
    if birth:
        birth_date = dtm.to_date(birth, conv.loc(record, 8), warn=conv.warnings)
        if birth_date is not None:
            patient["birthDate"] = birth_date
    return conv.add(patient), key


def _human_name(parts: tuple[str, ...]) -> dict[str, Any] | None:
    # 8.1.6: last ^ first ^ middle ^ suffix ^ title.
    def part(i: int) -> str:
        return parts[i].strip() if i < len(parts) else ""

    family, given, middle, suffix, title = (part(i) for i in range(5))
    name: dict[str, Any] = {}
    if family:
        name["family"] = family
    given_names = [g for g in (given, middle) if g]
    if given_names:
        name["given"] = given_names
    if title:
        name["prefix"] = [title]
    if suffix:
        name["suffix"] = [suffix]
    return name or None
