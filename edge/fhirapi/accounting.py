"""``GET /AuditEvent?patient=``: a patient's accounting of disclosures on the local API (issue
8), what the facility's portal shows a patient ("who read what") and hospital IT looks up.

The events are :func:`edge.peer.audit.audit_versions`'s, in its order (``recorded``, then the
order written), the same listing ``hie-edge audit --patient`` prints. Pages follow that order:
the ``_cursor`` of a next link is the last event's position, so a page never repeats or skips
an event while new ones are written (they come after it: ``recorded`` is the time written).

Reading the accounting is itself a local administrative access to the patient's records, so
it is audited as the CLI audits it (IHE BALP PatientQuery, our ``admin-read`` pattern): an
AuditEvent naming the client, the query and how many events were released, sealed under the
patient's key and ledgered, committed through the group committer *before* the page is
answered (nothing leaves unaudited; if the commit fails, the client gets 503 and nothing).
As with the CLI, the listing is taken first: the new event is not in the page it was made
for; it is in the next listing. A patient we do not hold has no key to seal under and no
records to read: the answer is an empty searchset (as for every other ``patient`` search)
and nothing is audited.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from edge.fhirapi.auth import Client
from edge.fhirapi.search import Cursor
from edge.normalize.fhir_json import token
from edge.peer.audit import (
    Actor,
    AuditRecord,
    audit_versions,
    build_audit_event,
    prepare_audit,
    trail_position,
)
from edge.peer.audit_sink import commit_events
from edge.storage.group_commit import GroupCommitter
from edge.store.keys import PatientRef, patient_ref_of
from edge.store.resources import ResourceStore, ResourceVersion

__all__ = ["AccountingAudit", "Page", "Trail", "page_cursor", "patient_key", "read_trail"]

API_ROLE = "api-client"  # the audit role of a local API client (the CLI's is "operator")


def patient_key(conn: sqlite3.Connection, store: ResourceStore,
                patient_id: str) -> tuple[str, PatientRef] | None:
    """The key token and :class:`PatientRef` of ``Patient/{patient_id}``'s records, or None
    when we hold no such Patient (or it has no usable identifier): the one resolution every
    ``patient`` search of the API uses."""
    patient = store.read(conn, "Patient", patient_id)
    ref = patient_ref_of(patient.resource) if patient else None
    if ref is None:
        return None
    return token(ref.system, ref.value), ref


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a trail: the events, whether more follow, how many there are in all."""

    events: list[ResourceVersion]
    more: bool
    total: int


@dataclass(frozen=True, slots=True)
class Trail:
    """A patient's accounting as read: ``ref`` None when we do not hold the patient.
    ``repr`` shows neither the patient (a client may choose ids) nor the events."""

    patient_id: str = field(repr=False)
    ref: PatientRef | None = field(repr=False)
    events: list[ResourceVersion] = field(repr=False)

    def page(self, count: int, cursor: Cursor | None) -> Page:
        """The ``count`` events after ``cursor`` (a position: ``recorded`` and row)."""
        after = [e for e in self.events
                 if cursor is None or trail_position(e) > (cursor.last_updated, cursor.row)]
        return Page(after[:count], len(after) > count, len(self.events))


def read_trail(conn: sqlite3.Connection, store: ResourceStore, patient_id: str) -> Trail:
    """``Patient/{patient_id}``'s AuditEvents (on a reader connection). A stored row that
    fails verification raises :class:`~edge.crypto.errors.IntegrityError`: the whole read
    fails, as every read of the API does."""
    found = patient_key(conn, store, patient_id)
    if found is None:
        return Trail(patient_id, None, [])
    ref = found[1]
    return Trail(patient_id, ref, audit_versions(conn, store, ref))


def page_cursor(event: ResourceVersion) -> Cursor:
    """The ``_cursor`` to page on from ``event``: its trail position (``recorded`` stands
    where other searches put ``meta.lastUpdated``)."""
    recorded, row = trail_position(event)
    return Cursor(recorded, row)


class AccountingAudit:
    """Writes the ``admin-read`` AuditEvent of a read of the accounting, through the daemon's
    group committer (its single writer), and tells ``on_appended`` the log's new size (the
    anchorer's wake-up, as the processing stage and the peer API do)."""

    def __init__(self, committer: GroupCommitter, store: ResourceStore, *, facility: str,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 on_appended: Callable[[int], None] = lambda size: None) -> None:
        self._committer = committer
        self._store = store
        self._facility = facility
        self._clock = clock
        self._on_appended = on_appended
        self.events = 0

    async def record(self, trail: Trail, client: Client, query: str, released: int) -> None:
        """Commit the audit of ``client`` reading ``released`` events of ``trail`` with
        ``query`` (path and query string: it goes only into the encrypted event). Raises
        StorageError when the commit fails (the caller answers 503, releasing nothing)."""
        ref = trail.ref
        assert ref is not None, "only a held patient's accounting is audited"
        actor = Actor("local", self._facility, f"fhir/{client.name}", API_ROLE)
        event = build_audit_event(AuditRecord(
            "admin-read", "0", actor, self._clock(), patient_id=trail.patient_id, query=query,
            data_classes=("AuditEvent",), released=released), facility=self._facility)
        # Prepared (checked, canonical JSON) here: the single writer only seals and appends.
        await commit_events(self._committer, self._store, prepare_audit([event]), ref,
                            self._on_appended)
        self.events += 1
