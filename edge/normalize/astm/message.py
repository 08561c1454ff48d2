"""The entry point: :func:`normalize_astm` one ASTM E1394 message into validated FHIR R4.

Pure, like :func:`edge.normalize.normalize`: bytes, settings and the line's device profile
in, resources out; no I/O, no clock. Failures are :class:`NormalizeError` naming the ASTM
path (``R[2]-3``, ``record 4 O-2``) or FHIR path that failed, never a value.

What is converted: H -> Device + Provenance, P -> Patient, O -> Specimen + ServiceRequest
(per test) + DiagnosticReport, R -> Observation, C -> notes on the record they follow.
What is not: a message of Q records only (a host query: nothing to store as clinical data),
a message with no O or R records, and a message carrying the results of more than one
patient (the store seals one message's resources under one patient's key; such a message
stays in the inbox as ``unsupported``, unconverted, rather than mixing two patients).
"""

from __future__ import annotations

from edge.astm.errors import RecordError
from edge.astm.profile import DeviceProfile
from edge.astm.records import parse_message
from edge.normalize.astm.header import map_device, provenance
from edge.normalize.astm.order import map_order, map_report
from edge.normalize.astm.patient import PatientIdentity, identity, map_patient
from edge.normalize.astm.result import map_result
from edge.normalize.astm.state import ASTMConversion
from edge.normalize.context import NormalizeContext
from edge.normalize.conversion import Resource
from edge.normalize.datatypes import dtm
from edge.normalize.errors import NormalizeError
from edge.normalize.normalize import UnsupportedMessage
from edge.normalize.result import NormalizedMessage
from edge.normalize.validate import Validator

__all__ = ["MESSAGE_TYPE", "STRUCTURE", "normalize_astm"]

MESSAGE_TYPE = "ASTM^E1394"  # as the inbox records it (edge.intake.astm)
STRUCTURE = "E1394"

_validators: dict[str, Validator] = {}


def _validator(mode: str) -> Validator:
    validator = _validators.get(mode)
    if validator is None:
        validator = _validators[mode] = Validator(mode)
    return validator


def _codec(raw: bytes, fallback: str) -> str:
    # E1394 text is ASCII in the standard; instruments send UTF-8 or a Latin code page for
    # names. Valid UTF-8 is read as UTF-8, anything else with the facility's fallback.
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return fallback
    return "utf-8"


def normalize_astm(raw: bytes, *, context: NormalizeContext, profile: DeviceProfile,
                   validator: Validator | None = None) -> NormalizedMessage:
    """Convert one H..L message (as received) to FHIR R4.

    ``profile`` is the listener's device profile (test code system and component, unit
    overrides). ``validator`` defaults to a per-process one in ``context.validation`` mode.
    Raises :class:`UnsupportedMessage` for a message with nothing to convert (a query) or
    with several patients' results, :class:`NormalizeError` for content that cannot become
    valid FHIR.
    """
    try:
        message = parse_message(raw, codec=_codec(raw, context.fallback_codec))
    except RecordError as exc:
        raise NormalizeError(exc.location, f"message cannot be read: {exc.reason}") from None
    conv = ASTMConversion(message, raw, context, profile)
    _check_supported(conv)
    map_device(conv)
    patient_key: str | None = None
    updates = False
    for group in message.patients:
        if not group.orders:
            continue
        subject, key = map_patient(conv, group.patient)
        patient_key = patient_key or key
        for comment in group.comments:
            conv.warnings.append(f"{conv.loc(comment)}: comment on the patient is not mapped")
        for order_group in group.orders:
            mapped = map_order(conv, order_group, subject)
            observations: list[Resource] = []
            for result_group in order_group.results:
                observation = map_result(conv, result_group, mapped, subject)
                observations.append(observation)
                updates = updates or observation["status"] == "corrected"
            report = map_report(conv, order_group, mapped, observations, subject)
            updates = updates or (report is not None and report["status"] == "corrected")
    for comment in message.header_comments:
        conv.warnings.append(f"{conv.loc(comment)}: comment on the header is not mapped")
    resources = list(conv.resources.values())
    resources.append(provenance(conv, [f"{r['resourceType']}/{r['id']}" for r in resources],
                                updates=updates))
    checker = validator if validator is not None else _validator(context.validation)
    for resource in resources:
        checker.validate(resource)
    timestamp = dtm.to_instant(message.header.timestamp.strip(), context.zone, "H-14", warn=[])
    return NormalizedMessage(
        control_id=conv.control_id,
        message_type=MESSAGE_TYPE,
        structure=STRUCTURE,
        timestamp=timestamp,
        resources=tuple(resources),
        patient_key=patient_key,
        warnings=tuple(dict.fromkeys(conv.warnings)),
    )


def _check_supported(conv: ASTMConversion) -> None:
    message = conv.message
    groups = [g for g in message.patients if g.orders]
    if not groups:
        if message.queries:
            raise UnsupportedMessage("Q", "a request for information (query) is not converted")
        raise UnsupportedMessage("H", "no order or result records to convert")
    # Every group with orders must be about the same patient (or all about none).
    first: PatientIdentity | None = identity(conv, groups[0].patient)
    for group in groups[1:]:
        if identity(conv, group.patient) != first:
            where = conv.loc(group.patient) if group.patient is not None else "O"
            raise UnsupportedMessage(
                where, "results of more than one patient in one message are not converted")
