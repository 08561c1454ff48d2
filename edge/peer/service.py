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
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from edge.config.model import PeerSettings
from edge.peer.audit import Actor, AuditRecord, Outcome, Pattern, build_audit_event, write_audit
from edge.peer.codes import (
    CLINICAL_TYPES,
    RECEIPT_EXTENSION,
    RECEIPT_PENDING_EXTENSION,
    SERVED_TYPES,
)
from edge.peer.consent import active_provisions
from edge.peer.context import ReplayCache, RequestContext, verify_context
from edge.peer.decision import AccessDecision, Requester, decide
from edge.peer.directory import Peer, cert_thumbprint
from edge.peer.errors import ContextError, PeerError, RequestRefused
from edge.peer.notifications import enqueue
from edge.peer.patients import by_demographics, by_id, by_identifier, patient_ref_of
from edge.peer.schema import JTI
from edge.storage.database import connect
from edge.storage.group_commit import GroupCommitter
from edge.store._tx import read_snapshot
from edge.store.keys import PatientRef, StoreKeys
from edge.store.resources import ResourceStore, ResourceVersion, fhir_instant
from ledger_client.anchorer import LocalAnchor
from ledger_client.errors import LedgerError
from ledger_client.log import MerkleLog
from ledger_client.receipt import make_receipt

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
_MAX_COUNT = 1000
_LATEST_NOTE = ("SELECT note FROM ledger_checkpoints WHERE state = 'anchored' "
                "ORDER BY tree_size DESC LIMIT 1")
_NOTE_AT = "SELECT note FROM ledger_checkpoints WHERE state = 'anchored' AND tree_size = ?"


class _Replayed(PeerError):
    """The durable JWT id table already holds this id (a replay across a restart)."""


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
    status: int
    body: bytes = field(repr=False)
    content_type: str = FHIR_JSON

    def json(self) -> Any:
        return json.loads(self.body)


def _json(status: int, body: Mapping[str, Any]) -> PeerResponse:
    return PeerResponse(status, json.dumps(body, separators=(",", ":")).encode("utf-8"))


def operation_outcome(status: int, code: str, text: str) -> PeerResponse:
    """An OperationOutcome (FHIR R4 3.1.0.8): ``text`` names the rule, never data."""
    return _json(status, {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": code, "diagnostics": text}]})


@dataclass(slots=True)
class _Plan:
    """What a data request found, from one read snapshot."""

    pattern: Pattern
    patient: ResourceVersion | None = None
    ref: PatientRef | None = None
    decision: AccessDecision | None = None
    entries: list[dict[str, Any]] = field(default_factory=list)
    total: int = 0
    classes: tuple[str, ...] = ()
    status: int = 200
    next_offset: int | None = None
    visible: bool = False  # False: answer an empty Bundle (no certain match, or withheld)


@dataclass(slots=True)
class PeerCounters:
    requests: int = 0
    permitted: int = 0
    denied: int = 0
    refused: int = 0
    break_glass: int = 0


class _ReceiptCache:
    """Serialized receipts by (leaf index, anchored tree size, leaf hash). A receipt for one
    leaf against one anchored size never changes, so a patient looked up again within an
    anchoring interval costs no proof reads; a new checkpoint makes new keys. The leaf hash
    in the key ties an entry to the exact record version read. Bounded (it holds salts,
    which are as secret as the records): the oldest half is dropped when full."""

    def __init__(self, limit: int = 20_000) -> None:
        self._limit = limit
        self._items: dict[tuple[int, int, bytes], str] = {}
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, bytes]) -> str | None:
        return self._items.get(key)

    def put(self, key: tuple[int, int, bytes], text: str) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                for old in list(self._items)[: self._limit // 2]:
                    del self._items[old]
            self._items[key] = text


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PeerService:
    """Answers peer requests for our facility ``facility``."""

    def __init__(self, *, facility: str, settings: PeerSettings, db_path: Path,
                 committer: GroupCommitter, keys: StoreKeys,
                 latest_anchored: Callable[[], LocalAnchor | None],
                 on_appended: Callable[[int], None] = lambda size: None,
                 on_notice: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.facility = facility
        self.settings = settings
        self._db_path = db_path
        self._committer = committer
        self._store = ResourceStore(keys)
        self._latest_anchored = latest_anchored
        self._on_appended = on_appended
        self._on_notice = on_notice
        self._clock = clock
        self._replay = ReplayCache(lambda: self._clock().timestamp())
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self.counters = PeerCounters()
        self._receipts = _ReceiptCache()

    def update(self, settings: PeerSettings) -> None:
        """New consent default, roles, limits (SIGHUP); the next request uses them."""
        self.settings = settings

    def close(self) -> None:
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
        finally:
            self._readers.put(conn)

    async def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.to_thread(self._with_reader, fn)

    # -- dispatch -----------------------------------------------------------------------

    async def handle(self, request: PeerRequest) -> PeerResponse:
        """Answer one request; never raises for a peer's fault."""
        self.counters.requests += 1
        if request.method != "GET":
            return operation_outcome(405, "not-supported", "the peer API is read-only")
        parts = [p for p in request.path.split("/") if p]
        try:
            if parts == ["metadata"]:
                return self._capability()
            if len(parts) == 3 and parts[:2] == ["ledger", "checkpoints"]:
                return await self._checkpoint(parts[2])
            route = self._route(parts, request.query)
        except RequestRefused as exc:
            return operation_outcome(exc.status, exc.code, str(exc))
        try:
            context = self._context(request)
        except ContextError as exc:
            self.counters.refused += 1
            await self._audit_refused(request, None, str(exc))
            return operation_outcome(401, "security", str(exc))
        return await self._data(request, context, route)

    def _route(self, parts: list[str], query: Mapping[str, str]) -> tuple[Pattern, str | None,
                                                                          tuple[str, ...]]:
        """(pattern, patient id or None, resource types) for a data request."""
        if parts == ["Patient"]:
            return "patient-query", None, ("Patient",)
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
        anchored = self._latest_anchored()
        now = self._clock()
        requester = Requester(context.facility, context.practitioner, context.role,
                              context.purpose, context.reason)
        plan: _Plan = await self._read(lambda conn: self._plan(
            conn, pattern, patient_id, types, request.query, requester, now, anchored,
            count, offset))
        actor = Actor("peer", context.facility, context.practitioner, context.role,
                      context.purpose, context.reason, request.remote)
        try:
            await self._commit(request, context, actor, plan, now)
        except _Replayed:
            self.counters.refused += 1
            await self._audit_refused(request, context, "request context: replayed")
            return operation_outcome(401, "security", "request context: replayed (jti)")
        if plan.decision is not None and not plan.decision.permitted:
            self.counters.denied += 1
            return operation_outcome(403, "forbidden",
                                     f"access denied: {plan.decision.reason}")
        if plan.status == 404:
            return operation_outcome(404, "not-found", "no such patient")
        if plan.decision is not None:
            self.counters.permitted += 1
            self.counters.break_glass += plan.decision.break_glass
        return _json(200, self._bundle(request, plan, count, offset))

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
        plan.decision = decide(active_provisions(conn, self._store, plan.ref), requester,
                               policy=self.settings.default_consent,
                               break_glass_roles=self.settings.break_glass_roles, now=now)
        if not plan.decision.permitted:
            return plan
        found: list[ResourceVersion] = []
        for rtype in types:
            found += ([plan.patient] if rtype == "Patient"
                      else self._store.search(conn, patient=plan.ref, type=rtype))
        released = [v for v in found if plan.decision.allows(v.resource)]
        # Discovery whose one match releases nothing answers like no match at all.
        plan.visible = bool(released) or patient_id is not None
        plan.total = len(released)
        page = released[offset:offset + count]
        if offset + count < len(released):
            plan.next_offset = offset + count
        merkle = MerkleLog(conn)
        plan.entries = [self._entry(merkle, anchored, v) for v in page]
        plan.classes = tuple(sorted({v.type for v in page}))
        return plan

    def _entry(self, merkle: MerkleLog, anchored: LocalAnchor | None,
               version: ResourceVersion) -> dict[str, Any]:
        entry: dict[str, Any] = {"resource": version.resource, "search": {"mode": "match"}}
        index = version.ledger_index
        if anchored is None or index is None or index >= anchored.checkpoint.tree_size:
            # Stored after the last anchored checkpoint: served, marked as not provable yet.
            entry["extension"] = [{"url": RECEIPT_PENDING_EXTENSION,
                                   "valueCode": "not-anchored-yet"}]
            return entry
        key = (index, anchored.checkpoint.tree_size, version.leaf_hash)
        text = self._receipts.get(key)
        if text is None:
            try:
                receipt = make_receipt(merkle, anchored, index, version.salt)
            except LedgerError:
                log.error("receipt not available", extra={"fields": {"leaf_index": index}})
                entry["extension"] = [{"url": RECEIPT_PENDING_EXTENSION,
                                       "valueCode": "unavailable"}]
                return entry
            text = json.dumps(receipt.to_json(), separators=(",", ":"))
            self._receipts.put(key, text)
        entry["extension"] = [{"url": RECEIPT_EXTENSION, "valueString": text}]
        return entry

    def _bundle(self, request: PeerRequest, plan: _Plan, count: int,
                offset: int) -> dict[str, Any]:
        # A read answers with a one-entry Bundle too: a bare resource has nowhere to carry
        # its receipt.
        params = {k: v for k, v in request.query.items() if k not in ("_offset",)}
        links = [{"relation": "self", "url": self._link(request, params, offset)}]
        if plan.next_offset is not None:
            links.append({"relation": "next",
                          "url": self._link(request, params, plan.next_offset)})
        return {"resourceType": "Bundle", "type": "searchset",
                "total": plan.total if plan.visible else 0,
                "link": links, "entry": plan.entries if plan.visible else []}

    @staticmethod
    def _link(request: PeerRequest, params: Mapping[str, str], offset: int) -> str:
        query = urlencode({**params, "_offset": str(offset)})
        return f"{request.base_url}{request.path}?{query}"

    # -- audit ----------------------------------------------------------------------------

    async def _commit(self, request: PeerRequest, context: RequestContext, actor: Actor,
                      plan: _Plan, now: datetime) -> None:
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
        now_ms = int(now.timestamp() * 1000)

        def op(conn: sqlite3.Connection) -> int:
            if conn.execute(f"SELECT 1 FROM {JTI} WHERE jti = ?",  # noqa: S608
                            (context.jti,)).fetchone():
                raise _Replayed("replayed jti")
            conn.execute(f"DELETE FROM {JTI} WHERE expires_ms < ?", (now_ms - 60_000,))  # noqa: S608
            conn.execute(f"INSERT INTO {JTI} (jti, facility, expires_ms) VALUES (?, ?, ?)",  # noqa: S608
                         (context.jti, context.facility, context.expires * 1000))
            _, size = write_audit(conn, self._store, events, ref)
            if notify:
                enqueue(conn, notice, now_ms)
            return size

        size = await self._committer.run(op)
        self._on_appended(size)
        if notify:
            self._on_notice()

    async def _audit_refused(self, request: PeerRequest, context: RequestContext | None,
                             why: str) -> None:
        actor = Actor("peer", request.peer.id, context.practitioner if context else "unknown",
                      context.role if context else "", context.purpose if context else "",
                      "", request.remote)
        event = build_audit_event(AuditRecord("refused", "4", actor, self._clock(),
                                              decision=why.split(":", 1)[-1].strip()),
                                  facility=self.facility)
        _, size = await self._committer.run(
            lambda conn: write_audit(conn, self._store, [event], None))
        self._on_appended(size)

    # -- metadata and checkpoints -----------------------------------------------------------

    def _capability(self) -> PeerResponse:
        return _json(200, {
            "resourceType": "CapabilityStatement", "status": "active",
            "date": fhir_instant(self._clock()), "kind": "instance", "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [{"mode": "server", "resource": [
                {"type": t, "interaction": [{"code": "search-type"}]
                 + ([{"code": "read"}] if t == "Patient" else [])}
                for t in SERVED_TYPES],
                "operation": [{"name": "everything",
                               "definition": "http://hl7.org/fhir/OperationDefinition/"
                                             "Patient-everything"}]}]})

    async def _checkpoint(self, which: str) -> PeerResponse:
        if which != "latest" and not which.isdigit():
            raise RequestRefused(400, "invalid", "checkpoint size must be a number or latest")

        def read(conn: sqlite3.Connection) -> str | None:
            try:
                row = (conn.execute(_LATEST_NOTE).fetchone() if which == "latest"
                       else conn.execute(_NOTE_AT, (int(which),)).fetchone())
            except sqlite3.OperationalError:  # no anchorer has run here yet
                return None
            return str(row[0]) if row else None

        note = await self._read(read)
        if note is None:
            return operation_outcome(404, "not-found", "no anchored checkpoint of that size")
        return PeerResponse(200, note.encode("utf-8"), "text/plain; charset=utf-8")
