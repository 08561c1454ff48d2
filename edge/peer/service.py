"""The read-only peer FHIR API (issue 8), independent of HTTP: the listener
(:mod:`adapters.peer.listener`) turns each request into a :class:`PeerRequest` for a member
it has already identified by its certificate, and sends back the :class:`PeerResponse`.

Routes (GET only):

- ``metadata``: a CapabilityStatement (no request context needed);
- ``ledger/checkpoints/{size|latest}``: our signed checkpoint note of that anchored size
  (text), so a peer on the ``local`` backend can obtain our anchored root and check its
  signature with the key its directory holds for us;
- ``Patient?identifier=SYSTEM|VALUE`` or ``Patient?family=&given=&birthdate=&gender=``
  (all four): discovery, released only on exactly one certain match;
- ``Patient/{id}``; ``Patient/{id}/$everything``; ``{Type}?patient={id}`` for the clinical
  types in :data:`edge.peer.codes.CLINICAL_TYPES`; ``_count`` and ``_offset`` page them.

Every data request: the request-context JWT is verified (401 otherwise), the patient's
consents are read and the decision made *now* (every page decides again), withheld
resources are left out of the entries *and* of ``total``; a refusal is 403 with an
OperationOutcome. Before the answer leaves, its AuditEvents (decision, access, disclosure),
the JWT id (replay protection) and the access notification commit in one transaction.
Every entry carries its ledger receipt (``Bundle.entry.extension``, see docs/peer.md).

When storage fails while a request is answered (a read, the request's audit commit, the
audit of a refusal; in a worker process also a daemon that no longer answers), the answer is
503 with an OperationOutcome ``transient`` and ``Retry-After``, never data: a disclosure is
only ever sent after its audit record is durable. One ERROR line names the step. When a stored
row fails verification (:class:`~edge.crypto.errors.IntegrityError`: tampered, swapped,
replayed, its key gone), the answer is 500 with an OperationOutcome ``exception`` and nothing
of the request is released (see :func:`not_served`); one ERROR line names the row.

Cost per request (issue 8's lookup target): the patient's listing of current rows (its
Consent versions with the records asked for) is checked in every request's snapshot by one
statement and read again only when it changed, a consent version is parsed into its rules
once, a row unchanged since it was last opened is not decrypted again, and an entry whose
receipt was built against the current checkpoint is not built again
(:mod:`edge.peer.entries`); the Bundle is joined from the entries' JSON; the AuditEvents are
serialized on the read thread so the single writer only seals, inserts and appends them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import takewhile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from edge.config.model import PeerSettings
from edge.crypto.errors import IntegrityError
from edge.peer.audit import (
    Actor,
    AuditRecord,
    Outcome,
    Pattern,
    build_audit_event,
    prepare_audit,
)
from edge.peer.audit_batch import AuditWrite, Replayed
from edge.peer.audit_sink import AuditSink
from edge.peer.codes import (
    CLINICAL_TYPES,
    SERVED_TYPES,
)
from edge.peer.context import ReplayCache, RequestContext, verify_context
from edge.peer.decision import AccessDecision, Requester, decide
from edge.peer.directory import Peer, cert_thumbprint
from edge.peer.entries import (
    ConsentRules,
    EntryCache,
    Record,
    RecordCache,
    bundle_json,
)
from edge.peer.errors import ContextError, RequestRefused
from edge.peer.patients import by_demographics, by_id, by_identifier
from edge.storage.database import connect
from edge.storage.errors import StorageError, storage_error
from edge.store._tx import read_snapshot
from edge.store.keys import PatientRef, StoreKeys, patient_ref_of
from edge.store.prepared import PreparedRecord
from edge.store.resources import ResourceStore, ResourceVersion, fhir_instant
from ledger_client.anchorer import LocalAnchor, anchored_at, latest_anchored

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_MAX_COUNT = 1000
READ_THREADS = 2
# Retry-After (RFC 9110 10.2.3) on a 503: longer than the 5 s a reader or the writer waits on
# a locked database (edge.storage.database busy_timeout), short enough for an emergency
# lookup. A full disk takes an operator; until then each retry costs us one cheap 503.
RETRY_AFTER_S = 10


@dataclass(frozen=True, slots=True)
class PeerRequest:
    """One HTTP request from an identified member. ``query`` holds the first value of each
    parameter; ``base_url`` is where the request arrived (for Bundle links)."""

    peer: Peer
    cert_der: bytes = field(repr=False)
    method: str
    path: str = field(repr=False)
    query: Mapping[str, str] = field(repr=False)
    authorization: str | None = field(default=None, repr=False)
    remote: str | None = None
    base_url: str = ""


@dataclass(frozen=True, slots=True)
class PeerResponse:
    """``headers``: besides Content-Type (``content_type``), e.g. Retry-After on a 503."""

    status: int
    body: bytes = field(repr=False)
    content_type: str = FHIR_JSON
    headers: Mapping[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


def _json(status: int, body: Mapping[str, Any]) -> PeerResponse:
    return PeerResponse(status, json.dumps(body, separators=(",", ":")).encode("utf-8"))


def operation_outcome(status: int, code: str, text: str) -> PeerResponse:
    """An OperationOutcome (FHIR R4 3.1.0.8): ``text`` names the rule, never data."""
    return _json(status, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]})


def unavailable(text: str) -> PeerResponse:
    """503 for a failure of our storage, not of the request: FHIR R4 http.html lets any
    error status carry an OperationOutcome, and issue type ``transient`` (valueset-issue-type:
    "the system receiving the message may be able to resubmit the same content once an
    underlying issue is resolved") says what a peer can do about it: ask again later."""
    answer = operation_outcome(503, "transient", text)
    return PeerResponse(answer.status, answer.body, answer.content_type,
                        {"Retry-After": str(RETRY_AFTER_S)})


def not_served() -> PeerResponse:
    """500 for a stored row that failed verification while the request was answered. Issue
    type ``exception`` (FHIR R4 valueset-issue-type: "An unexpected internal error has
    occurred"): the fault is ours and asking again will not help until an operator repairs
    the store, so neither ``transient`` with a Retry-After nor a code blaming the request
    fits. The text is the same whatever failed and where: the peer learns that the request
    could not be served, nothing about the state of our store."""
    return operation_outcome(500, "exception", "the request could not be served; nothing was "
                             "released")


@dataclass(slots=True)
class _Plan:
    """What a data request found, from one read snapshot."""

    pattern: Pattern
    patient: ResourceVersion | None = None
    ref: PatientRef | None = None
    decision: AccessDecision | None = None
    entries: list[bytes] = field(default_factory=list)  # each entry's JSON
    total: int = 0
    classes: tuple[str, ...] = ()
    status: int = 200
    next_offset: int | None = None
    matches: int | None = None  # entries that are matches (the first); None: all of them


@dataclass(frozen=True, slots=True)
class _Audit:
    """What a data request writes besides its JWT id: its AuditEvents (prepared), the
    patient whose key seals them, and the access notice (None when none is due)."""

    events: list[PreparedRecord]
    patient: PatientRef | None
    notice: dict[str, Any] | None = field(repr=False)


@dataclass(slots=True)
class PeerCounters:
    """Requests, and each by the answer it got (``break_glass``: of the permitted). Every
    field reaches ``/status``: :meth:`edge.peer.serving.PeerServer.counters`, summed over
    the workers by :mod:`edge.peer.workers`, shown by :mod:`edge.peer.runtime`."""

    requests: int = 0
    permitted: int = 0
    denied: int = 0
    refused: int = 0
    break_glass: int = 0
    unavailable: int = 0  # answered 503: storage (or, in a worker, the daemon) failed
    integrity_failures: int = 0  # answered 500: a stored row failed verification


def _is_consent(record: Record) -> bool:
    return record.type == "Consent"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PeerService:
    """Answers peer requests for our facility ``facility``."""

    def __init__(self, *, facility: str, settings: PeerSettings, db_path: Path,
                 keys: StoreKeys, audit: AuditSink, read_threads: int = READ_THREADS,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.facility = facility
        self.settings = settings
        self._db_path = db_path
        self._store = ResourceStore(keys)
        self._audit_sink = audit
        self._clock = clock
        self._replay = ReplayCache(lambda: self._clock().timestamp())
        # In the daemon's own process reads run on a small pool of their own, off the event
        # loop that also acknowledges HL7 messages: the Python part of a read holds the GIL,
        # so more threads than cores only add GIL hand-offs; two let one thread run Python
        # while the other waits on SQLite (which releases the GIL). A worker process serves
        # nothing else and reads on its event loop (``read_threads=0``): its reads are short
        # (rows and entries are cached, the pages are hot), and handing each to a thread
        # cost more than the read: in a worker, ThreadPoolExecutor.submit and the future's
        # hand-back were ~15% of the samples holding the GIL, and reading on the loop took
        # bench/peer.py at 4 clients from 209-266 to 281-328 lookups/s (3 runs each).
        self._pool = (ThreadPoolExecutor(max_workers=read_threads, thread_name_prefix="peer-read")
                      if read_threads else None)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self.counters = PeerCounters()
        self._entries = EntryCache()
        self._rules = ConsentRules()
        self._records = RecordCache(on_forget=self._forget_leaves)

    def _forget_leaves(self, leaves: set[bytes]) -> None:
        """What was made of erased record versions (see RecordCache.forget_vanished)."""
        self._entries.forget_leaves(leaves)
        self._rules.forget_leaves(leaves)

    def update(self, settings: PeerSettings) -> None:
        """New consent default, roles, limits (SIGHUP); the next request uses them."""
        self.settings = settings

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        for conn in self._all_readers:
            conn.close()
        self._all_readers.clear()

    # -- reading ------------------------------------------------------------------------

    def _with_reader(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = connect(self._db_path, readonly=True)
            self._all_readers.append(conn)
        try:
            with read_snapshot(conn):
                return fn(conn)
        except sqlite3.DatabaseError as exc:
            # Translated at the boundary (design: one error root per package).
            raise storage_error(exc, "read") from None
        finally:
            self._readers.put(conn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn``'s result, in one snapshot (on a reader thread when there is a pool).
        Raises StorageError."""
        if self._pool is None:
            return self._with_reader(fn)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._with_reader,
                                                                fn)

    # -- dispatch -----------------------------------------------------------------------

    async def handle(self, request: PeerRequest) -> PeerResponse:
        """Answer one request; never raises for a peer's fault, nor for a StorageError
        (answered 503, see :func:`unavailable`), nor for an IntegrityError (500, see
        :func:`not_served`)."""
        self.counters.requests += 1
        if request.method != "GET":
            return operation_outcome(405, "not-supported", "the peer API is read-only")
        parts = [p for p in request.path.split("/") if p]
        try:
            if parts == ["metadata"]:
                return self._capability()
            if len(parts) == 3 and parts[:2] == ["ledger", "checkpoints"]:
                return await self._checkpoint(request, parts[2])
            route = self._route(parts, request.query)
        except RequestRefused as exc:
            return operation_outcome(exc.status, exc.code, str(exc))
        try:
            context = self._context(request)
        except ContextError as exc:
            return await self._refuse(request, None, str(exc))
        return await self._data(request, context, route)

    def _unavailable(self, request: PeerRequest, step: str, exc: StorageError,
                     text: str) -> PeerResponse:
        """Count and log a storage failure at ``step``, and answer 503. The line names the
        step, the peer and the StorageError (its operation and SQLite's reason, which name
        tables and conditions, never values); no traceback: the cause is the environment's,
        not a bug to debug, and the path (which holds patient ids) is left out."""
        self.counters.unavailable += 1
        log.error("peer request not answered: storage failed", extra={"fields": {
            "step": step, "peer": request.peer.id, "operation": exc.operation,
            "reason": exc.reason}})
        return unavailable(text)

    def _not_served(self, request: PeerRequest, context: RequestContext | None, step: str,
                    exc: IntegrityError) -> PeerResponse:
        """Count and log a stored row that failed verification at ``step``, and answer 500.
        The line locates the row as :meth:`IntegrityError.log_fields` does (table, row number,
        type, version, key id, the failed check): no logical id, no path (both may name the
        patient), no traceback (the cause is the stored bytes, not our code; ``hie-edge
        verify`` examines them). A data request's JWT id is forgotten, as for a 503: nothing
        of the request was committed."""
        if context is not None:
            self._replay.forget(context.jti)
        self.counters.integrity_failures += 1
        log.error("peer request not served: a stored record failed verification",
                  extra={"fields": {"step": step, "peer": request.peer.id,
                                    **exc.log_fields()}})
        return not_served()

    def _route(self, parts: list[str], query: Mapping[str, str]) -> tuple[Pattern, str | None,
                                                                          tuple[str, ...]]:
        """(pattern, patient id or None, resource types) for a data request."""
        if parts == ["Patient"]:
            if "_revinclude" not in query:
                return "patient-query", None, ("Patient",)
            # Discovery and the records in one request (FHIR R4 search 3.1.1.5.4): one round
            # trip, one request context, one consent decision and one set of AuditEvents
            # where discovery then $everything take two of each. Only the wildcard: every
            # served type refers to its patient, and a peer asking for some types searches
            # them by patient= once it knows the id.
            if query["_revinclude"] != "*":
                raise RequestRefused(400, "not-supported",
                                     "_revinclude: only * (every served type) is supported")
            return "patient-query", None, SERVED_TYPES
        if len(parts) == 2 and parts[0] == "Patient":
            return "patient-read", parts[1], ("Patient",)
        if len(parts) == 3 and parts[0] == "Patient" and parts[2] == "$everything":
            return "operation", parts[1], SERVED_TYPES
        if len(parts) == 1 and parts[0] in CLINICAL_TYPES:
            patient = query.get("patient", "").removeprefix("Patient/")
            if not patient:
                raise RequestRefused(400, "required", "searches need patient=")
            return "patient-query", patient, (parts[0],)
        raise RequestRefused(404, "not-found", "no such route on the peer API")

    def _context(self, request: PeerRequest) -> RequestContext:
        auth = request.authorization or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ContextError("request context: Authorization: Bearer <JWT> required")
        return verify_context(token.strip(), public_key=request.peer.public_key,
                              issuer=request.peer.id, audience=self.facility,
                              cert_thumbprint=cert_thumbprint(request.cert_der),
                              max_age_s=self.settings.jwt_max_age_s, replay=self._replay,
                              now=self._clock().timestamp())

    # -- data requests --------------------------------------------------------------------

    def _paging(self, query: Mapping[str, str]) -> tuple[int, int]:
        try:
            count = int(query.get("_count", self.settings.page_size))
            offset = int(query.get("_offset", 0))
        except ValueError:
            raise RequestRefused(400, "invalid", "_count and _offset must be integers") from None
        if not 1 <= count <= _MAX_COUNT or offset < 0:
            raise RequestRefused(400, "invalid", f"_count must be 1..{_MAX_COUNT}, _offset >= 0")
        return count, offset

    async def _data(self, request: PeerRequest, context: RequestContext,
                    route: tuple[Pattern, str | None, tuple[str, ...]]) -> PeerResponse:
        pattern, patient_id, types = route
        try:
            count, offset = self._paging(request.query)
            if pattern == "patient-query" and patient_id is None:
                self._discovery_params(request.query)
        except RequestRefused as exc:
            self._replay.forget(context.jti)
            return operation_outcome(exc.status, exc.code, str(exc))
        now = self._clock()
        requester = Requester(context.facility, context.practitioner, context.role,
                              context.purpose, context.reason)
        actor = Actor("peer", context.facility, context.practitioner, context.role,
                      context.purpose, context.reason, request.remote)

        def work(conn: sqlite3.Connection) -> tuple[_Plan, _Audit]:
            # The checkpoint is read in the same snapshot as the records: every receipt built
            # below proves against a root this snapshot's log contains.
            anchored = latest_anchored(conn, self.facility)
            plan = self._plan(conn, pattern, patient_id, types, request.query, requester, now,
                              anchored, count, offset)
            # The AuditEvents are built and serialized here, off the single writer: its
            # operation below only seals, inserts and appends.
            return plan, self._audit(request, context, actor, plan, now)

        try:
            plan, audit = await self._read(work)
        except StorageError as exc:
            return self._retry_later(request, context, "read", exc)
        except IntegrityError as exc:
            # The whole request fails, even when the row is one entry of a page whose others
            # verify: a Bundle silently missing a record (the allergy, the last lab result)
            # would mislead the clinician reading it, and serving the rest with a warning
            # tells the peer which of the patient's records we hold but cannot show.
            # Not audited, as a read failing with a StorageError is not: nothing was
            # disclosed, so there is no disclosure to account for, the AuditEvents would be
            # sealed under a patient key taken from records that may be the damaged ones, and
            # the ERROR line and the integrity_failures counter put the event on record.
            return self._not_served(request, context, "read", exc)
        try:
            await self._commit(context, audit, now)
        except Replayed:
            return await self._refuse(request, context, "request context: replayed",
                                      "request context: replayed (jti)")
        except StorageError as exc:
            # Not durable, so nothing is released (the Bundle is built only below).
            return self._retry_later(request, context, "audit", exc)
        except IntegrityError as exc:
            # The writer could not open the key that seals the AuditEvents: not durable
            # either, so nothing is released.
            return self._not_served(request, context, "audit", exc)
        if plan.decision is not None and not plan.decision.permitted:
            self.counters.denied += 1
            return operation_outcome(403, "forbidden",
                                     f"access denied: {plan.decision.reason}")
        if plan.status == 404:
            return operation_outcome(404, "not-found", "no such patient")
        if plan.decision is not None:
            self.counters.permitted += 1
            self.counters.break_glass += plan.decision.break_glass
        return PeerResponse(200, self._bundle(request, plan, count, offset))

    def _retry_later(self, request: PeerRequest, context: RequestContext, step: str,
                     exc: StorageError) -> PeerResponse:
        """503 for a data request. Its JWT id is forgotten here so the peer can send the same
        request again, as Retry-After invites: the durable ``peer_jti`` table still refuses
        it if its write did commit after all (a worker whose daemon died after the commit,
        before the answer), so a retry never discloses without its audit record."""
        self._replay.forget(context.jti)
        return self._unavailable(request, step, exc,
                                 "the request could not be answered now (storage unavailable); "
                                 "nothing was released; try again later")

    @staticmethod
    def _discovery_params(query: Mapping[str, str]) -> None:
        if "identifier" in query:
            if "|" not in query["identifier"]:
                raise RequestRefused(400, "invalid", "identifier must be SYSTEM|VALUE")
            return
        missing = [k for k in ("family", "given", "birthdate", "gender") if not query.get(k)]
        if missing:
            raise RequestRefused(400, "required", "discovery needs identifier=SYSTEM|VALUE or "
                                 "all of family, given, birthdate, gender")

    def _plan(self, conn: sqlite3.Connection, pattern: Pattern, patient_id: str | None,
              types: tuple[str, ...], query: Mapping[str, str], requester: Requester,
              now: datetime, anchored: LocalAnchor | None, count: int,
              offset: int) -> _Plan:
        plan = _Plan(pattern)
        if patient_id is not None:
            plan.patient = by_id(conn, self._store, patient_id)
        elif "identifier" in query:
            plan.patient = by_identifier(conn, self._store, query["identifier"])
        else:
            plan.patient = by_demographics(conn, self._store, family=query["family"],
                                           given=query["given"], birthdate=query["birthdate"],
                                           gender=query["gender"])
        plan.ref = patient_ref_of(plan.patient.resource) if plan.patient else None
        if plan.patient is None or plan.ref is None:
            # Discovery without one certain match is an empty result; a named patient that
            # is not here is 404.
            plan.status = 404 if patient_id is not None else 200
            plan.patient = None
            return plan
        # The patient's current Consent versions and the records the request may release,
        # listed together: whether the patient's current rows changed is read in this
        # snapshot on every request, and the listing and the opened rows are reused while
        # they did not (see edge.peer.entries). A patient found has a key, so an indexer.
        indexer = self._store.keys.existing_indexer(conn)
        clinical = [t for t in types if t != "Patient"]
        listed = [] if indexer is None else self._records.current(
            conn, self._store, indexer.patient_key(plan.ref.system, plan.ref.value),
            ("Consent", *clinical))
        consents = list(takewhile(_is_consent, listed))  # listed in the order of the types
        plan.decision = decide(self._rules.active(consents), requester,
                               policy=self.settings.default_consent,
                               break_glass_roles=self.settings.break_glass_roles, now=now)
        if not plan.decision.permitted:
            return plan
        found: list[Record] = [Record.of(plan.patient)] if "Patient" in types else []
        found += listed[len(consents):]
        # The decision is this request's; what it reads of a record is fixed per version.
        releases: dict[tuple[str, frozenset[str], frozenset[str]], bool] = {}
        released = []
        for record in found:
            facts = (record.type, record.categories, record.labels)
            allowed = releases.get(facts)
            if allowed is None:
                allowed = releases[facts] = plan.decision.releases(*facts)
            if allowed:
                released.append(record)
        # Discovery whose match is withheld answers like no match at all, with
        # _revinclude too: records are never released without the Patient they belong to.
        # The match, when released, is the first (``found`` starts with it).
        # Left empty, the plan answers an empty Bundle.
        if patient_id is None and not (released and released[0].type == "Patient"):
            return plan
        # Bundle.total counts the matches, never the included records (FHIR R4 3.1.1.5.4).
        includes = patient_id is None and len(types) > 1
        plan.total = 1 if includes else len(released)
        page = released[offset:offset + count]
        if offset + count < len(released):
            plan.next_offset = offset + count
        plan.entries = self._entries.entries(page, anchored, conn)
        if includes:
            # Every entry after the match was included for referring to it. _count bounds
            # the entries of a page, included ones counted: pages stay the size a peer asks
            # for, however many records the one match has.
            plan.matches = 1 if offset == 0 else 0
        plan.classes = tuple(sorted({r.type for r in page}))
        return plan

    def _bundle(self, request: PeerRequest, plan: _Plan, count: int, offset: int) -> bytes:
        # A read answers with a one-entry Bundle too: a bare resource has nowhere to carry
        # its receipt. The entries arrive as JSON already (edge.peer.entries).
        params = {k: v for k, v in request.query.items() if k not in ("_offset",)}
        links = [{"relation": "self", "url": self._link(request, params, offset)}]
        if plan.next_offset is not None:
            links.append({"relation": "next",
                          "url": self._link(request, params, plan.next_offset)})
        return bundle_json({"resourceType": "Bundle", "type": "searchset",
                            "total": plan.total, "link": links},
                           plan.entries, matches=plan.matches)

    @staticmethod
    def _link(request: PeerRequest, params: Mapping[str, str], offset: int) -> str:
        query = urlencode({**params, "_offset": str(offset)})
        return f"{request.base_url}{request.path}?{query}"

    # -- audit ----------------------------------------------------------------------------

    def _audit(self, request: PeerRequest, context: RequestContext, actor: Actor,
               plan: _Plan, now: datetime) -> _Audit:
        """The request's AuditEvents (consent decision, access, disclosure), prepared to
        store, and its access notice when one is due."""
        decision = plan.decision
        patient_id = plan.patient.id if plan.patient else None
        query = f"{request.path}?{urlencode(dict(request.query))}"
        events: list[dict[str, Any]] = []
        break_glass = bool(decision and decision.break_glass)
        if decision is not None:
            events.append(build_audit_event(AuditRecord(
                "consent-decision", "0" if decision.permitted else "4", actor, now,
                patient_id=patient_id, decision=decision.reason, basis=decision.basis,
                consent_ids=decision.consent_ids, break_glass=break_glass),
                facility=self.facility))
        outcome: Outcome = "0" if decision is None or decision.permitted else "4"
        released = len(plan.entries)
        events.append(build_audit_event(AuditRecord(
            plan.pattern, outcome, actor, now, patient_id=patient_id, query=query,
            data_classes=plan.classes, released=released,
            decision=decision.reason if decision else None, break_glass=break_glass),
            facility=self.facility))
        disclosed = released > 0
        if disclosed:
            events.append(build_audit_event(AuditRecord(
                "disclosure", "0", actor, now, patient_id=patient_id,
                data_classes=plan.classes, released=released, break_glass=break_glass),
                facility=self.facility))
        notify = self.settings.webhook is not None and (disclosed or break_glass) \
            and patient_id is not None
        notice = {"type": "access-notification", "source": self.facility,
                  "recipient": context.facility, "at": fhir_instant(now),
                  "purpose": context.purpose, "data_classes": list(plan.classes),
                  "break_glass": break_glass, "patient": f"Patient/{patient_id}",
                  "audit_event": events[-1]["id"]}
        ref = plan.ref if plan.patient is not None else None
        return _Audit(prepare_audit(events), ref, notice if notify else None)

    async def _commit(self, context: RequestContext, audit: _Audit, now: datetime) -> None:
        """Commit the request's JWT id, AuditEvents and notice (with other requests' that wait
        then: :mod:`edge.peer.audit_batch`), before the answer leaves. Raises Replayed."""
        await self._audit_sink.write(AuditWrite(
            context.jti, context.facility, context.expires * 1000,
            int(now.timestamp() * 1000), audit.events, audit.patient, audit.notice))

    async def _refuse(self, request: PeerRequest, context: RequestContext | None, why: str,
                      answer: str | None = None) -> PeerResponse:
        """401 for a bad or replayed request context, once its refusal is audited; 503 when
        that audit cannot be stored: a refusal is a security event, and it is answered as
        refused only once it is on record. Counted by the answer given, as the others are."""
        try:
            await self._audit_refused(request, context, why)
        except StorageError as exc:
            return self._unavailable(request, "refusal audit", exc,
                                     "the request could not be answered now (storage "
                                     "unavailable); try again later")
        except IntegrityError as exc:  # the SYSTEM key that seals it failed to unwrap
            return self._not_served(request, None, "refusal audit", exc)
        self.counters.refused += 1
        return operation_outcome(401, "security", answer or why)

    async def _audit_refused(self, request: PeerRequest, context: RequestContext | None,
                             why: str) -> None:
        actor = Actor("peer", request.peer.id, context.practitioner if context else "unknown",
                      context.role if context else "", context.purpose if context else "",
                      "", request.remote)
        event = build_audit_event(AuditRecord("refused", "4", actor, self._clock(),
                                              decision=why.split(":", 1)[-1].strip()),
                                  facility=self.facility)
        await self._audit_sink.refused(prepare_audit([event]))

    # -- metadata and checkpoints -----------------------------------------------------------

    def _capability(self) -> PeerResponse:
        return _json(200, {
            "resourceType": "CapabilityStatement", "status": "active",
            "date": fhir_instant(self._clock()), "kind": "instance", "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "resource": [
                {"type": t, "interaction": [{"code": "search-type"}]
                 + ([{"code": "read"}] if t == "Patient" else [])}
                | ({"searchRevInclude": ["*"]} if t == "Patient" else {})
                for t in SERVED_TYPES],
                "operation": [{"name": "everything",
                               "definition": "http://hl7.org/fhir/OperationDefinition/"
                                             "Patient-everything"}]}]})

    async def _checkpoint(self, request: PeerRequest, which: str) -> PeerResponse:
        if which != "latest" and not which.isdigit():
            raise RequestRefused(400, "invalid", "checkpoint size must be a number or latest")

        def read(conn: sqlite3.Connection) -> str | None:
            # A missing table reads as "no checkpoint" (no anchorer has run here yet); a
            # locked or unreadable database raises, a 503 below, never a misleading 404.
            found = (latest_anchored(conn, self.facility) if which == "latest"
                     else anchored_at(conn, self.facility, int(which)))
            return found.note if found is not None else None

        try:
            note = await self._read(read)
        except StorageError as exc:
            return self._unavailable(request, "checkpoint read", exc,
                                     "the checkpoint could not be read now (storage "
                                     "unavailable); try again later")
        if note is None:
            return operation_outcome(404, "not-found", "no anchored checkpoint of that size")
        return PeerResponse(200, note.encode("utf-8"), "text/plain; charset=utf-8")
