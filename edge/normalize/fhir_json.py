"""FHIR JSON from the REST API or an upstream source → resources for the store.

The FHIR API (:mod:`edge.fhirapi`) does not put a request's body in the inbox as it came: it
puts an *intake envelope* (:func:`envelope`), which holds the resources together with every
decision that needed the outside world, so that normalizing it again (a replay, a restart in
the middle) gives the same result. Normalization itself stays pure (design.md, "Layout").

The envelope (JSON, ``"envelope": "hie-edge/fhir-intake"``, ``"version": 1``):

- ``interaction``: ``create``, ``update`` or ``transaction`` (a batch Bundle is split by the
  API into one envelope per entry);
- ``request_id``: a server-made id (the inbox ``control_id``);
- ``entries``: one per resource, in request order: ``method`` (POST or PUT), ``type``,
  ``id`` (for POST: the id the server assigned), ``fullUrl`` (as sent, may be ``urn:uuid:``),
  ``resource``, and the preconditions ``if_match`` (a version) and ``if_none_exist`` (an
  identifier token that must not match an existing resource of the type);
- ``patients``: ``"Patient/<id>"`` → ``SYSTEM|VALUE`` for every Patient the entries refer to
  that is not itself in the envelope, resolved by the API from the store when it accepted the
  request (the key the referring records are sealed under);
- ``source`` (optional): the versioned URL of the resource at an upstream server, recorded in
  the resource as the :data:`UPSTREAM_EXTENSION` of its ``meta``.

What it checks (all before anything is stored, so a failed transaction stores nothing):

- every resource validates against its ``fhir.resources.R4B`` model in full (input from outside
  gets no shape cache) and our own checks (:mod:`edge.normalize.validate`);
- type and id agree with the request; no resource appears twice in one transaction;
- the patient key (the store's per-patient key, :class:`edge.store.keys.PatientRef`): for a
  Patient its primary identifier (the first with type ``MR`` carrying system and value, else
  the first carrying both: the rule PID-3 follows, so a Patient sent as HL7v2 and as FHIR gets
  one key); for other resources the Patient their ``subject``/``patient``/``beneficiary``
  refers to (in the envelope, resolved in ``patients``, or a logical reference by
  identifier). One envelope is sealed under one key, so a transaction carries one patient's
  records (422 otherwise; a batch may mix patients).

Errors are :class:`NormalizeError` whose reason ends in ``(HTTP nnn)`` when the API should
answer other than 400 (:func:`http_status_of`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.result import NormalizedMessage
from edge.normalize.validate import Validator
from edge.store.keys import patient_ref_of

__all__ = [
    "ENVELOPE",
    "PATIENT_ELEMENTS",
    "SUPPORTED_TYPES",
    "UPSTREAM_EXTENSION",
    "FHIRMessage",
    "Precondition",
    "envelope",
    "http_status_of",
    "mark_upstream",
    "normalize_fhir",
    "patient_key_of",
    "patient_references",
    "token",
]

ENVELOPE: Final = "hie-edge/fhir-intake"
UPSTREAM_EXTENSION: Final = "urn:hie-edge:fhir:upstream-version"
# Elements by which a resource names its patient (FHIR R4 compartment definition "Patient",
# the elements used by the resource types below).
PATIENT_ELEMENTS: Final = ("subject", "patient", "beneficiary")
# Resource types the API accepts and serves (listed in the CapabilityStatement).
SUPPORTED_TYPES: Final = (
    "AllergyIntolerance", "Appointment", "ChargeItem", "Condition", "Coverage", "Device",
    "DiagnosticReport", "DocumentReference", "Encounter", "Immunization", "Location",
    "MedicationRequest",
    "Observation", "Organization", "Patient", "Practitioner", "PractitionerRole", "Procedure",
    "RelatedPerson", "ServiceRequest", "Specimen",
)
_FHIR_ID: Final = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # FHIR R4 2.24.0.1 id
_HTTP_SUFFIX: Final = re.compile(r"\(HTTP (\d{3})\)$")

Interaction = Literal["create", "update", "transaction"]

_validator: Validator | None = None  # one per worker process


@dataclass(frozen=True, slots=True)
class Precondition:
    """What must hold in the store, inside the transaction that stores the entry.

    ``version``: the current version of ``type/id`` must be this one (``If-Match``; FHIR R4
    3.1.0.5 "Managing Resource Contention"). ``absent``: no current ``type`` resource may carry
    the identifier token (``If-None-Exist``, conditional create, R4 3.1.0.8.1)."""

    path: str  # where a failure is reported: ``Bundle.entry[2].request``, ``Observation``
    type: str
    id: str
    version: int | None = None
    absent: str | None = None

    def __repr__(self) -> str:  # the identifier token is PHI
        return (f"Precondition({self.path}, {self.type}, version={self.version}, "
                f"absent={'set' if self.absent else 'none'})")


@dataclass(frozen=True, slots=True, repr=False)
class FHIRMessage(NormalizedMessage):
    """A :class:`NormalizedMessage` with the preconditions the processor checks before it
    stores anything (:func:`edge.fhirapi.preconditions.failed_precondition`)."""

    preconditions: tuple[Precondition, ...] = ()


def token(system: str, value: str) -> str:
    """A FHIR token ``SYSTEM|VALUE`` with the search escapes (R4 3.1.1.5.7, "Escaping"), as
    :func:`edge.crypto.blind_index.parse_identifier_token` reads it back."""

    def escape(text: str) -> str:
        return (text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
                .replace("$", "\\$"))

    return f"{escape(system)}|{escape(value)}"


def patient_key_of(patient: Mapping[str, Any]) -> str | None:
    """The key token of a Patient: its primary identifier (see the module doc and
    :func:`edge.store.keys.patient_ref_of`, the rule itself), or None."""
    ref = patient_ref_of(patient)
    return None if ref is None else token(ref.system, ref.value)


def patient_references(resource: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(element, Reference)`` for each element by which ``resource`` names its patient."""
    for element in PATIENT_ELEMENTS:
        value = resource.get(element)
        if isinstance(value, Mapping):
            yield element, value


def http_status_of(reason: str, default: int = 400) -> int:
    """The HTTP status a rejection reason asks for (its ``(HTTP nnn)`` suffix)."""
    match = _HTTP_SUFFIX.search(reason)
    return int(match.group(1)) if match else default


def envelope(interaction: Interaction, request_id: str, entries: list[dict[str, Any]],
             patients: Mapping[str, str], *, source: str | None = None,
             aliases: Mapping[str, str] | None = None) -> bytes:
    """The inbox payload for one accepted request (see the module doc). ``aliases`` maps the
    ``fullUrl`` of a transaction entry that was not stored (its conditional create matched)
    to the ``Type/id`` it matched, for references to it."""
    body: dict[str, Any] = {"envelope": ENVELOPE, "version": 1, "interaction": interaction,
                            "request_id": request_id, "entries": entries,
                            "patients": dict(patients)}
    if source is not None:
        body["source"] = source
    if aliases:
        body["aliases"] = dict(aliases)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _reject(path: str, reason: str, status: int = 400) -> NormalizeError:
    return NormalizeError(path, reason if status == 400 else f"{reason} (HTTP {status})")


def normalize_fhir(raw: bytes, *, context: NormalizeContext) -> FHIRMessage:
    """One intake envelope → the resources to store (see the module doc). Raises
    :class:`NormalizeError` naming the FHIR path that failed."""
    global _validator  # noqa: PLW0603 - per-process cache; the models are slow to import
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _reject("envelope", "not JSON") from None
    if not isinstance(data, dict) or data.get("envelope") != ENVELOPE or data.get("version") != 1:
        raise _reject("envelope", "not a version 1 FHIR intake envelope")
    interaction = data.get("interaction")
    entries = data.get("entries")
    patients = data.get("patients") or {}
    if interaction not in ("create", "update", "transaction") or not isinstance(entries, list) \
            or not entries or not isinstance(patients, dict):
        raise _reject("envelope", "interaction, entries or patients missing")
    if _validator is None:
        _validator = Validator("full")
    transaction = interaction == "transaction"
    resources: list[dict[str, Any]] = []
    preconditions: list[Precondition] = []
    aliases = data.get("aliases") or {}
    # fullUrl -> Type/id, for references inside the request
    local: dict[str, str] = {str(k): str(v) for k, v in aliases.items()} \
        if isinstance(aliases, dict) else {}
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]" if transaction else ""
        resource = _entry_resource(entry, where)
        rtype, rid = entry["type"], entry["id"]
        if f"{rtype}/{rid}" in seen:
            # FHIR R4 3.1.0.11.2: a transaction fails when it identifies a resource twice.
            raise _reject(f"{where}.request.url", "the same resource appears twice", 400)
        seen.add(f"{rtype}/{rid}")
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url:
            local[full_url] = f"{rtype}/{rid}"
        local.setdefault(f"{rtype}/{rid}", f"{rtype}/{rid}")
        resources.append(resource)
        if entry.get("if_match") is not None or entry.get("if_none_exist") is not None:
            preconditions.append(Precondition(f"{where}.request" if where else rtype, rtype,
                                              rid, entry.get("if_match"),
                                              entry.get("if_none_exist")))
    resources = [_rewrite_references(r, local) for r in resources]
    source = data.get("source")
    for index, resource in enumerate(resources):
        where = f"Bundle.entry[{index}].resource" if transaction else resource["resourceType"]
        try:
            _validator.validate(resource)
        except NormalizeError as exc:
            if not transaction:
                raise
            rest = exc.path.partition(".")[2].lstrip(".")
            raise NormalizeError(f"{where}.{rest}" if rest else where, exc.reason,
                                 fault=exc.fault) from None
        if isinstance(source, str):
            resources[index] = mark_upstream(resource, source)
    keys = _patient_keys(resources, patients, transaction)
    if len(keys) > 1:
        raise _reject("Bundle.entry", "a transaction carries one patient's records; send "
                      "several patients' records as a batch", 422)
    return FHIRMessage(
        control_id=str(data.get("request_id") or ""), message_type=f"FHIR^{interaction}",
        structure="FHIR", timestamp=None, resources=tuple(resources),
        patient_key=next(iter(keys)) if keys else None, preconditions=tuple(preconditions))


def _entry_resource(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise _reject(where or "entry", "not an object")
    resource, rtype, rid = entry.get("resource"), entry.get("type"), entry.get("id")
    prefix = f"{where}.resource" if where else str(rtype)
    if not isinstance(resource, dict):
        raise _reject(prefix, "not a JSON object")
    if resource.get("resourceType") != rtype or not isinstance(rtype, str):
        raise _reject(f"{prefix}.resourceType", "does not match the request")
    if rtype not in SUPPORTED_TYPES:
        raise _reject(f"{prefix}.resourceType", "resource type not supported here", 422)
    if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
        raise _reject(f"{prefix}.id", "not a FHIR id (R4 2.24.0.1)")
    if entry.get("method") == "PUT" and resource.get("id") != rid:
        raise _reject(f"{prefix}.id", "does not match the id in the URL")
    if_match = entry.get("if_match")
    if if_match is not None and (not isinstance(if_match, int) or if_match < 1):
        raise _reject(f"{where}.request.ifMatch" if where else "If-Match", "not a version")
    return {**resource, "id": rid}


def _rewrite_references(node: Any, local: Mapping[str, str]) -> Any:
    """Replace references to entries' ``fullUrl`` by ``Type/id`` (R4 3.1.0.11.2, "the server
    SHALL update all references")."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in local:
                out[key] = local[value]
            else:
                out[key] = _rewrite_references(value, local)
        return out
    if isinstance(node, list):
        return [_rewrite_references(item, local) for item in node]
    return node


def mark_upstream(resource: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``resource`` with ``source`` (its versioned upstream URL) as the
    :data:`UPSTREAM_EXTENSION` of its ``meta`` (replacing an earlier one)."""
    meta = dict(resource.get("meta") or {})
    extensions = [e for e in meta.get("extension") or () if e.get("url") != UPSTREAM_EXTENSION]
    extensions.append({"url": UPSTREAM_EXTENSION, "valueUri": source})
    meta["extension"] = extensions
    return {**resource, "meta": meta}


def _patient_keys(resources: list[dict[str, Any]], patients: Mapping[str, Any],
                  transaction: bool) -> set[str]:
    in_request: dict[str, str] = {}
    keys: set[str] = set()
    for index, resource in enumerate(resources):
        if resource["resourceType"] != "Patient":
            continue
        key = patient_key_of(resource)
        where = f"Bundle.entry[{index}].resource.identifier" if transaction \
            else "Patient.identifier"
        if key is None:
            raise _reject(where, "a Patient needs an identifier with system and value (its "
                          "records are sealed under a key named by it)", 422)
        in_request[f"Patient/{resource['id']}"] = key
        keys.add(key)
    for index, resource in enumerate(resources):
        for element, ref in patient_references(resource):
            where = (f"Bundle.entry[{index}].resource.{element}" if transaction
                     else f"{resource['resourceType']}.{element}")
            reference = ref.get("reference")
            if isinstance(reference, str):
                if not reference.startswith("Patient/"):
                    continue  # a Group, a Device: no patient key from it
                key = in_request.get(reference) or patients.get(reference)
                if not isinstance(key, str):
                    raise _reject(f"{where}.reference", "refers to a Patient this server "
                                  "does not hold", 422)
                keys.add(key)
                continue
            ident = ref.get("identifier")
            if isinstance(ident, Mapping) and ident.get("system") and ident.get("value"):
                keys.add(token(str(ident["system"]), str(ident["value"])))
    return keys
