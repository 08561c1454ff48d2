"""The entry point: :func:`normalize` one HL7 v2 message into validated FHIR R4 resources.

Pure: bytes and settings in, resources out; no I/O, no clock (Provenance.recorded and the
Bundle timestamp are MSH-7). Every failure is a :class:`NormalizeError` naming the HL7 or FHIR
path that failed, never a value.
"""

from __future__ import annotations

from edge.er7 import ER7Error, parse
from edge.normalize.context import NormalizeContext
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm
from edge.normalize.errors import NormalizeError
from edge.normalize.messages import REGISTRY
from edge.normalize.messages.walk import walk
from edge.normalize.result import NormalizedMessage
from edge.normalize.segments.msh import provenance
from edge.normalize.structure import message_structure
from edge.normalize.validate import Validator

__all__ = ["UnsupportedMessage", "normalize"]

_validators: dict[str, Validator] = {}


class UnsupportedMessage(NormalizeError):
    """The message's structure has no map (ACK, QBP, RSP, BAR...): stored, not converted."""


def _validator(mode: str) -> Validator:
    validator = _validators.get(mode)
    if validator is None:
        validator = _validators[mode] = Validator(mode)
    return validator


def normalize(
    raw: bytes | str, *, context: NormalizeContext, validator: Validator | None = None
) -> NormalizedMessage:
    """Convert one message (as received) to FHIR R4.

    ``validator`` defaults to a per-process one in ``context.validation`` mode. Raises
    :class:`UnsupportedMessage` for a structure we do not map, :class:`NormalizeError` for
    content that cannot become valid FHIR (fault "peer") or an assigning authority the
    dead-letter policy refuses (fault "config").
    """
    try:
        message = parse(raw, fallback_codec=context.fallback_codec)
    except ER7Error as exc:
        raise NormalizeError(exc.location, f"message cannot be tokenized: {exc.reason}") from None
    structure = message_structure(message.header, REGISTRY)
    message_map = REGISTRY.get(structure)
    if message_map is None:
        raise UnsupportedMessage("MSH-9", f"message structure {structure} is not mapped")
    conv = Conversion(message, context, structure)
    header = walk(conv, message_map)
    header["focus"] = [{"reference": ref} for ref in dict.fromkeys(conv.focus)] or (
        [{"reference": conv.patient_ref}] if conv.patient_ref else []
    )
    if not header["focus"]:
        del header["focus"]
    timestamp = dtm.to_instant(message.header.message_datetime, context.zone, "MSH-7", warn=[])
    resources = list(conv.resources.values())
    resources.append(provenance(conv, [f"{r['resourceType']}/{r['id']}" for r in resources]))
    checker = validator if validator is not None else _validator(context.validation)
    for resource in resources:
        checker.validate(resource)
    return NormalizedMessage(
        control_id=conv.control_id,
        message_type=f"{message.header.message_code}^{message.header.trigger_event}",
        structure=structure,
        timestamp=timestamp,
        resources=tuple(resources),
        patient_key=conv.patient_key,
        warnings=tuple(dict.fromkeys(conv.warnings)),
    )
