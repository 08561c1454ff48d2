"""NTE -> Annotation on the resource the note follows (IG NTE[Observation],
NTE[ServiceRequest], NTE[DocumentReference]): NTE-3 (FT, repeating) -> text, repetitions
joined by newlines; NTE-5 (entered by, XCN) -> authorString; NTE-6 -> time."""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.xpn import name_text

__all__ = ["annotation", "map_nte"]

_NOTE_ELEMENT = {
    "Observation": "note",
    "ServiceRequest": "note",
    "DiagnosticReport": None,
    "Immunization": "note",
    "MedicationRequest": "note",
    "Procedure": "note",
    "AllergyIntolerance": "note",
    "Condition": "note",
    "Specimen": "note",
    "Appointment": "comment",
    "Encounter": None,
}


def annotation(conv: Conversion, seg: Segment) -> dict[str, Any] | None:
    field = seg.field(3)
    texts = [field.text(i) for i in range(1, len(field.repetitions) + 1)]
    text = "\n".join(t for t in texts if t and t != '""').strip()
    if not text:
        return None
    note: dict[str, Any] = {}
    author = conv.first(seg, 5)
    if author is not None:
        name = name_text(author.tail(2))
        if name:
            note["authorString"] = name
    time = dtm.to_datetime(conv.value(seg, 6), conv.ctx.zone, conv.loc(seg, 6), warn=conv.warnings)
    if time:
        note["time"] = time
    note["text"] = text
    return note


def map_nte(conv: Conversion, seg: Segment, target: dict[str, Any] | None) -> None:
    """Attach the note to ``target`` (the resource of the segment NTE follows), if any."""
    if target is None:
        return
    element = _NOTE_ELEMENT.get(target["resourceType"])
    if element is None:
        return
    note = annotation(conv, seg)
    if note is None:
        return
    if element == "comment":  # Appointment.comment is one string
        target["comment"] = "\n".join(filter(None, (target.get("comment"), note["text"])))
    else:
        target.setdefault(element, []).append(note)
