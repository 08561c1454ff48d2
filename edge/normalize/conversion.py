"""The state of one message's conversion: :class:`Conversion`.

Segment mappers read fields through it (so every path in an error names the segment
occurrence, ``OBX[2]-5``), mint deterministic ids with it, and add resources to it. It knows
the message's Patient and Encounter once they are mapped, so later segments can refer to them.

Resource ids are UUIDv5 values of the facility and the source identifiers (see
:meth:`Conversion.make_id`), so the same source record always gets the same id: an A08 updates
the Patient the A01 created, and an OBX-11 ``C`` correction updates the Observation it
corrects.
"""

from __future__ import annotations

import uuid
from hashlib import sha1
from typing import Any, Final
from urllib.parse import quote

from edge.er7 import Message, Segment
from edge.normalize.context import NormalizeContext
from edge.normalize.v2 import Composite, repetitions

__all__ = ["Conversion", "Resource"]

Resource = dict[str, Any]
"""A FHIR R4 resource as JSON-ready data."""

DATA_ABSENT_REASON: Final = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
_NAMESPACE: Final = uuid.UUID("5a0f1d64-8a43-5bd8-9b77-3f6c1e0c2a71")
_NAMESPACE_BYTES: Final = _NAMESPACE.bytes
_NULL: Final = '""'


def _uuid5(name: str) -> str:
    """``str(uuid.uuid5(_NAMESPACE, name))`` without the UUID object (RFC 4122 section 4.3:
    SHA-1 of namespace and name, version 5 in the high nibble of octet 6, variant ``10`` in
    the top bits of octet 8). SHA-1 here is a name-based id, not a security function."""
    hashed = sha1(_NAMESPACE_BYTES + name.encode("utf-8"), usedforsecurity=False)
    digest = bytearray(hashed.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Conversion:
    """Everything the mappers share while one message is converted. Not thread-safe."""

    def __init__(self, message: Message, ctx: NormalizeContext, structure: str) -> None:
        self.message = message
        self.ctx = ctx
        self.structure = structure
        self.header = message.header
        self.delimiters = message.delimiters
        self.codec = message.codec
        self.control_id = message.header.control_id
        self.source = f"{ctx.source_uri}#{quote(self.control_id, safe='')}"
        self.resources: dict[tuple[str, str], Resource] = {}
        self.patient_ref: str | None = None
        self.patient_key: str | None = None
        self.encounter_ref: str | None = None
        self.focus: list[str] = []
        self.warnings: list[str] = []
        """Paths of optional values dropped as invalid (``OBX-14: not a valid DTM``)."""
        self._occurrence: dict[int, int] = {}
        counts: dict[str, int] = {}
        for i, seg_id in enumerate(message.segment_ids):
            counts[seg_id] = counts.get(seg_id, 0) + 1
            self._occurrence[i] = counts[seg_id]
        self._id_counts: dict[str, int] = {}
        # Per segment (by index): field number -> its non-empty repetitions (see reps()).
        self._reps: list[dict[int, list[Composite]]] = [{} for _ in self._occurrence]
        # The separators as plain strings: reading a NamedTuple field costs a property call,
        # and reps() runs for every field every mapper reads.
        self._repetition_sep = self.delimiters.repetition
        self._component_sep = self.delimiters.component

    # -- locations -------------------------------------------------------------------------

    def loc(self, segment: Segment, n: int | None = None, component: int | None = None) -> str:
        """``OBX[2]-5.1``: the HL7 path of a segment occurrence, field and component."""
        occurrence = self._occurrence.get(segment.index, 1)
        text = f"{segment.id}[{occurrence}]" if occurrence > 1 else segment.id
        if n is not None:
            text += f"-{n}"
            if component is not None:
                text += f".{component}"
        return text

    # -- reading ---------------------------------------------------------------------------

    def reps(self, segment: Segment, n: int) -> list[Composite]:
        """The non-empty repetitions of field ``n`` (cached: mappers read fields repeatedly)."""
        found = self._reps[segment.index].get(n)
        return self._split_field(segment, n) if found is None else found

    def _split_field(self, segment: Segment, n: int) -> list[Composite]:
        """:func:`edge.normalize.v2.split_repetitions` of field ``n``, cached.

        Inlined here with its common cases first (an empty field; one repetition of one
        component): the same composites with fewer calls, as every mapper read comes here.
        """
        if n < 1:
            raise ValueError("HL7 field numbers are 1-based")
        fields = segment.fields
        raw = fields[n] if n < len(fields) else ""
        found: list[Composite]
        if not raw or raw == _NULL:
            found = []
        elif n <= 2 and segment.id == "MSH":  # MSH-1, MSH-2 are atomic (2.14.9.1-2)
            found = repetitions(segment.field(n), self.delimiters, self.codec)
        elif self._repetition_sep not in raw:
            value = Composite(raw, 0, self.delimiters, self.codec)
            # One component that is not the null is a non-empty value (Composite.__bool__).
            found = [value] if self._component_sep not in raw or value else []
        else:
            found = []
            for rep in raw.split(self._repetition_sep):
                if rep and rep != _NULL:
                    value = Composite(rep, 0, self.delimiters, self.codec)
                    if self._component_sep not in rep or value:
                        found.append(value)
        self._reps[segment.index][n] = found
        return found

    def first(self, segment: Segment, n: int) -> Composite | None:
        found = self._reps[segment.index].get(n)
        if found is None:
            found = self._split_field(segment, n)
        return found[0] if found else None

    def value(self, segment: Segment, n: int, c: int = 1) -> str:
        """Component ``c`` of the first repetition of field ``n``, unescaped and stripped."""
        found = self._reps[segment.index].get(n)
        if found is None:
            found = self._split_field(segment, n)
        return found[0][c] if found else ""

    def text(self, segment: Segment, n: int) -> str:
        """Field ``n`` (first repetition) as one text, for ST/TX/FT fields."""
        value = segment.field(n).text()
        return "" if value == '""' else value.strip()

    # -- ids and resources ----------------------------------------------------------------

    def make_id(self, resource_type: str, *parts: str) -> str:
        """A deterministic id: UUIDv5 of facility, resource type and the source identifiers."""
        return _uuid5("\x1f".join((self.ctx.facility_id, resource_type, *parts)))

    def message_scoped_id(self, resource_type: str, *parts: str) -> str:
        """An id for a record with no source identifier: scoped to this message (MSH-10)."""
        return self.make_id(
            resource_type, "msh-10", self.header.sending_facility, self.control_id, *parts
        )

    def unique_id(self, resource_type: str, *parts: str) -> str:
        """:meth:`make_id`, disambiguated when the same parts occur twice in one message."""
        key = "\x1f".join((resource_type, *parts))
        seen = self._id_counts.get(key, 0)
        self._id_counts[key] = seen + 1
        return self.make_id(resource_type, *parts, *(("#", str(seen)) if seen else ()))

    def add(self, resource: Resource) -> str:
        """Add (or merge into) a resource; returns its reference ``Type/id``.

        A second resource with the same type and id (the same practitioner named twice) keeps
        the first one's content: the ids come from identifiers, so both describe one record.
        """
        resource_type = resource["resourceType"]
        key = (resource_type, resource["id"])
        if key not in self.resources:
            resource.setdefault("meta", {})["source"] = self.source
            self.resources[key] = resource
        return f"{resource_type}/{resource['id']}"

    def absent(self, resource: dict[str, Any], element: str, path: str, reason: str) -> None:
        """Mark a required element the message left empty with a data-absent-reason
        (FHIR R4 extension ``data-absent-reason``, code ``unknown``) and record a warning."""
        # For a primitive pass "_name"; for a complex element the extension is its only child.
        resource[element] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
        self.warnings.append(f"{path}: {reason}")

    def subject(self) -> dict[str, str] | None:
        return {"reference": self.patient_ref} if self.patient_ref else None
