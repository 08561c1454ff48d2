"""What normalization needs to know about the facility: :class:`NormalizeContext`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from edge.config.model import Settings

__all__ = ["NormalizeContext", "UnmappedAuthorityPolicy", "ValidationMode"]

UnmappedAuthorityPolicy = Literal["dead-letter", "facility-uri"]
ValidationMode = Literal["full", "shape", "off"]
"""How FHIR output is validated against the R4B models (:mod:`edge.normalize.validate`):
``full`` validates every resource; ``shape`` validates the first resource of each distinct
shape and then only runs our own value checks for resources of a shape already proven valid;
``off`` runs our own checks only (tests of mapping logic)."""


@dataclass(frozen=True, slots=True)
class NormalizeContext:
    """Facility settings a conversion depends on. Immutable; cheap to share across messages.

    ``identifier_systems`` maps a v2 assigning authority (CX-4.1 namespace id, or CX-4.2
    universal id) to a FHIR ``Identifier.system``. ``unmapped_authority`` decides what happens
    to an authority that is in neither the map nor self-describing (an ISO OID, UUID, URI):
    ``dead-letter`` fails the message with a "config" fault; ``facility-uri`` uses
    :meth:`facility_system`.
    """

    facility_id: str
    timezone: str = "UTC"
    identifier_systems: Mapping[str, str] = field(default_factory=dict)
    unmapped_authority: UnmappedAuthorityPolicy = "facility-uri"
    fallback_codec: str = "latin-1"
    validation: ValidationMode = "shape"
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.timezone))
        object.__setattr__(
            self, "identifier_systems", MappingProxyType(dict(self.identifier_systems))
        )

    def __reduce__(self) -> tuple[type[NormalizeContext], tuple[object, ...]]:
        # Worker processes receive the context by pickle; the read-only mapping is not
        # picklable, so rebuild from the plain values.
        return (
            type(self),
            (
                self.facility_id,
                self.timezone,
                dict(self.identifier_systems),
                self.unmapped_authority,
                self.fallback_codec,
                self.validation,
            ),
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        fallback_codec: str = "latin-1",
        validation: ValidationMode = "shape",
    ) -> NormalizeContext:
        facility = settings.facility
        return cls(
            facility_id=facility.id,
            timezone=facility.timezone,
            identifier_systems=dict(facility.identifier_systems),
            unmapped_authority=facility.unmapped_authority,
            fallback_codec=fallback_codec,
            validation=validation,
        )

    @property
    def source_uri(self) -> str:
        """The URI naming this facility as a source (``meta.source`` before its fragment)."""
        return f"urn:hie-edge:{self.facility_id}"

    def facility_system(self, authority: str) -> str:
        """The facility-scoped ``Identifier.system`` for a local assigning authority."""
        return f"urn:hie-edge:{self.facility_id}:id:{quote(authority, safe='')}"
