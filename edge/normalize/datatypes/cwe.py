"""CWE / CE / CNE / CF / IS / ID -> CodeableConcept, Coding, code (v2-to-FHIR IG CWE[...]).

CWE (HL7 v2.5 section 2.A.13; v2.7 adds 10-22): the primary coding is CWE-1/2/3 with version
CWE-7, the alternate CWE-4/5/6 with version CWE-8, the second alternate CWE-10/11/12;
CWE-9 (original text) becomes ``CodeableConcept.text``. The coding system name goes through
:mod:`edge.normalize.codesystems`; CWE-14/17/20 (coding system OIDs, v2.7) win when sent.
A code without a known system gets the facility-scoped URI of its local system, and a
coding system name sent without a code is dropped (a Coding needs a code or display).
"""

from __future__ import annotations

from typing import Any

from edge.normalize import vocab
from edge.normalize.codesystems import system_for_name, system_for_oid
from edge.normalize.context import NormalizeContext
from edge.normalize.v2 import Composite

__all__ = ["code_from_map", "codeable_concept", "coding_system"]

# (code, text, system, version, system OID) positions of the three codings of a CWE.
_TRIPLETS = ((1, 2, 3, 7, 14), (4, 5, 6, 8, 17), (10, 11, 12, 13, 20))


def coding_system(name: str, ctx: NormalizeContext) -> str:
    """The FHIR system URI for a v2 coding system name (known, or facility-local)."""
    return system_for_name(name) or f"urn:hie-edge:{ctx.facility_id}:cs:{name}"


def _coding(
    v: Composite,
    positions: tuple[int, int, int, int, int],
    ctx: NormalizeContext,
    default_system: str | None,
) -> dict[str, Any] | None:
    code_i, text_i, system_i, version_i, oid_i = positions
    # FHIR code: no leading, trailing or repeated whitespace (R4 2.24.0.1 "code").
    code, display = " ".join(v[code_i].split()), v[text_i]
    if not code and not display:
        return None
    coding: dict[str, Any] = {}
    oid, name = v[oid_i], v[system_i]
    if code:
        if oid:
            coding["system"] = system_for_oid(oid)
        elif name:
            coding["system"] = coding_system(name, ctx)
        elif default_system:
            coding["system"] = default_system
    if v[version_i] and "system" in coding:
        coding["version"] = v[version_i]
    if code:
        coding["code"] = code
    if display:
        coding["display"] = display
    return coding


def codeable_concept(
    v: Composite | None,
    ctx: NormalizeContext,
    *,
    concept_map: str | None = None,
    default_system: str | None = None,
) -> dict[str, Any] | None:
    """A CodeableConcept for a CWE-like value, or ``None`` when nothing was sent (see
    :func:`_codeable_concept`). The same coded values recur in every message of a feed, so
    results are cached by the value's ER7 text; each call returns a fresh copy."""
    if v is None:
        return None
    key = (v.cache_key(), ctx.facility_id, concept_map, default_system)
    cached = _CACHE.get(key)
    if cached is None:
        cached = _codeable_concept(v, ctx, concept_map=concept_map, default_system=default_system)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = cached
    if cached is None:
        return None
    out = dict(cached)
    if "coding" in out:
        out["coding"] = [dict(c) for c in out["coding"]]
    return out


_CACHE: dict[tuple[Any, ...], dict[str, Any] | None] = {}
_CACHE_SIZE = 4096


def _codeable_concept(
    v: Composite | None,
    ctx: NormalizeContext,
    *,
    concept_map: str | None = None,
    default_system: str | None = None,
) -> dict[str, Any] | None:
    """A CodeableConcept for a CWE-like value, or ``None`` when nothing was sent.

    ``concept_map`` names an IG vocabulary map (``"InterpretationCodes"``): when CWE-1 is in
    it, the mapped FHIR coding comes first and the codings as sent follow. ``default_system``
    is the system of a code sent without CWE-3 (the field's own v2 table).
    """
    if v is None or not v:
        return None
    codings = []
    for positions in _TRIPLETS:
        coding = _coding(v, positions, ctx, default_system if positions[0] == 1 else None)
        if coding is not None:
            codings.append(coding)
    if concept_map and v[1]:
        mapped = vocab.concept(concept_map, v[1])
        if mapped is not None and mapped.system:
            target: dict[str, Any] = {"system": mapped.system, "code": mapped.code}
            if mapped.display:
                target["display"] = mapped.display
            if not any(
                c.get("system") == target["system"] and c.get("code") == target["code"]
                for c in codings
            ):
                codings.insert(0, target)
    concept: dict[str, Any] = {}
    if codings:
        concept["coding"] = codings
    text = v[9]
    if text:
        concept["text"] = text
    elif not any("code" in c for c in codings) and codings:
        # Text only (CWE-2 without a code): FHIR prefers CodeableConcept.text for that.
        concept = {"text": codings[0]["display"]}
    return concept or None


def code_from_map(code: str, concept_map: str) -> str | None:
    """The FHIR code the IG maps v2 ``code`` to (for ``code``-typed elements), or ``None``."""
    if not code:
        return None
    mapped = vocab.concept(concept_map, code)
    return mapped.code if mapped is not None else None
