"""The segment walk shared by every message map.

The first PID and PV1 are mapped before anything else (SIU sends SCH before PID; every order,
result and immunization refers to the patient and visit). Then segments are read in order,
keeping the context HL7 groups give them: the current ORC, the current OBR group, the last
RXA / RXE / TXA / SCH, and the last resource made (the target of a following NTE). Segments
no map reads (EVN, SFT, ...) are skipped; Z-segments are kept verbatim in a MessageHeader
extension (never an error).

PRT and TQ1 belong to the segment group they are in (IG message maps ``ORU_R01``,
``OML_O21``, ``VXU_V04``): the walk tracks the *anchor*, the segment that opened the current
group (PID, PV1, ORC, OBR, OBX, SPM, RXA). A PRT or TQ1 after an ORC but before its OBR (OML,
v2.5.1 ``ORDER.TIMING``) or RXA (VXU) waits until that resource exists. An order group is
finished (:func:`edge.normalize.segments.obr.close_group`: the OBR-15 Specimen, PRT specimen
collectors) when the next group starts or the message ends. FT1 -> ChargeItem where the
message map says FT1 carries charges (DFT).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.messages.base import MessageMap
from edge.normalize.segments import (
    clinical,
    ft1,
    in1,
    mrg,
    msh,
    nk1,
    nte,
    obr,
    obx,
    pid,
    prt,
    pv1,
    rxa,
    rxo,
    sch,
    spm,
    tq1,
    txa,
)

__all__ = ["Z_SEGMENT_URL", "walk"]

Z_SEGMENT_URL: Final = "urn:hie-edge:fhir:StructureDefinition:v2-z-segment"
# Segments that open a group a PRT or TQ1 can belong to (see the module docstring).
_ANCHORS: Final = {
    "PID": "patient",
    "PD1": "patient",
    "PV1": "visit",
    "PV2": "visit",
    "ORC": "order",
    "OBR": "request",
    "OBX": "observation",
    "SPM": "specimen",
    "RXA": "immunization",
    "RXE": "other",
    "RXO": "other",
    "NK1": "other",
    "AL1": "other",
    "DG1": "other",
    "PR1": "other",
    "PRB": "other",
    "IN1": "other",
    "TXA": "other",
    "SCH": "other",
    "FT1": "other",
    "MRG": "other",
}


class _State:
    __slots__ = (
        "anchor",
        "appointment",
        "document",
        "group",
        "immunization",
        "medication",
        "observation",
        "orc",
        "pending_prt",
        "pending_tq1",
        "target",
        "z_segments",
    )

    def __init__(self) -> None:
        self.orc: Segment | None = None
        self.group: obr.OrderGroup | None = None
        self.immunization: dict[str, Any] | None = None
        self.medication: dict[str, Any] | None = None
        self.document: dict[str, Any] | None = None
        self.appointment: dict[str, Any] | None = None
        self.target: dict[str, Any] | None = None
        self.z_segments: list[str] = []
        # The segment that opened the current group (for PRT/TQ1): "patient", "visit",
        # "order" (ORC), "request" (OBR), "observation" (OBX), "immunization", "other".
        self.anchor = "other"
        self.observation: dict[str, Any] | None = None
        self.pending_prt: list[Segment] = []
        self.pending_tq1: Segment | None = None

    def set_group(self, conv: Conversion, group: obr.OrderGroup | None) -> None:
        """Finish the current order group (if any) and make ``group`` current."""
        if self.group is not None:
            obr.close_group(conv, self.group)
        self.group = group


def _resource(conv: Conversion, reference: str) -> dict[str, Any]:
    resource_type, resource_id = reference.split("/", 1)
    return conv.resources[(resource_type, resource_id)]


def walk(conv: Conversion, message_map: MessageMap) -> dict[str, Any]:
    """Map every segment of ``conv.message``; returns the MessageHeader."""
    message = conv.message
    segments = message.segments()
    header = msh.map_msh(conv, segments[0])
    first_pid = message.segment("PID")
    first_pv1 = message.segment("PV1")
    if first_pid is not None:
        pid.map_pid(conv, first_pid)
    elif message_map.requires_patient:
        # No PID: the records are about someone the message does not identify. They get a
        # Patient with no identifiers (message-scoped id, no patient key) rather than being
        # dropped or attached to no one; the store decides what to do with unkeyed records.
        conv.patient_ref = conv.add(
            {"resourceType": "Patient", "id": conv.message_scoped_id("Patient", "no-pid")}
        )
        conv.warnings.append("PID: segment missing, patient unidentified")
    if first_pv1 is not None:
        pv1.map_pv1(conv, first_pv1)
    has_rxe = "RXE" in message.segment_ids
    state = _State()
    for seg in segments[1:]:
        _visit(conv, message_map, seg, state, first_pid, first_pv1, has_rxe)
    state.set_group(conv, None)
    document = state.document
    if document is not None and not document["content"][0]["attachment"]:
        # content.attachment is 1..1: a document whose content was not sent is marked so.
        conv.absent(document["content"][0], "attachment", "OBX-5", "document content not sent")
    if state.z_segments:
        header["extension"] = [
            {"url": Z_SEGMENT_URL, "valueString": raw} for raw in state.z_segments
        ]
    return header


def _visit(
    conv: Conversion,
    message_map: MessageMap,
    seg: Segment,
    state: _State,
    first_pid: Segment | None,
    first_pv1: Segment | None,
    has_rxe: bool,
) -> None:
    sid = seg.id
    if sid in _ANCHORS:
        state.anchor = _ANCHORS[sid]
    if sid == "PID":
        if seg is not first_pid:
            # The previous patient's order group ends here (its OBR-15 Specimen is theirs).
            state.set_group(conv, None)
            conv.patient_ref = None
            conv.encounter_ref = None
            pid.map_pid(conv, seg)
        state.target = _resource(conv, conv.patient_ref) if conv.patient_ref else None
    elif sid == "PV1":
        if seg is not first_pv1:
            conv.encounter_ref = None
            pv1.map_pv1(conv, seg)
        state.target = _resource(conv, conv.encounter_ref) if conv.encounter_ref else None
    elif sid == "PV2":
        pv1.map_pv2(conv, seg)
    elif sid == "NK1":
        ref = nk1.map_nk1(conv, seg)
        state.target = _resource(conv, ref) if ref else None
    elif sid in ("AL1", "DG1", "PR1", "PRB"):
        mapper = {
            "AL1": clinical.map_al1,
            "DG1": clinical.map_dg1,
            "PR1": clinical.map_pr1,
            "PRB": clinical.map_prb,
        }[sid]
        state.target = _resource(conv, mapper(conv, seg))
        if sid == "PRB":
            state.set_group(conv, None)
    elif sid == "IN1":
        state.target = _resource(conv, in1.map_in1(conv, seg))
    elif sid == "MRG":
        mrg.map_mrg(conv, seg, conv.patient_ref)
    elif sid == "ORC":
        state.orc = seg
        state.set_group(conv, None)
        state.immunization = None
        state.medication = None
        state.target = None
        state.pending_prt = []
        state.pending_tq1 = None
    elif sid == "OBR":
        state.set_group(conv, obr.map_obr(conv, seg, state.orc, report=message_map.results))
        assert state.group is not None
        state.target = state.group.request
        if not message_map.results and state.group.request is not None:
            conv.focus.append(f"ServiceRequest/{state.group.request['id']}")
        if state.pending_tq1 is not None:
            _visit_tq1(conv, state.pending_tq1, state)
        for pending in state.pending_prt:
            _visit_prt(conv, pending, state)
        state.pending_prt = []
        state.pending_tq1 = None
    elif sid == "PRT":
        _visit_prt(conv, seg, state)
    elif sid == "TQ1":
        _visit_tq1(conv, seg, state)
    elif sid == "FT1":
        if message_map.charges:
            ref = ft1.map_ft1(conv, seg)
            state.target = _resource(conv, ref) if ref else None
    elif sid == "OBX":
        _visit_obx(conv, message_map, seg, state)
    elif sid == "SPM":
        group = state.group
        request_ref = (
            f"ServiceRequest/{group.request['id']}"
            if group is not None and group.request is not None
            else None
        )
        key = group.key if group is not None else ("msh", conv.control_id)
        specimen_ref = spm.map_spm(conv, seg, parent_key=key, request=request_ref)
        if group is not None:
            group.specimens.append(specimen_ref)
            for resource in (group.request, group.report):
                if resource is not None:
                    resource.setdefault("specimen", []).append(specimen_ref)
        state.target = _resource(conv, specimen_ref["reference"])
    elif sid == "NTE":
        nte.map_nte(conv, seg, state.target)
    elif sid == "RXA":
        state.immunization = rxa.map_rxa(conv, seg, state.orc)
        state.target = state.immunization
        performers = [
            p for p in map(partial(prt.immunization_performer, conv), state.pending_prt) if p
        ]
        if performers:
            state.immunization.setdefault("performer", []).extend(performers)
        state.pending_prt = []
    elif sid == "RXR":
        rxa.map_rxr(conv, seg, state.immunization or state.medication)
    elif sid == "RXE" or (sid == "RXO" and not has_rxe):
        state.medication = rxo.map_rx_order(conv, seg, state.orc)
        state.target = state.medication
    elif sid == "TXA":
        state.document = txa.map_txa(conv, seg)
        state.target = state.document
    elif sid == "SCH":
        state.appointment = sch.map_sch(conv, seg)
        state.target = state.appointment
    elif sid in ("AIS", "AIL", "AIP"):
        {"AIS": sch.map_ais, "AIL": sch.map_ail, "AIP": sch.map_aip}[sid](
            conv, seg, state.appointment
        )
    elif sid.startswith("Z"):
        state.z_segments.append(seg.raw)


def _visit_obx(conv: Conversion, message_map: MessageMap, seg: Segment, state: _State) -> None:
    state.observation = None
    if message_map.document and state.document is not None:
        txa.add_document_content(conv, seg, state.document)
        return
    if state.immunization is not None:
        ref = f"Immunization/{state.immunization['id']}"
        state.target = obx.map_obx(conv, seg, parent_key=("imm", ref), part_of=ref)
        state.observation = state.target
        return
    group = state.group
    if group is not None and group.request is not None:
        request_ref = f"ServiceRequest/{group.request['id']}"
        observation = obx.map_obx(
            conv,
            seg,
            parent_key=group.key,
            effective=group.effective,
            based_on=request_ref,
        )
        if group.report is not None:
            group.report.setdefault("result", []).append(
                {"reference": f"Observation/{observation['id']}"}
            )
        else:
            group.request.setdefault("supportingInfo", []).append(
                {"reference": f"Observation/{observation['id']}"}
            )
        state.target = observation
        state.observation = observation
        group.observations.append(observation)
        return
    # Not in an order: keyed by the problem it follows (PPR) or the patient, so resending
    # the same observation (an A08 with the same OBX-3) updates it.
    parent = state.target
    if parent is not None and parent["resourceType"] == "Condition":
        parent_key: tuple[str, ...] = (f"Condition/{parent['id']}",)
    elif conv.patient_ref is not None:
        parent_key = (conv.patient_ref,)
    else:
        parent_key = ("msh", conv.header.sending_facility, conv.control_id)
    observation = obx.map_obx(conv, seg, parent_key=parent_key)
    state.observation = observation
    conv.focus.append(f"Observation/{observation['id']}")
    if parent is None or parent["resourceType"] != "Condition":
        state.target = observation


def _visit_prt(conv: Conversion, seg: Segment, state: _State) -> None:
    anchor = state.anchor
    group = state.group
    if anchor == "patient" and conv.patient_ref is not None:
        prt.apply_to_patient(conv, seg, _resource(conv, conv.patient_ref))
    elif anchor == "visit" and conv.encounter_ref is not None:
        prt.apply_to_encounter(conv, seg, _resource(conv, conv.encounter_ref))
    elif anchor == "order" and group is None:
        state.pending_prt.append(seg)  # its ServiceRequest / Immunization comes later
    elif anchor in ("order", "request") and group is not None:
        prt.apply_to_order(conv, seg, group.request, group.report, group.collectors)
    elif anchor == "observation" and state.observation is not None:
        prt.apply_to_observation(conv, seg, state.observation)


def _visit_tq1(conv: Conversion, seg: Segment, state: _State) -> None:
    group = state.group
    if group is not None and group.request is not None:
        if not group.timed:
            tq1.apply_tq1(conv, seg, group.request)
            group.timed = True
    elif state.orc is not None and state.pending_tq1 is None:
        state.pending_tq1 = seg  # OML ORDER.TIMING: TQ1 before its OBR
