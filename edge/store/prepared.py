"""A resource made ready to store, off the writer: checked, its index terms normalized, its
RFC 8785 JSON serialized.

Everything here is pure (no keys, no database), so the processing stage runs it in the worker
processes beside the conversion and the group-commit writer, which holds the GIL of the process
that also acknowledges messages, only fills in what a write alone knows. Those are two values
inside the hashed JSON: ``meta.versionId`` (the next version of ``Type/id``) and
``meta.lastUpdated`` (the commit's clock). The canonical JSON is therefore serialized with a
random placeholder string in each and the writer splices the real values in. That is exact:
RFC 8785 orders members by their names only (section 3.2.3) and serializes a string from its
own characters only (section 3.2.2.2), so swapping one string value for another changes those
bytes and nothing else. The placeholder is 128 random bits, drawn per record, and is checked to
occur exactly once, so nothing in a resource can imitate it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edge.crypto.blind_index import (
    IndexKind,
    normalize_birthdate,
    normalize_gender,
    normalize_identifier,
    normalize_name,
)
from edge.crypto.errors import IndexInputError
from edge.pickled import reduce_by_fields
from edge.store.errors import ResourceInputError
from ledger_client.errors import LedgerError
from ledger_client.leaf import canonical_json

# FHIR R4 2.1.0.1 (resource ids) and the resource type names' shape.
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")

# A blind index term: its kind and the normalized fields the index key is applied to
# (edge.crypto.blind_index.BlindIndexer.term).
IndexTerm = tuple[IndexKind, tuple[str, ...]]


@dataclass(frozen=True, slots=True, repr=False)
class PreparedRecord:
    """One resource ready for :meth:`edge.store.resources.ResourceStore.put_many`. Picklable
    (it crosses from the worker processes); ``repr`` shows type and id only."""

    type: str
    id: str
    template: bytes  # RFC 8785 JSON with the placeholders below in meta
    mark: bytes  # the placeholder stem: mark + b"v" (versionId), mark + b"t" (lastUpdated)
    terms: frozenset[IndexTerm]

    def canonical(self, version: int, last_updated: str) -> bytes:
        """The record's RFC 8785 JSON with ``meta.versionId = str(version)`` and
        ``meta.lastUpdated = last_updated`` (an ASCII FHIR instant: no escaping needed)."""
        return (self.template
                .replace(b'"' + self.mark + b'v"', b'"%d"' % version, 1)
                .replace(b'"' + self.mark + b't"', b'"' + last_updated.encode("ascii") + b'"', 1))

    def __repr__(self) -> str:
        return f"PreparedRecord({self.type}/{self.id})"

    __reduce__ = reduce_by_fields


def prepare_record(resource: Mapping[str, Any], *, layout_known: bool = False) -> PreparedRecord:
    """Check ``resource`` and make it ready to store. Raises :class:`ResourceInputError`
    (naming the element, never a value) for one the store cannot take. ``layout_known``: as
    :func:`ledger_client.leaf.canonical_json` says (for our own builders only)."""
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if not isinstance(rtype, str) or not _RESOURCE_TYPE.fullmatch(rtype):
        raise ResourceInputError("Resource.resourceType", "missing or not a resource type")
    if not isinstance(rid, str) or not _FHIR_ID.fullmatch(rid):
        raise ResourceInputError(f"{rtype}.id", "missing or not a FHIR id (FHIR R4 2.1.0.1)")
    meta = resource.get("meta", {})
    if not isinstance(meta, Mapping):
        raise ResourceInputError(f"{rtype}.meta", "not an object")
    terms = index_terms(resource)
    mark = "hie" + secrets.token_hex(16)
    record = {**resource, "meta": {**meta, "versionId": mark + "v", "lastUpdated": mark + "t"}}
    try:
        template = canonical_json(record, layout_known=layout_known)
    except LedgerError as exc:
        raise ResourceInputError(rtype, str(exc)) from None
    quoted = mark.encode("ascii")
    if template.count(quoted) != 2:
        # Only a resource quoting this very placeholder gets here: 128 random bits each time.
        raise ResourceInputError(f"{rtype}.meta", "placeholder collision; store it again")
    return PreparedRecord(rtype, rid, template, quoted, terms)


def _list_of(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def index_terms(resource: Mapping[str, Any]) -> frozenset[IndexTerm]:
    """The blind index terms of a resource: each ``identifier`` with a value, and a Patient's
    names, birth date and gender, normalized as :mod:`edge.crypto.blind_index` says. The same
    function serves writes and the re-derivation reads use to check index rows."""
    rtype = resource.get("resourceType", "Resource")
    out: set[IndexTerm] = set()
    for i, ident in enumerate(_list_of(resource.get("identifier"))):
        path = f"{rtype}.identifier[{i}]"
        if not isinstance(ident, Mapping):
            raise ResourceInputError(path, "not an object")
        value, system = ident.get("value"), ident.get("system", "")
        if value is None:
            continue  # FHIR allows an identifier without a value; nothing to find it by
        if not isinstance(value, str) or not isinstance(system, str):
            raise ResourceInputError(path, "system and value must be strings")
        if not value.strip():
            continue
        out.add((IndexKind.IDENTIFIER, normalize_identifier(system, value)))
    if rtype == "Patient":
        out |= _demographic_terms(resource)
    return frozenset(out)


def _demographic_terms(patient: Mapping[str, Any]) -> set[IndexTerm]:
    out: set[IndexTerm] = set()
    for i, name in enumerate(_list_of(patient.get("name"))):
        if not isinstance(name, Mapping):
            raise ResourceInputError(f"Patient.name[{i}]", "not an object")
        parts: list[tuple[IndexKind, Any, str]] = [
            (IndexKind.FAMILY, name.get("family"), f"Patient.name[{i}].family")]
        parts += [(IndexKind.GIVEN, given, f"Patient.name[{i}].given[{j}]")
                  for j, given in enumerate(_list_of(name.get("given")))]
        for kind, text, path in parts:
            if text is None:
                continue
            if not isinstance(text, str):
                raise ResourceInputError(path, "not a string")
            try:
                out.add((kind, (normalize_name(text, kind),)))
            except IndexInputError:
                continue  # only punctuation: nothing a search could match
    for element, kind, normalize in (("birthDate", IndexKind.BIRTHDATE, normalize_birthdate),
                                     ("gender", IndexKind.GENDER, normalize_gender)):
        text = patient.get(element)
        if text is None:
            continue
        if not isinstance(text, str):
            raise ResourceInputError(f"Patient.{element}", "not a string")
        try:
            out.add((kind, (normalize(text),)))
        except IndexInputError as exc:
            raise ResourceInputError(f"Patient.{element}", exc.args[0]) from None
    return out
