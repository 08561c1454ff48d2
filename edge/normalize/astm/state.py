"""The state of one ASTM message's conversion: :class:`ASTMConversion`.

The ASTM counterpart of :class:`edge.normalize.conversion.Conversion`: record mappers read
fields through it (so every path names the record occurrence, ``R[2]-3``), mint ids with it
and add resources to it. Ids use the same UUIDv5 scheme as the HL7 v2 side (facility,
resource type, source identifiers), so a Patient identified by the same ``system|value``
gets the same id whichever feed it came from, and a corrected result (R-9 ``C``) updates
the Observation it corrects.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import quote

from edge.astm.profile import DeviceProfile
from edge.astm.records import Message, Record
from edge.normalize.context import NormalizeContext

# The HL7 side's namespace: one id scheme for every feed (see the module docstring).
from edge.normalize.conversion import _NAMESPACE as ID_NAMESPACE
from edge.normalize.conversion import Resource
from edge.normalize.datatypes import dtm

__all__ = ["ASTMConversion"]


class ASTMConversion:
    """Everything the record mappers share while one message is converted. Not thread-safe."""

    def __init__(self, message: Message, raw: bytes, ctx: NormalizeContext,
                 profile: DeviceProfile) -> None:
        self.message = message
        self.ctx = ctx
        self.profile = profile
        self.header = message.header
        sender = self.header.sender
        self.sender_name = sender[0].strip() if sender else ""
        # H-3, else H-14: what the inbox deduplicates on too (edge.intake.astm).
        self.control_id = (self.header.message_control_id.strip()
                           or self.header.timestamp.strip())
        # With neither, the message's own bytes scope its message-level ids.
        self._scope = self.control_id or "sha256:" + hashlib.sha256(raw).hexdigest()[:32]
        self.source = (f"{ctx.source_uri}#{quote(self.control_id, safe='')}"
                       if self.control_id else ctx.source_uri)
        self.resources: dict[tuple[str, str], Resource] = {}
        self.warnings: list[str] = []
        """Paths of optional values dropped as invalid (``R[2]-13: not a valid DTM``)."""
        self.device_ref: str | None = None
        self._occurrence: dict[int, int] = {}
        counts: dict[str, int] = {}
        for record in message.records:
            counts[record.type] = counts.get(record.type, 0) + 1
            self._occurrence[record.position] = counts[record.type]
        self._id_counts: dict[str, int] = {}

    # -- locations and fields --------------------------------------------------------------

    def loc(self, record: Record, n: int | None = None) -> str:
        """``R[2]-3``: the record type, its occurrence among records of that type (shown from
        the second on, as HL7 paths show segment occurrences) and the field number."""
        occurrence = self._occurrence.get(record.position, 1)
        text = f"{record.type}[{occurrence}]" if occurrence > 1 else record.type
        return f"{text}-{n}" if n is not None else text

    def first(self, record: Record, n: int) -> str:
        """The first component of field ``n``, unescaped and stripped."""
        parts = record.components(n)
        return parts[0].strip() if parts else ""

    def datetime(self, record: Record, n: int) -> str | None:
        """Field ``n`` (E1394 6.6.2 ``YYYYMMDD[HHMM[SS]]``) as a FHIR dateTime in the
        facility's zone (DST-correct, :mod:`edge.normalize.datatypes.dtm`); an invalid value
        is dropped with a warning."""
        return dtm.to_datetime(self.first(record, n), self.ctx.zone, self.loc(record, n),
                               warn=self.warnings)

    def instant(self, record: Record, n: int) -> str | None:
        """Field ``n`` as a FHIR instant (needs a time of day: a bare date becomes
        midnight in the facility's zone)."""
        return dtm.to_instant(self.first(record, n), self.ctx.zone, self.loc(record, n),
                              warn=self.warnings)

    # -- ids and resources -----------------------------------------------------------------

    def make_id(self, resource_type: str, *parts: str) -> str:
        """A deterministic id: UUIDv5 of facility, resource type and the source identifiers
        (the HL7 side's :meth:`~edge.normalize.conversion.Conversion.make_id`)."""
        name = "\x1f".join((self.ctx.facility_id, resource_type, *parts))
        return str(uuid.uuid5(ID_NAMESPACE, name))

    def message_scoped_id(self, resource_type: str, *parts: str) -> str:
        """An id for a record with no source identifier: scoped to this message."""
        return self.make_id(resource_type, "astm", self.sender_name, self._scope, *parts)

    def unique_id(self, resource_type: str, *parts: str) -> str:
        """:meth:`make_id`, disambiguated when the same parts occur twice in one message
        (the same test run twice on one specimen)."""
        key = "\x1f".join((resource_type, *parts))
        seen = self._id_counts.get(key, 0)
        self._id_counts[key] = seen + 1
        return self.make_id(resource_type, *parts, *(("#", str(seen)) if seen else ()))

    def add(self, resource: Resource) -> str:
        """Add a resource (the first of a type and id wins); returns ``Type/id``."""
        key = (resource["resourceType"], resource["id"])
        if key not in self.resources:
            resource.setdefault("meta", {})["source"] = self.source
            self.resources[key] = resource
        return f"{key[0]}/{key[1]}"
