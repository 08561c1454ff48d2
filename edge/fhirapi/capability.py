"""``GET /metadata``: the CapabilityStatement, built from the same tables the API dispatches
on (:data:`~edge.normalize.fhir_json.SUPPORTED_TYPES`, :data:`~edge.fhirapi.search.SEARCH_PARAMS`),
so it lists exactly what is supported (FHIR R4 3.1.0.10, 6.1 CapabilityStatement)."""

from __future__ import annotations

from typing import Any

from edge import __version__
from edge.fhirapi.search import COMMON, SEARCH_PARAMS
from edge.normalize.fhir_json import SUPPORTED_TYPES

_COMMON_DOCS = {"_id": ("token", "logical id (index lookup)"),
                "identifier": ("token", "SYSTEM|VALUE only (blind index lookup)"),
                "_lastUpdated": ("date", "eq ne gt lt ge le")}
_INTERACTIONS = ("read", "vread", "update", "history-instance", "create", "search-type")
# R4 AuditEvent.patient (search parameter registry), for the listing's definition.
_AUDIT_PATIENT = "http://hl7.org/fhir/SearchParameter/AuditEvent-patient"


def capability_statement(base_url: str, *, mutual_tls: bool, bearer: bool,
                         published: str) -> dict[str, Any]:
    resources = []
    for rtype in SUPPORTED_TYPES:
        params = [{"name": name, "type": kind, "documentation": doc}
                  for name, (kind, doc) in _COMMON_DOCS.items() if name in COMMON]
        params += [{"name": d.name, "type": d.kind, "documentation": d.doc or d.kind}
                   for d in SEARCH_PARAMS.get(rtype, ())]
        resources.append({
            "type": rtype,
            "interaction": [{"code": code} for code in _INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": False,
            "conditionalDelete": "not-supported",
            "searchParam": params,
        })
    resources.append(_audit_event())
    services = []
    if mutual_tls:
        services.append({"text": "mutual TLS"})
    if bearer:
        services.append({"text": "Bearer token (RFC 6750)"})
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "kind": "instance",
        "software": {"name": "hie-edge", "version": __version__},
        "implementation": {"description": "hie-edge FHIR API for local systems",
                           "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Writes are validated (FHIR R4 via the R4B models), stored "
                             "encrypted and anchored to the ledger. Search parameters other "
                             "than those listed are refused (400). Bundle paging uses an "
                             "opaque _cursor in next links.",
            "security": {"cors": False, "service": services} if services else {"cors": False},
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
        }],
    }


def _audit_event() -> dict[str, Any]:
    """AuditEvent: search by ``patient`` only, the patient's accounting of disclosures (issue
    8); nothing is written or read by id through the API (events are the server's own)."""
    params = [{"name": d.name, "definition": _AUDIT_PATIENT, "type": d.kind,
               "documentation": d.doc} for d in SEARCH_PARAMS["AuditEvent"]]
    return {
        "type": "AuditEvent",
        "documentation": "The patient's accounting of disclosures: every peer access, consent "
                         "decision and local administrative access, oldest first (_sort=date). "
                         "patient is required; each read is itself audited.",
        "interaction": [{"code": "search-type"}],
        "versioning": "versioned",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": params,
    }
