"""ASTM E1394 (CLSI LIS2-A2) -> FHIR R4: records from laboratory instruments into the same
validated resources the HL7 v2 side makes (:func:`normalize_astm`).

Layout follows the record types: ``header.py`` (H -> Device, Provenance), ``patient.py``
(P), ``order.py`` (O -> Specimen, ServiceRequest, DiagnosticReport), ``result.py`` (R ->
Observation), ``codes.py`` (statuses, flags, test ids, C records as notes), ``state.py`` (the
conversion state and id scheme), ``message.py`` (the entry point).
"""

from __future__ import annotations

from edge.normalize.astm.message import MESSAGE_TYPE, STRUCTURE, normalize_astm

__all__ = ["MESSAGE_TYPE", "STRUCTURE", "normalize_astm"]
