"""TXA (+ the OBX that carry the document) -> DocumentReference (v2-to-FHIR IG
TXA[DocumentReference], OBX[DocumentReference]).

TXA-2 -> type; TXA-3 -> content.attachment.contentType; TXA-6 -> date (instant, when a time
was sent); TXA-9 -> author; TXA-10 -> authenticator; TXA-12 -> masterIdentifier; TXA-16 ->
identifier; TXA-17 -> docStatus; TXA-19 -> status (AV current; CA/OB/UN superseded...).
The OBX-5 of the message (TX/FT/ST text, or ED data) becomes the attachment's data.
The id comes from TXA-12, so a replaced or corrected document (T04, T08) updates it.
"""

from __future__ import annotations

import base64
from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ed, ei, xcn
from edge.normalize.datatypes.cwe import codeable_concept

__all__ = ["add_document_content", "map_txa"]

_DOC_STATUS: Final = {
    "AU": "final",
    "DI": "preliminary",
    "DO": "preliminary",
    "IN": "preliminary",
    "IP": "preliminary",
    "LA": "final",
    "PA": "preliminary",
}
_CONTENT_TYPES: Final = {
    "TX": "text/plain",
    "FT": "text/plain",
    "HTML": "text/html",
    "AP": "application/octet-stream",
}


def map_txa(conv: Conversion, seg: Segment) -> dict[str, Any]:
    ctx, zone = conv.ctx, conv.ctx.zone
    master = ei.identifier(conv.first(seg, 12), ctx, conv.loc(seg, 12))
    key = ei.ei_key(conv.first(seg, 12))
    document: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": conv.make_id("DocumentReference", *key)
        if key
        else conv.message_scoped_id("DocumentReference", str(seg.index)),
    }
    if master:
        document["masterIdentifier"] = master
    file_name = conv.value(seg, 16)
    if file_name:
        document["identifier"] = [
            {"system": ctx.facility_system("document-file"), "value": file_name}
        ]
    availability = conv.value(seg, 19).upper()
    document["status"] = (
        "current"
        if availability in ("", "AV")
        else ("entered-in-error" if availability == "CA" else "superseded")
    )
    doc_status = _DOC_STATUS.get(conv.value(seg, 17).upper())
    if doc_status:
        document["docStatus"] = doc_status
    type_ = codeable_concept(
        conv.first(seg, 2), ctx, default_system="http://terminology.hl7.org/CodeSystem/v2-0270"
    )
    if type_:
        document["type"] = type_
    subject = conv.subject()
    if subject:
        document["subject"] = subject
    created = conv.value(seg, 6) or conv.value(seg, 4)
    if created and dtm.has_time(created):
        document["date"] = dtm.to_instant(created, zone, conv.loc(seg, 6), warn=conv.warnings)
    authors = [
        a for a in (xcn.practitioner(conv, v, conv.loc(seg, 9)) for v in conv.reps(seg, 9)) if a
    ]
    if authors:
        document["author"] = authors
    authenticator = xcn.practitioner(conv, conv.first(seg, 10), conv.loc(seg, 10))
    if authenticator:
        document["authenticator"] = authenticator
    title = conv.text(seg, 25)
    if title:
        document["description"] = title
    attachment: dict[str, Any] = {}
    content_type = _CONTENT_TYPES.get(conv.value(seg, 3).upper())
    if content_type:
        attachment["contentType"] = content_type
    document["content"] = [{"attachment": attachment}]
    if conv.encounter_ref:
        document["context"] = {"encounter": [{"reference": conv.encounter_ref}]}
    conv.add(document)
    conv.focus.append(f"DocumentReference/{document['id']}")
    return document


def add_document_content(conv: Conversion, obx: Segment, document: dict[str, Any]) -> None:
    """Append an OBX's content to the document's attachment (text lines, or ED data)."""
    attachment = document["content"][0]["attachment"]
    value_type = conv.value(obx, 2).upper()
    if value_type == "ED":
        value = conv.first(obx, 5)
        found = (
            ed.attachment(value, conv.loc(obx, 5), warn=conv.warnings)
            if value is not None
            else None
        )
        if found is not None:
            document["content"].append({"attachment": found})
        return
    field = obx.field(5)
    lines = [field.text(i) for i in range(1, len(field.repetitions) + 1)]
    text = "\n".join(line for line in lines if line and line != '""')
    if not text:
        return
    previous = (
        base64.b64decode(attachment["data"]).decode("utf-8") + "\n" if "data" in attachment else ""
    )
    data = (previous + text).encode("utf-8")
    attachment.setdefault("contentType", "text/plain")
    attachment["data"] = base64.b64encode(data).decode("ascii")
