"""HL7 v2 -> FHIR R4 normalization, following the HL7 v2-to-FHIR Implementation Guide.

Pure functions, no I/O: :func:`normalize` takes one message's bytes and a
:class:`NormalizeContext` and returns a :class:`NormalizedMessage` (the validated resources,
a transaction Bundle, the patient key). Layout follows HL7's own units: ``datatypes/`` (CX,
XPN, XAD, XTN, CWE, DTM...), ``segments/`` (PID, PV1, OBR, OBX...), ``messages/`` (ADT,
ORU, VXU...). Vocabulary comes from the IG's concept maps (``vocab/``, generated).
"""

from __future__ import annotations

from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.normalize import UnsupportedMessage, normalize
from edge.normalize.result import NormalizedMessage
from edge.normalize.validate import Validator

__all__ = [
    "NormalizeContext",
    "NormalizeError",
    "NormalizedMessage",
    "UnsupportedMessage",
    "Validator",
    "normalize",
]
