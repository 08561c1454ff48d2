"""MSH -> MessageHeader and Provenance (v2-to-FHIR IG MSH[MessageHeader],
MSH[Provenance-Source], MSH[Provenance-Transformation]).

MessageHeader: MSH-9.2 -> eventCoding (table 0003); MSH-3 -> source.endpoint, MSH-4 ->
source.name; MSH-5 -> destination.endpoint, MSH-6 -> destination.name; MSH-9.1 -> meta.tag
(table 0076); MSH-9.3 -> definition; focus -> the message's main resources.
Provenance: one per message, targeting every resource made from it; ``recorded`` = MSH-7;
the sending facility is the agent; the entity names the source message (MSH-10) as
``meta.source`` does.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm

__all__ = ["map_msh", "provenance"]

_V2_EVENT: Final = "http://terminology.hl7.org/CodeSystem/v2-0003"
_V2_MESSAGE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0076"
_IG: Final = "http://hl7.org/fhir/uv/v2mappings/message-"


def _endpoint(conv: Conversion, seg: Segment, n: int) -> str:
    hd = conv.first(seg, n)
    if hd is None:
        return ""
    name = hd[1] or hd[2]
    return name


def map_msh(conv: Conversion, seg: Segment) -> dict[str, Any]:
    """Add the MessageHeader (its ``focus`` is filled in by :func:`finish`)."""
    header = conv.header
    message_header: dict[str, Any] = {
        "resourceType": "MessageHeader",
        "id": conv.make_id(
            "MessageHeader", header.sending_facility, conv.control_id, header.message_datetime
        ),
        "meta": {"tag": [{"system": _V2_MESSAGE_TYPE, "code": header.message_code}]},
        "eventCoding": {"system": _V2_EVENT, "code": header.trigger_event or "UNK"},
    }
    destination_app = _endpoint(conv, seg, 5)
    destination_facility = _endpoint(conv, seg, 6)
    if destination_app or destination_facility:
        destination: dict[str, Any] = {"endpoint": destination_app or destination_facility}
        if destination_facility:
            destination["name"] = destination_facility
        message_header["destination"] = [destination]
    source_app, source_facility = _endpoint(conv, seg, 3), _endpoint(conv, seg, 4)
    source: dict[str, Any] = {"endpoint": source_app or source_facility or conv.ctx.source_uri}
    if source_facility:
        source["name"] = source_facility
    message_header["source"] = source
    message_header["definition"] = f"{_IG}{conv.structure.lower().replace('_', '-')}"
    conv.add(message_header)
    return message_header


def provenance(conv: Conversion, targets: list[str]) -> dict[str, Any]:
    """The Provenance of this conversion: what came from message MSH-10, and who sent it."""
    recorded = dtm.to_instant(
        conv.header.message_datetime, conv.ctx.zone, "MSH-7", warn=conv.warnings
    )
    sender = (
        conv.header.sending_facility.split(conv.delimiters.component)[0]
        or conv.header.sending_application.split(conv.delimiters.component)[0]
    )
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": conv.make_id(
            "Provenance",
            conv.header.sending_facility,
            conv.control_id,
            conv.header.message_datetime,
        ),
        "meta": {"source": conv.source},
        "target": [{"reference": ref} for ref in targets],
        "recorded": recorded,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "UPDATE" if conv.header.trigger_event in ("A08", "A31") else "CREATE",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "author",
                        }
                    ]
                },
                "who": {"display": sender or "unknown sender"},
            }
        ],
        "entity": [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": conv.ctx.source_uri, "value": conv.control_id},
                    "display": f"HL7v2 {conv.header.message_code}^"
                    f"{conv.header.trigger_event} message",
                },
            }
        ],
    }
    if recorded is None:
        del out["recorded"]
        conv.absent(out, "_recorded", "MSH-7", "message date/time is empty or invalid")
    return out
