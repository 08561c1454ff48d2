"""MRG (A40 merge patient) -> the non-surviving Patient, marked replaced (IG ADT_A39/A40;
FHIR R4 Patient.link, section 8.1.4).

The patient of PID survives. The one MRG-1 names gets a Patient resource with the same
deterministic id an earlier message gave it, ``active = false`` and a ``replaced-by`` link to
the survivor; the survivor gets a ``replaces`` link back.
"""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cx
from edge.normalize.errors import NormalizeError
from edge.normalize.segments.pid import patient_id_for

__all__ = ["map_mrg"]


def map_mrg(conv: Conversion, seg: Segment, survivor_ref: str | None) -> str:
    if survivor_ref is None:
        raise NormalizeError(conv.loc(seg), "merge without a surviving patient (PID missing)")
    msh = conv.message.segments("MSH")[0]
    default_authority = conv.first(msh, 4)
    identifiers = [
        i
        for i in (
            cx.identifier(
                v,
                conv.ctx,
                conv.loc(seg, n),
                default_authority=default_authority,
                warn=conv.warnings,
            )
            for n in (1, 4)
            for v in conv.reps(seg, n)
        )
        if i
    ]
    if not identifiers:
        raise NormalizeError(conv.loc(seg, 1), "prior patient identifier list is empty")
    survivor_key = conv.patient_key
    old_id = patient_id_for(conv, identifiers)
    conv.patient_key = survivor_key  # the message is keyed by the survivor
    assert old_id is not None
    old: dict[str, Any] = {
        "resourceType": "Patient",
        "id": old_id,
        "identifier": identifiers,
        "active": False,
        "link": [{"other": {"reference": survivor_ref}, "type": "replaced-by"}],
    }
    old_ref = conv.add(old)
    survivor = conv.resources[("Patient", survivor_ref.split("/", 1)[1])]
    survivor.setdefault("link", []).append({"other": {"reference": old_ref}, "type": "replaces"})
    return old_ref
