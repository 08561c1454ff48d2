"""ASTM E1394 codes -> FHIR R4 codes: test ids, result and report statuses, abnormal flags,
priorities, and C records as Annotations.

Section numbers are E1394-97 / CLSI LIS2-A2.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import quote

from edge.astm.records import Comment, UniversalTestId
from edge.normalize import vocab
from edge.normalize.astm.state import ASTMConversion
from edge.normalize.codesystems import system_for_name

__all__ = [
    "LAB_CATEGORY",
    "annotation",
    "interpretation",
    "observation_status",
    "priority",
    "report_status",
    "test_concept",
]

LAB_CATEGORY: Final = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory", "display": "Laboratory"}]
}

# 10.1.9 result status. Codes that say how far the result has come map to that status; the
# rest (M an MIC value, R sent before, N information for a new order, Q a query response)
# describe something else and defer to the order's report type (O-26).
_RESULT_STATUS: Final = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "S": "preliminary",  # partial results
    "X": "cancelled",  # the order cannot be done
    "I": "registered",  # in instrument, results pending
    "V": "final",  # operator verified / approved
    "W": "preliminary",  # warning: validity questionable, so not final
}
# 9.4.26 report type, as a status: O (an order) and Y/Z/Q (query answers) say nothing about
# how final a result is.
_REPORT_TYPE: Final = {
    "F": "final",
    "C": "corrected",
    "P": "preliminary",
    "X": "cancelled",
    "I": "registered",
}
# 9.4.6 priority -> FHIR request-priority. C (callback: results are to be phoned) and P
# (pre-operative) are time-critical without being stat.
_PRIORITY: Final = {"S": "stat", "A": "asap", "R": "routine", "C": "urgent", "P": "urgent"}
# 11.1.3 comment source -> Annotation.authorString.
_COMMENT_SOURCE: Final = {"P": "practice", "L": "laboratory information system",
                          "I": "instrument"}


def observation_status(result_status: str, report_type: str) -> str:
    """Observation.status from R-9, else from the order's O-26, else ``unknown``."""
    code = result_status.strip().upper()[:1]
    found = _RESULT_STATUS.get(code) or _REPORT_TYPE.get(report_type.strip().upper()[:1])
    return found or "unknown"


def report_status(report_type: str, observation_statuses: list[str]) -> str:
    """DiagnosticReport.status from O-26 when it gives one, else from the results."""
    given = _REPORT_TYPE.get(report_type.strip().upper()[:1])
    if given is not None:
        return given
    seen = set(observation_statuses)
    if not seen:
        return "registered"
    if seen == {"cancelled"}:
        return "cancelled"
    if seen <= {"final", "corrected", "cancelled"}:
        return "corrected" if "corrected" in seen else "final"
    if seen & {"preliminary", "registered"}:
        return "partial" if seen & {"final", "corrected"} else (
            "preliminary" if "preliminary" in seen else "registered")
    return "unknown"


def priority(code: str) -> str | None:
    return _PRIORITY.get(code.strip().upper()[:1])


def local_code_system(conv: ASTMConversion) -> str:
    """The code system of an instrument's own test codes when its profile names none:
    scoped to the facility and the instrument (H-5.1), since only they give it meaning."""
    name = quote(conv.sender_name or "instrument", safe="")
    return f"urn:hie-edge:{conv.ctx.facility_id}:cs:astm:{name}"


def _code(text: str) -> str:
    # FHIR code: no leading, trailing or repeated whitespace (R4 2.24.0.1).
    return " ".join(text.split())


def test_concept(conv: ASTMConversion, test_id: UniversalTestId) -> tuple[str, dict[str, Any]]:
    """The instrument's test code (the id key) and the CodeableConcept of a universal test
    id (6.6.1), read through the device profile. When components 1 and 3 carry a universal
    code in a known system (``2345-7^Glucose^LN^GLU``) that coding comes first.

    Returns ``("", {})`` when the test id carries no code at all."""
    local = conv.profile.test_code(test_id)
    code = _code(local.code)
    codings: list[dict[str, Any]] = []
    universal, universal_system = _code(test_id.component(1)), test_id.component(3).strip()
    known = system_for_name(universal_system) if universal and universal_system else None
    if known is not None:
        coding: dict[str, Any] = {"system": known, "code": universal}
        if test_id.component(2):
            coding["display"] = test_id.component(2)
        codings.append(coding)
    if code and not (known is not None and code == universal):
        coding = {"system": local.system or local_code_system(conv), "code": code}
        display = local.display or _display_after(test_id, conv.profile.test_code_component)
        if display:
            coding["display"] = display
        codings.append(coding)
    if not codings:
        return "", {}
    return code or universal, {"coding": codings}


def _display_after(test_id: UniversalTestId, component: int) -> str:
    # Many instruments put the test's name right after their code (``^^^GLU^Glucose``);
    # others put a dilution or replicate number there, which is not a name.
    text = test_id.component(component + 1).strip()
    return text if any(c.isalpha() for c in text) else ""


def interpretation(flag: str) -> dict[str, Any] | None:
    """R-7 abnormal flag (10.1.7: L H LL HH < > N A U D B W) -> a CodeableConcept in
    v3-ObservationInterpretation through the v2-to-FHIR IG's InterpretationCodes map, the
    one OBX-8 uses (the ASTM flags are table 0078's); an unknown flag is kept as text."""
    code = flag.strip()
    if not code:
        return None
    mapped = vocab.concept("InterpretationCodes", code)
    if mapped is None or not mapped.system:
        return {"text": code}
    coding = {"system": mapped.system, "code": mapped.code}
    if mapped.display:
        coding["display"] = mapped.display
    return {"coding": [coding]}


def annotation(record: Comment) -> dict[str, Any] | None:
    """A C record (11) as an Annotation: C-4's repetitions as lines, each one's components
    (comment code ^ comment text) joined by ``; ``; C-3 names who wrote it."""
    lines = []
    for parts in record.repeats(4):
        line = "; ".join(p.strip() for p in parts if p.strip())
        if line:
            lines.append(line)
    if not lines:
        return None
    note: dict[str, Any] = {}
    author = _COMMENT_SOURCE.get(record.source.strip().upper())
    if author:
        note["authorString"] = author
    note["text"] = "\n".join(lines)
    return note
