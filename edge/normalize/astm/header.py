"""H (E1394 section 7) -> Device (the instrument) and the message's Provenance.

H-5 sender (name ^ software version ^ serial number ^ ...) -> Device: deviceName (the
name), version, serialNumber; its id comes from name and serial number, so every message of
one instrument names one Device. The Provenance is the HL7 side's (MSH[Provenance]) for an
ASTM message: it targets every resource made from the message, ``recorded`` = H-14, the
instrument is the agent, and the entity names the source message by the id the inbox
deduplicates on (H-3, else H-14) as ``meta.source`` does.
"""

from __future__ import annotations

from typing import Any, Final

from edge.normalize.astm.state import ASTMConversion
from edge.normalize.conversion import DATA_ABSENT_REASON, Resource
from edge.normalize.datatypes import dtm

__all__ = ["map_device", "provenance"]

_PARTICIPANT: Final = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_OPERATION: Final = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"


def map_device(conv: ASTMConversion) -> str | None:
    """Add the instrument's Device (when H-5 names it); sets ``conv.device_ref``."""
    sender = [p.strip() for p in conv.header.sender]
    name = conv.sender_name
    if not name:
        return None
    version = sender[1] if len(sender) > 1 else ""
    serial = sender[2] if len(sender) > 2 else ""
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": conv.make_id("Device", "astm", name, serial),
        "deviceName": [{"name": name, "type": "user-friendly-name"}],
    }
    if serial:
        device["serialNumber"] = serial
    if version:
        device["version"] = [{"value": version}]
    conv.device_ref = conv.add(device)
    return conv.device_ref


def provenance(conv: ASTMConversion, targets: list[str], *, updates: bool) -> Resource:
    """The Provenance of this conversion. ``updates``: the message corrects earlier results
    (R-9 or O-26 ``C``), so the activity is UPDATE rather than CREATE."""
    timestamp = conv.header.timestamp.strip()
    recorded = dtm.to_instant(timestamp, conv.ctx.zone, "H-14", warn=conv.warnings)
    who: dict[str, Any] = {"display": conv.sender_name or "unknown instrument"}
    if conv.device_ref:
        who["reference"] = conv.device_ref
    what: dict[str, Any] = {"display": "ASTM E1394 message"}
    if conv.control_id:
        what["identifier"] = {"system": conv.ctx.source_uri, "value": conv.control_id}
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": conv.message_scoped_id("Provenance"),
        "meta": {"source": conv.source},
        "target": [{"reference": ref} for ref in targets],
        "recorded": recorded,
        "activity": {"coding": [{"system": _OPERATION,
                                 "code": "UPDATE" if updates else "CREATE"}]},
        "agent": [{"type": {"coding": [{"system": _PARTICIPANT, "code": "author"}]},
                   "who": who}],
        "entity": [{"role": "source", "what": what}],
    }
    if recorded is None:
        # Provenance.recorded is 1..1; H-14 is optional in E1394 and there is no clock here.
        del out["recorded"]
        out["_recorded"] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
        conv.warnings.append("H-14: message date/time is empty or invalid")
    return out
