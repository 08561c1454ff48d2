"""What runs in the worker processes: one message in, a picklable outcome out.

Normalization is CPU-bound pure Python (tokenize, map, validate); worker processes let both
cores work while the event loop keeps acknowledging (issue 4). Outcomes are plain tuples and
dataclasses, never exceptions: an exception class with a custom constructor does not always
survive pickling, and a lost error is a lost reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.astm.profile import DeviceProfile
from edge.normalize import normalize
from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.normalize import UnsupportedMessage
from edge.normalize.result import NormalizedMessage


@dataclass(frozen=True, slots=True)
class Failed:
    """Why a message did not convert: a path and a reason, no values."""

    state: str  # "dead-letter" or "unsupported"
    reason: str


Outcome = NormalizedMessage | Failed

# What an inbox row holds, from its message_type column (see kind_of).
Kind = Literal["hl7v2", "astm", "fhir"]


def kind_of(message_type: str | None) -> Kind:
    if message_type == "ASTM^E1394":
        return "astm"
    if message_type is not None and message_type.startswith("FHIR^"):
        return "fhir"
    return "hl7v2"


def convert(raw: bytes, kind: Kind, context: NormalizeContext,
            profile: DeviceProfile | None = None) -> Outcome:
    """One inbox payload to FHIR R4, by what it is: HL7v2 ER7, an ASTM E1394 message from a
    lab instrument (with that line's device profile), or FHIR JSON from the REST API."""
    try:
        if kind == "astm":
            from edge.normalize.astm import normalize_astm

            return normalize_astm(raw, context=context, profile=profile or DeviceProfile())
        if kind == "fhir":
            from edge.normalize.fhir_json import normalize_fhir

            return normalize_fhir(raw, context=context)
        return normalize(raw, context=context)
    except UnsupportedMessage as exc:
        return Failed("unsupported", str(exc))
    except NormalizeError as exc:
        return Failed("dead-letter", str(exc))
