"""AL1 -> AllergyIntolerance, DG1 -> Condition, PR1 -> Procedure, PRB -> Condition
(v2-to-FHIR IG AL1[AllergyIntolerance], DG1[Condition], PR1[Procedure]).

Each is keyed by the patient and its coded content (allergen, diagnosis, procedure + time),
so resending the same list in an A08 updates rather than duplicates.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.errors import NormalizeError

__all__ = ["map_al1", "map_dg1", "map_pr1", "map_prb"]

_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_CONDITION_CLINICAL: Final = "http://terminology.hl7.org/CodeSystem/condition-clinical"
_CONDITION_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/condition-category"
_ALLERGY_CATEGORIES: Final = frozenset({"food", "medication", "environment", "biologic"})


def _patient(conv: Conversion, seg: Segment) -> str:
    if conv.patient_ref is None:
        raise NormalizeError(conv.loc(seg), "no patient for this record (PID missing)")
    return conv.patient_ref


def map_al1(conv: Conversion, seg: Segment) -> str:
    ctx = conv.ctx
    patient = _patient(conv, seg)
    allergen = conv.first(seg, 3)
    code = codeable_concept(allergen, ctx)
    allergy: dict[str, Any] = {
        "resourceType": "AllergyIntolerance",
        "id": conv.unique_id(
            "AllergyIntolerance",
            patient,
            allergen.text() if allergen is not None else conv.value(seg, 1),
        ),
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
        "patient": {"reference": patient},
    }
    kind = conv.value(seg, 2)
    if kind:
        category = code_from_map(kind, "AllergenType[AllergyIntoleranceCategory]")
        if category in _ALLERGY_CATEGORIES:
            allergy["category"] = [category]
        allergy_type = code_from_map(kind, "AllergyType")
        if allergy_type in ("allergy", "intolerance"):
            allergy["type"] = allergy_type
    if code:
        allergy["code"] = code
    severity = conv.value(seg, 4)
    if severity:
        criticality = code_from_map(severity, "AllergySeverity[AllergyIntolerance.criticality]")
        if criticality in ("low", "high", "unable-to-assess"):
            allergy["criticality"] = criticality
    reactions = [{"text": v.text()} for v in conv.reps(seg, 5) if v.text().strip()]
    if reactions:
        allergy["reaction"] = [{"manifestation": reactions}]
    onset = dtm.to_datetime(conv.value(seg, 6), ctx.zone, conv.loc(seg, 6), warn=conv.warnings)
    if onset:
        allergy["onsetDateTime"] = onset
    return conv.add(allergy)


def map_dg1(conv: Conversion, seg: Segment) -> str:
    ctx = conv.ctx
    patient = _patient(conv, seg)
    diagnosis = conv.first(seg, 3)
    code = codeable_concept(diagnosis, ctx)
    description = conv.text(seg, 4)
    if description:
        code = {**(code or {}), "text": (code or {}).get("text", description)}
    identifier = ei.identifier(conv.first(seg, 20), ctx, conv.loc(seg, 20))
    key = (
        (identifier["value"],)
        if identifier
        else (diagnosis.text() if diagnosis is not None else description, conv.value(seg, 6))
    )
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": conv.unique_id("Condition", patient, *key),
    }
    if identifier:
        condition["identifier"] = [identifier]
    if conv.value(seg, 21).upper() == "D":
        condition["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error",
                }
            ]
        }
    condition["category"] = [
        {"coding": [{"system": _CONDITION_CATEGORY, "code": "encounter-diagnosis"}]}
    ]
    if code:
        condition["code"] = code
    condition["subject"] = {"reference": patient}
    if conv.encounter_ref:
        condition["encounter"] = {"reference": conv.encounter_ref}
    onset = dtm.to_datetime(conv.value(seg, 5), ctx.zone, conv.loc(seg, 5), warn=conv.warnings)
    if onset:
        condition["onsetDateTime"] = onset
    recorded = dtm.to_datetime(conv.value(seg, 19), ctx.zone, conv.loc(seg, 19), warn=conv.warnings)
    if recorded:
        condition["recordedDate"] = recorded
    asserter = xcn.practitioner(conv, conv.first(seg, 16), conv.loc(seg, 16))
    if asserter:
        condition["asserter"] = asserter
    return conv.add(condition)


def map_pr1(conv: Conversion, seg: Segment) -> str:
    ctx = conv.ctx
    patient = _patient(conv, seg)
    procedure_code = conv.first(seg, 3)
    code = codeable_concept(procedure_code, ctx)
    description = conv.text(seg, 4)
    if description and (code is None or "text" not in code):
        code = {**(code or {}), "text": description}
    when = conv.value(seg, 5)
    procedure: dict[str, Any] = {
        "resourceType": "Procedure",
        "id": conv.unique_id(
            "Procedure", patient, procedure_code.text() if procedure_code is not None else "", when
        ),
        "status": "completed",
    }
    identifier = ei.identifier(conv.first(seg, 19), ctx, conv.loc(seg, 19))
    if identifier:
        procedure["identifier"] = [identifier]
    if code:
        procedure["code"] = code
    procedure["subject"] = {"reference": patient}
    if conv.encounter_ref:
        procedure["encounter"] = {"reference": conv.encounter_ref}
    performed = dtm.to_datetime(when, ctx.zone, conv.loc(seg, 5), warn=conv.warnings)
    if performed:
        procedure["performedDateTime"] = performed
    performers = []
    for n, function in ((8, "88189002"), (11, "304292004"), (12, None)):
        for v in conv.reps(seg, n):
            actor = xcn.practitioner(conv, v, conv.loc(seg, n))
            if actor is not None:
                performer: dict[str, Any] = {"actor": actor}
                if function:
                    performer = {
                        "function": {
                            "coding": [{"system": "http://snomed.info/sct", "code": function}]
                        },
                        **performer,
                    }
                performers.append(performer)
    if performers:
        procedure["performer"] = performers
    reasons = [c for c in (codeable_concept(v, ctx) for v in conv.reps(seg, 15)) if c]
    if reasons:
        procedure["reasonCode"] = reasons
    return conv.add(procedure)


def map_prb(conv: Conversion, seg: Segment) -> str:
    """PRB (problem detail, PPR_PC1) -> Condition (problem-list-item): PRB-3 -> code,
    PRB-4 -> identifier, PRB-7 -> recordedDate, PRB-16 -> onset."""
    ctx = conv.ctx
    patient = _patient(conv, seg)
    problem = conv.first(seg, 3)
    instance = conv.value(seg, 4)
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": conv.unique_id(
            "Condition",
            patient,
            "problem",
            instance or (problem.text() if problem is not None else ""),
        ),
        "category": [{"coding": [{"system": _CONDITION_CATEGORY, "code": "problem-list-item"}]}],
    }
    if instance:
        condition["identifier"] = [{"system": ctx.facility_system("problem"), "value": instance}]
    code = codeable_concept(problem, ctx)
    if code:
        condition["code"] = code
    condition["subject"] = {"reference": patient}
    recorded = dtm.to_datetime(conv.value(seg, 7), ctx.zone, conv.loc(seg, 7), warn=conv.warnings)
    if recorded:
        condition["recordedDate"] = recorded
    onset = dtm.to_datetime(conv.value(seg, 16), ctx.zone, conv.loc(seg, 16), warn=conv.warnings)
    if onset:
        condition["onsetDateTime"] = onset
    return conv.add(condition)
