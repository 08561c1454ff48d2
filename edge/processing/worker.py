"""What runs in the worker processes: one message in, a picklable outcome out.

Normalization is CPU-bound pure Python (tokenize, map, validate); worker processes let both
cores work while the event loop keeps acknowledging (issue 4). The resources also leave here
ready to store (:mod:`edge.store.prepared`: checked, index terms normalized, canonical JSON
serialized), so the group-commit writer, which shares its process and GIL with intake, only
seals, hashes and inserts. Outcomes are plain tuples and dataclasses, never exceptions: an
exception class with a custom constructor does not always survive pickling, and a lost error
is a lost reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edge.astm.profile import DeviceProfile
from edge.normalize import normalize
from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.fhir_json import FHIRMessage, Precondition
from edge.normalize.normalize import UnsupportedMessage
from edge.normalize.result import NormalizedMessage
from edge.store.errors import ResourceInputError
from edge.store.prepared import PreparedRecord, prepare_record


@dataclass(frozen=True, slots=True)
class Failed:
    """Why a message did not convert: a path and a reason, no values."""

    state: str  # "dead-letter" or "unsupported"
    reason: str


@dataclass(frozen=True, slots=True, repr=False)
class Converted:
    """A message's resources, ready for the store. ``repr`` shows counts only."""

    records: tuple[PreparedRecord, ...]
    patient_key: str | None  # "system|value" of the patient whose key seals them
    preconditions: tuple[Precondition, ...] = ()  # FHIR API If-Match / If-None-Exist

    def __repr__(self) -> str:
        return f"Converted(records={len(self.records)})"


Outcome = Converted | Failed

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
    lab instrument (with that line's device profile), or FHIR JSON from the REST API; its
    resources prepared for the store."""
    message = _normalize(raw, kind, context, profile)
    if isinstance(message, Failed):
        return message
    try:
        records = tuple(prepare_record(resource) for resource in message.resources)
    except ResourceInputError as exc:
        return Failed("dead-letter", str(exc))
    preconditions = message.preconditions if isinstance(message, FHIRMessage) else ()
    return Converted(records, message.patient_key, preconditions)


def _normalize(raw: bytes, kind: Kind, context: NormalizeContext,
               profile: DeviceProfile | None) -> NormalizedMessage | Failed:
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
