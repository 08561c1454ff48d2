"""The FHIR R4 REST API: one :class:`FHIRRequest` in, one :class:`FHIRResponse` out.

The aiohttp shell (:mod:`adapters.fhir.server`) only moves requests and responses; everything
the API decides is here (design.md, "examples to follow" 2-3).

Writes take the path of every record (design.md, "The path of a record"): the request becomes
an intake envelope (:func:`edge.normalize.fhir_json.envelope`: the resources plus the ids the
server assigned and the patient keys it resolved), committed to the inbox as one row
(``message_type`` ``FHIR^create``, ``FHIR^update``, ``FHIR^transaction``), then processed at
once by the processing stage (validation in a worker, store + ledger leaves in one
transaction), and answered from what was stored. A transaction is one row and one processing
transaction: any entry failing stores nothing. A batch is split into one row per entry.

Reads (read, vread, history, search) open the store through read-only connections in threads.
``GET /AuditEvent?patient=`` is the patient's accounting of disclosures, audited as it is read
(:mod:`.accounting`): its audit record is the API's one write outside the inbox, committed
through the group committer like every write.

Status codes (R4 3.1.0): 400 unreadable or invalid content (naming the FHIR path), 401 no or
bad credentials, 404 unknown type or resource, 405 an interaction not supported, 409 a
conditional create raced another, 412 ``If-Match`` not the current version or an
``If-None-Exist`` with several matches, 413 body too large, 415 not JSON, 422 business rules
(a Patient without an identifier, a record for a Patient we do not hold, two patients in one
transaction), 500 a stored record failed verification (``exception``; nothing of the request
is returned: :mod:`edge.store.resources` refuses the row), 503 storage or processing trouble
(the request may still be applied later: the inbox has it; retry with
``If-Match``/``If-None-Exist`` to stay idempotent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlencode

from edge.config.model import FHIRSettings
from edge.crypto.errors import IntegrityError
from edge.er7.header import Header
from edge.fhirapi.accounting import AccountingAudit, page_cursor, patient_key, read_trail
from edge.fhirapi.auth import Authenticator, Client
from edge.fhirapi.capability import capability_statement
from edge.fhirapi.outcome import FHIRAPIError, operation_outcome
from edge.fhirapi.preconditions import current_version
from edge.fhirapi.search import Cursor, ParsedSearch, parse_search
from edge.inbox.store import Arrival, InboxStore
from edge.normalize.fhir_json import (
    SUPPORTED_TYPES,
    envelope,
    http_status_of,
    mark_upstream,
    patient_key_of,
    patient_references,
)
from edge.processing.processor import Processed, Processor
from edge.storage.database import connect
from edge.storage.errors import StorageError
from edge.store.resources import BASE_COLUMNS, CURRENT_ONLY, ResourceStore, ResourceVersion
from edge.store.schema import DATA_KEYS, RESOURCES
from edge.uuid7 import uuid7

log = logging.getLogger(__name__)

LISTENER: Final = "fhir"  # the inbox ``listener`` of everything the API and sources bring
FHIR_JSON: Final = "application/fhir+json"
_SCAN_CHUNK: Final = 200


@dataclass(frozen=True, slots=True)
class FHIRRequest:
    """An HTTP request as the API sees it. ``path`` is relative to the FHIR base (no leading
    slash); header names are lower case; ``base_url`` is how the client reached us (for
    links); ``client_cert`` the subject CN of a client certificate TLS verified."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    base_url: str = ""
    peer: str = ""
    peer_ip: str = ""
    client_cert: str | None = None

    def __repr__(self) -> str:  # never the body or query values (PHI)
        return f"FHIRRequest({self.method} {self.path.split('/')[0]!r}, size={len(self.body)})"


@dataclass(frozen=True, slots=True)
class FHIRResponse:
    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"FHIRResponse({self.status})"


class SourceHook(Protocol):
    """An upstream source as the notification endpoint sees it (see :mod:`.poller`)."""

    async def notify(self, references: Sequence[str]) -> int: ...


Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


def _etag(version: int) -> str:
    return f'W/"{version}"'


def _http_date(instant: str) -> str:
    moment = datetime.fromisoformat(instant.replace("Z", "+00:00"))
    return format_datetime(moment, usegmt=True)


def _version_headers(base: str, item: ResourceVersion) -> dict[str, str]:
    return {"ETag": _etag(item.version), "Last-Modified": _http_date(item.last_updated),
            "Location": f"{base}/{item.type}/{item.id}/_history/{item.version}"}


def _without_volatile_meta(resource: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in (resource.get("meta") or {}).items()
            if k not in ("versionId", "lastUpdated")}
    out = {k: v for k, v in resource.items() if k != "meta"}
    if meta:
        out["meta"] = meta
    return out


class FHIRService:
    """The API's logic; see the module doc. ``sources`` are the upstream sources by name (for
    the notification endpoint)."""

    def __init__(self, settings: FHIRSettings, *, db_path: Path, inbox: InboxStore,
                 processor: Processor, store: ResourceStore, accounting: AccountingAudit,
                 clock: Clock = _now,
                 new_id: Callable[[], str] = lambda: str(uuid7())) -> None:
        self.settings = settings
        self._db_path = db_path
        self._inbox = inbox
        self._processor = processor
        self._store = store
        self._accounting = accounting
        self._clock = clock
        self._new_id = new_id
        self._auth = Authenticator(settings)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self.sources: dict[str, SourceHook] = {}
        self.counts = {"requests": 0, "writes": 0, "errors": 0, "integrity_failures": 0}
        self._published = _now().isoformat(timespec="seconds")

    def close(self) -> None:
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                return

    # -- dispatch ---------------------------------------------------------------------

    async def handle(self, request: FHIRRequest) -> FHIRResponse:
        """Answer one request; never raises (every failure is an OperationOutcome)."""
        self.counts["requests"] += 1
        try:
            parts = [p for p in request.path.split("/") if p]
            if request.method == "GET" and parts == ["metadata"]:
                return self._json(200, capability_statement(
                    request.base_url, mutual_tls=self._mutual_tls,
                    bearer=self.settings.tokens_file is not None, published=self._published))
            client = self._auth.authenticate(
                authorization=request.headers.get("authorization"), peer_ip=request.peer_ip,
                cert_subject=request.client_cert)
            return await self._dispatch(request, parts, client)
        except Exception as exc:  # noqa: BLE001 - every failure is answered (_failed)
            return self._failed(request, exc)

    def _failed(self, request: FHIRRequest, exc: Exception) -> FHIRResponse:
        """The answer to a request, or to one entry of a batch, that raised ``exc``: its
        OperationOutcome, counted and logged (by type and reason: no PHI in the messages)."""
        if isinstance(exc, IntegrityError):
            return self._not_verified(request, exc)
        self.counts["errors"] += 1
        if isinstance(exc, FHIRAPIError):
            if exc.status >= 500:
                log.warning("FHIR request failed", extra={"fields": {
                    "method": request.method, "status": exc.status, "reason": exc.reason}})
            return self._json(exc.status, exc.outcome(), headers=exc.headers)
        if isinstance(exc, StorageError):
            log.error("FHIR request: storage failed", extra={"fields": {
                "method": request.method, "reason": exc.reason}})
            return self._json(503, operation_outcome(503, "storage unavailable; retry later"),
                              headers={"Retry-After": "5"})
        log.error("FHIR request: internal error", extra={"fields": {
            "method": request.method, "error": type(exc).__name__}})
        return self._json(500, operation_outcome(500, "internal error"))

    def _not_verified(self, request: FHIRRequest, exc: IntegrityError) -> FHIRResponse:
        """500 for a stored row that failed verification: the whole request fails (a search
        page or a history without one of its records would mislead). Not "internal error":
        the fault is the stored bytes (IntegrityError's fault is "environment"), and the
        ERROR line says where they are (:meth:`IntegrityError.log_fields`: the row number,
        never the logical id, which a client may have chosen), for ``hie-edge verify``. No
        traceback: there is no bug of ours to debug."""
        self.counts["errors"] += 1
        self.counts["integrity_failures"] += 1
        log.error("FHIR request not served: a stored record failed verification",
                  extra={"fields": {"method": request.method, **exc.log_fields()}})
        return self._json(500, operation_outcome(
            500, "a stored record failed verification; nothing was returned"))

    @property
    def _mutual_tls(self) -> bool:
        return self.settings.tls is not None and self.settings.tls.client_ca is not None

    async def _dispatch(self, request: FHIRRequest, parts: list[str],
                        client: Client) -> FHIRResponse:
        method = request.method
        if parts and parts[0] == "subscription-notification":
            if method != "POST" or len(parts) != 2:
                raise FHIRAPIError(405, "", "POST subscription-notification/SOURCE")
            return await self._notification(parts[1], request)
        if not parts:
            if method != "POST":
                raise FHIRAPIError(405, "", "only POST of a transaction or batch Bundle here")
            return await self._bundle(request, client)
        rtype = parts[0]
        if rtype == "AuditEvent":
            return await self._audit_events(request, parts, client)
        if rtype not in SUPPORTED_TYPES:
            raise FHIRAPIError(404, "", "resource type not supported (see /metadata)")
        if len(parts) == 1 and method == "GET":
            return await self._search(request, rtype, request.query)
        if parts[1:] == ["_search"] and method == "POST":
            return await self._search(request, rtype, _search_parameters(request))
        if len(parts) == 1 and method == "POST":
            return await self._create(request, rtype, client)
        if len(parts) == 2 and method == "PUT":
            return await self._update(request, rtype, parts[1], client)
        if len(parts) == 2 and method == "GET":
            return await self._read(request, rtype, parts[1])
        if len(parts) == 3 and parts[2] == "_history" and method == "GET":
            return await self._history(request, rtype, parts[1])
        if len(parts) == 4 and parts[2] == "_history" and method == "GET":
            return await self._vread(request, rtype, parts[1], parts[3])
        raise FHIRAPIError(405, "", f"{method} is not supported here (see /metadata)")

    # -- reads ------------------------------------------------------------------------

    async def _on_reader(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        def run() -> Any:
            try:
                conn = self._readers.get_nowait()
            except queue.Empty:
                conn = connect(self._db_path, readonly=True)
            try:
                return op(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._readers.put(conn)

        return await asyncio.to_thread(run)

    async def _read(self, request: FHIRRequest, rtype: str, rid: str) -> FHIRResponse:
        item = await self._on_reader(lambda c: self._store.read(c, rtype, rid))
        if item is None:
            raise FHIRAPIError(404, f"{rtype}.id", "no such resource")
        return self._json(200, item.resource, headers=_version_headers(request.base_url, item))

    async def _vread(self, request: FHIRRequest, rtype: str, rid: str,
                     vid: str) -> FHIRResponse:
        if not vid.isdigit():
            raise FHIRAPIError(404, f"{rtype}.meta.versionId", "no such version")
        item = await self._on_reader(lambda c: self._store.vread(c, rtype, rid, int(vid)))
        if item is None:
            raise FHIRAPIError(404, f"{rtype}.meta.versionId", "no such version")
        return self._json(200, item.resource, headers=_version_headers(request.base_url, item))

    async def _history(self, request: FHIRRequest, rtype: str, rid: str) -> FHIRResponse:
        items: list[ResourceVersion] = await self._on_reader(
            lambda c: self._store.history(c, rtype, rid))
        if not items:
            raise FHIRAPIError(404, f"{rtype}.id", "no such resource")
        base = request.base_url
        return self._json(200, {
            "resourceType": "Bundle", "type": "history", "total": len(items),
            "link": [{"relation": "self", "url": f"{base}/{rtype}/{rid}/_history"}],
            "entry": [{
                "fullUrl": f"{base}/{rtype}/{rid}",
                "resource": item.resource,
                "request": {"method": "POST" if item.version == 1 else "PUT",
                            "url": rtype if item.version == 1 else f"{rtype}/{rid}"},
                "response": {"status": "201 Created" if item.version == 1 else "200 OK",
                             "etag": _etag(item.version), "lastModified": item.last_updated},
            } for item in items]})

    async def _search(self, request: FHIRRequest, rtype: str,
                      query: Sequence[tuple[str, str]]) -> FHIRResponse:
        search = parse_search(rtype, query, default_count=self.settings.default_count,
                              max_count=self.settings.max_count)
        page, more, total = await self._on_reader(lambda c: self._run_search(c, search))
        cursor = Cursor(page[-1].last_updated, page[-1].row) if more and page else None
        return self._json(200, _searchset(request.base_url, search, page, cursor, total))

    async def _audit_events(self, request: FHIRRequest, parts: list[str],
                            client: Client) -> FHIRResponse:
        """AuditEvent: search only (the accounting of disclosures; see :mod:`.accounting`)."""
        if len(parts) == 1 and request.method == "GET":
            return await self._accounting_search(request, request.query, client)
        if parts[1:] == ["_search"] and request.method == "POST":
            return await self._accounting_search(request, _search_parameters(request), client)
        raise FHIRAPIError(405, "", "AuditEvent: only search, with patient (see /metadata)")

    async def _accounting_search(self, request: FHIRRequest, query: Sequence[tuple[str, str]],
                                 client: Client) -> FHIRResponse:
        search = parse_search("AuditEvent", query, default_count=self.settings.default_count,
                              max_count=self.settings.max_count)
        patient_id = search.patient
        if patient_id is None:
            # Not an unfiltered dump of every audit record: the accounting is per patient.
            raise FHIRAPIError(400, "patient", "required: the accounting is read per patient")
        trail = await self._on_reader(lambda c: read_trail(c, self._store, patient_id))
        page = trail.page(search.count, search.cursor)
        if trail.ref is not None:
            # Durable before anything is released (a failed commit is 503, nothing returned).
            await self._accounting.record(trail, client, f"AuditEvent?{urlencode(query)}",
                                          released=len(page.events))
        cursor = page_cursor(page.events[-1]) if page.more and page.events else None
        return self._json(200, _searchset(request.base_url, search, page.events, cursor,
                                          page.total))

    def _run_search(self, conn: sqlite3.Connection, search: ParsedSearch,
                    ) -> tuple[list[ResourceVersion], bool, int | None]:
        """(page, whether more follow, total when known) in (lastUpdated, row) order."""
        key_token: str | None = None
        candidates: list[ResourceVersion] | None = None
        if search.patient is not None:
            resolved = patient_key(conn, self._store, search.patient)
            if resolved is None:
                return [], False, 0
            key_token, ref = resolved
            candidates = self._store.search(conn, patient=ref, type=search.type)
        if search.identifier is not None:
            found = self._store.search(conn, identifier=search.identifier, type=search.type)
            candidates = found if candidates is None else [
                c for c in candidates if c.row in {f.row for f in found}]
        if search.ids is not None:
            found = [r for r in (self._store.read(conn, search.type, i) for i in search.ids) if r]
            candidates = found if candidates is None else [
                c for c in candidates if c.row in {f.row for f in found}]
        if candidates is not None:
            matched = sorted((c for c in candidates
                              if search.matches(c.resource, c.last_updated, key_token)),
                             key=lambda c: (c.last_updated, c.row))
            total = len(matched)
            if search.cursor is not None:
                key = (search.cursor.last_updated, search.cursor.row)
                matched = [c for c in matched if (c.last_updated, c.row) > key]
            return matched[:search.count], len(matched) > search.count, total
        return self._scan(conn, search)

    def _scan(self, conn: sqlite3.Connection, search: ParsedSearch,
              ) -> tuple[list[ResourceVersion], bool, int | None]:
        """A type scan in (last_updated, row) order, filtered on decrypted records, in chunks
        until a page (plus one, to know whether more follow) is found."""
        where = [CURRENT_ONLY, "r.type = ?"]
        params: list[Any] = [search.type]
        for condition in search.last_updated:  # exact on the clear column (ms instants)
            lower, upper = _instant_bounds(condition.prefix, condition.range)
            if lower:
                where.append("r.last_updated >= ?")
                params.append(lower)
            if upper:
                where.append("r.last_updated < ?")
                params.append(upper)
        after = (search.cursor.last_updated, search.cursor.row) if search.cursor else None
        page: list[ResourceVersion] = []
        conn.execute("BEGIN")  # one snapshot for the whole page
        try:
            while len(page) <= search.count:
                clause = list(where)
                args = list(params)
                if after is not None:
                    clause.append("(r.last_updated, r.row) > (?, ?)")
                    args += list(after)
                rows = conn.execute(
                    f"SELECT {BASE_COLUMNS}, k.key_id, k.purpose, k.owner, k.wrapped "  # noqa: S608
                    f"FROM {RESOURCES} r LEFT JOIN {DATA_KEYS} k ON k.key_id = r.key_id "
                    f"WHERE {' AND '.join(clause)} ORDER BY r.last_updated, r.row LIMIT ?",
                    [*args, _SCAN_CHUNK]).fetchall()
                for row in rows:
                    key_row = tuple(row[10:14]) if row[10] is not None else None
                    item = self._store.open_row(row[:10], key_row)
                    if search.matches(item.resource, item.last_updated):
                        page.append(item)
                        if len(page) > search.count:
                            break
                if len(rows) < _SCAN_CHUNK:
                    break
                after = (str(rows[-1][6]), int(rows[-1][0]))
        finally:
            conn.execute("COMMIT")
        return page[:search.count], len(page) > search.count, None

    # -- writes -----------------------------------------------------------------------

    def _parse_body(self, request: FHIRRequest) -> dict[str, Any]:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in (FHIR_JSON, "application/json", "application/json+fhir"):
            raise FHIRAPIError(415, "Content-Type", "send application/fhir+json")
        try:
            body = json.loads(request.body)
        except UnicodeDecodeError:
            raise FHIRAPIError(400, "body", "not UTF-8") from None
        except json.JSONDecodeError as exc:
            raise FHIRAPIError(400, "body", f"not valid JSON (line {exc.lineno}, column "
                               f"{exc.colno})") from None
        if not isinstance(body, dict):
            raise FHIRAPIError(400, "body", "not a JSON object")
        if not isinstance(body.get("resourceType"), str):
            raise FHIRAPIError(400, "resourceType", "missing")
        return body

    async def _create(self, request: FHIRRequest, rtype: str, client: Client) -> FHIRResponse:
        resource = self._parse_body(request)
        if resource["resourceType"] != rtype:
            raise FHIRAPIError(400, f"{rtype}.resourceType", "does not match the URL")
        entry: dict[str, Any] = {"method": "POST", "type": rtype, "id": self._new_id(),
                                 "resource": resource}
        condition = request.headers.get("if-none-exist")
        if condition is not None:
            existing = await self._conditional(rtype, condition, "If-None-Exist")
            if existing is not None:
                return self._json(200, existing.resource,
                                  headers=_version_headers(request.base_url, existing))
            entry["if_none_exist"] = _identifier_condition(condition, "If-None-Exist")
        versions = await self._write("create", [entry], client, request.peer)
        return await self._written(request, versions[0], created=True)

    async def _update(self, request: FHIRRequest, rtype: str, rid: str,
                      client: Client) -> FHIRResponse:
        resource = self._parse_body(request)
        if resource["resourceType"] != rtype:
            raise FHIRAPIError(400, f"{rtype}.resourceType", "does not match the URL")
        if resource.get("id") != rid:
            raise FHIRAPIError(400, f"{rtype}.id", "missing or not the id in the URL")
        entry: dict[str, Any] = {"method": "PUT", "type": rtype, "id": rid,
                                 "resource": resource}
        if_match = request.headers.get("if-match")
        if if_match is not None:
            entry["if_match"] = await self._check_version(rtype, rid, if_match, "If-Match")
        versions = await self._write("update", [entry], client, request.peer)
        return await self._written(request, versions[0], created=versions[0][2] == 1)

    async def _written(self, request: FHIRRequest, version: tuple[str, str, int], *,
                       created: bool) -> FHIRResponse:
        rtype, rid, number = version
        item = await self._on_reader(lambda c: self._store.vread(c, rtype, rid, number))
        assert item is not None  # committed before processing returned
        headers = _version_headers(request.base_url, item)
        prefer = request.headers.get("prefer", "")
        status = 201 if created else 200
        if "return=minimal" in prefer:
            return FHIRResponse(status, None, headers)
        if "return=OperationOutcome" in prefer:
            return self._json(status, operation_outcome(status, "stored"), headers=headers)
        return self._json(status, item.resource, headers=headers)

    async def _check_version(self, rtype: str, rid: str, header: str, name: str) -> int:
        text = header.strip()
        text = text[2:] if text.startswith("W/") else text
        text = text.strip('"')
        if not text.isdigit():
            raise FHIRAPIError(400, name, 'expected W/"VERSION"')
        wanted = int(text)
        current = await self._on_reader(lambda c: current_version(c, rtype, rid))
        if current != wanted:
            raise FHIRAPIError(412, name, f"the current version is "
                               f"{'none' if current is None else current}, not {wanted}")
        return wanted

    async def _conditional(self, rtype: str, condition: str,
                           name: str) -> ResourceVersion | None:
        ident = _identifier_condition(condition, name)
        found: list[ResourceVersion] = await self._on_reader(
            lambda c: self._store.search(c, identifier=ident, type=rtype))
        if len(found) > 1:
            raise FHIRAPIError(412, name, "matches more than one resource")
        return found[0] if found else None

    async def _write(self, interaction: str, entries: list[dict[str, Any]], client: Client,
                     peer: str, *, source: str | None = None,
                     aliases: Mapping[str, str] | None = None) -> tuple[tuple[str, str, int], ...]:
        """Inbox, then process; the stored versions in entry order, or the rejection."""
        patients = await self._resolve_patients(entries)
        request_id = self._new_id()
        raw = envelope(interaction, request_id, entries, patients,  # type: ignore[arg-type]
                       source=source, aliases=aliases)
        message_type = f"FHIR^{interaction}"
        header = _header(client.name, request_id, interaction)
        stored = await self._inbox.store(
            Arrival(raw, LISTENER, peer, self._clock(), header), state="received", reason="",
            ack_for=lambda _row: ("CA", b""))
        try:
            outcome: Processed = await self._processor.process(stored.row_id, raw,
                                                               message_type, LISTENER)
        except Exception as exc:  # noqa: BLE001 - any stage fault: the row stays received
            log.error("FHIR write not processed yet", extra={"fields": {
                "row": stored.row_id, "error": type(exc).__name__}})
            raise FHIRAPIError(503, "", "accepted but not yet stored; it will be, unless "
                               "invalid (check before retrying)",
                               headers={"Retry-After": "5"}) from None
        if outcome.state != "processed":
            path, _, reason = outcome.reason.partition(": ")
            status = http_status_of(outcome.reason)
            reason = reason.removesuffix(f" (HTTP {status})")
            raise FHIRAPIError(status, path, reason or outcome.reason)
        self.counts["writes"] += 1
        log.info("FHIR write stored", extra={"fields": {
            "row": stored.row_id, "interaction": interaction, "client": client.name,
            "resources": outcome.resources}})
        return outcome.versions

    async def _resolve_patients(self, entries: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """Patient keys for references to Patients not in the request, from the store."""
        in_request = {f"{e['type']}/{e['id']}" for e in entries}
        in_request |= {str(e["fullUrl"]) for e in entries if e.get("fullUrl")}
        wanted = {str(ref["reference"]) for e in entries
                  if isinstance(e.get("resource"), Mapping)
                  for _, ref in patient_references(e["resource"])
                  if isinstance(ref.get("reference"), str)
                  and ref["reference"].startswith("Patient/")
                  and ref["reference"] not in in_request}
        if not wanted:
            return {}

        def lookup(conn: sqlite3.Connection) -> dict[str, str]:
            out = {}
            for reference in sorted(wanted):
                found = self._store.read(conn, "Patient", reference.partition("/")[2])
                key = patient_key_of(found.resource) if found else None
                if key is not None:
                    out[reference] = key
            return out

        resolved: dict[str, str] = await self._on_reader(lookup)
        return resolved

    # -- bundles ----------------------------------------------------------------------

    async def _bundle(self, request: FHIRRequest, client: Client) -> FHIRResponse:
        bundle = self._parse_body(request)
        if bundle["resourceType"] != "Bundle":
            raise FHIRAPIError(400, "resourceType", "POST to the base takes a Bundle")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise FHIRAPIError(400, "Bundle.entry", "not an array")
        if bundle.get("type") == "batch":
            return await self._batch(request, entries, client)
        if bundle.get("type") != "transaction":
            raise FHIRAPIError(400, "Bundle.type", "must be transaction or batch")
        return await self._transaction(request, entries, client)

    async def _transaction(self, request: FHIRRequest, entries: list[Any],
                           client: Client) -> FHIRResponse:
        if not entries:
            raise FHIRAPIError(400, "Bundle.entry", "empty transaction")
        planned: list[dict[str, Any]] = []
        aliases: dict[str, str] = {}
        existing: dict[int, ResourceVersion] = {}
        for index, entry in enumerate(entries):
            where = f"Bundle.entry[{index}]"
            method, rtype, rid, resource = _bundle_entry(entry, where)
            if method not in ("POST", "PUT"):
                raise FHIRAPIError(400, f"{where}.request.method",
                                   "a transaction takes POST and PUT entries only")
            item: dict[str, Any] = {"method": method, "type": rtype, "resource": resource,
                                    "id": rid if method == "PUT" else self._new_id()}
            full_url = entry.get("fullUrl")
            if isinstance(full_url, str) and full_url:
                item["fullUrl"] = full_url
            req = entry["request"]
            if method == "POST" and req.get("ifNoneExist"):
                found = await self._conditional(rtype, str(req["ifNoneExist"]),
                                                f"{where}.request.ifNoneExist")
                if found is not None:
                    existing[index] = found
                    if isinstance(full_url, str) and full_url:
                        aliases[full_url] = f"{found.type}/{found.id}"
                    continue
                item["if_none_exist"] = _identifier_condition(str(req["ifNoneExist"]),
                                                              f"{where}.request.ifNoneExist")
            if method == "PUT" and req.get("ifMatch"):
                item["if_match"] = await self._check_version(
                    rtype, rid, str(req["ifMatch"]), f"{where}.request.ifMatch")
            item["index"] = index
            planned.append(item)
        versions: tuple[tuple[str, str, int], ...] = ()
        if planned:
            indexes = [item.pop("index") for item in planned]
            versions = await self._write("transaction", planned, client, request.peer,
                                         aliases=aliases)
            by_index = dict(zip(indexes, versions, strict=True))
        else:
            by_index = {}
        stored: dict[tuple[str, str, int], ResourceVersion] = {}
        if versions:
            items = await self._on_reader(lambda c: [self._store.vread(c, *v) for v in versions])
            stored = {(i.type, i.id, i.version): i for i in items if i is not None}
        response_entries = []
        for index in range(len(entries)):
            if index in existing:
                response_entries.append(_response_entry(request.base_url, existing[index],
                                                        "200 OK"))
            else:
                done = stored[by_index[index]]
                response_entries.append(_response_entry(
                    request.base_url, done, "201 Created" if done.version == 1 else "200 OK"))
        return self._json(200, {"resourceType": "Bundle", "type": "transaction-response",
                                "entry": response_entries})

    async def _batch(self, request: FHIRRequest, entries: list[Any],
                     client: Client) -> FHIRResponse:
        """Each entry on its own (R4 3.1.0.11.1): its own inbox row, its own outcome. An
        entry that fails, storage and verification failures included, gets its own status
        and OperationOutcome and the others go on: the batch is never answered with one error
        status once an earlier entry may have been stored (a client would retry it whole)."""
        out = []
        for index, entry in enumerate(entries):
            where = f"Bundle.entry[{index}]"
            sub = request  # until the entry is read: a malformed one is the batch's fault
            try:
                sub = _sub_request(request, entry, where)
                response = await self._dispatch(sub, [p for p in sub.path.split("/") if p],
                                                client)
            except Exception as exc:  # noqa: BLE001 - answered in the entry (_failed)
                # Logged with the entry's method: the line says which interaction failed.
                response = self._failed(sub, exc)
            out.append(_batch_response_entry(response))
        return self._json(200, {"resourceType": "Bundle", "type": "batch-response",
                                "entry": out})

    # -- upstream ---------------------------------------------------------------------

    async def ingest_upstream(self, resource: Mapping[str, Any], source_url: str,
                              source_name: str) -> str:
        """Store ``resource`` from an upstream server under its own id (an update): returns
        ``stored``, ``unchanged`` (the same content as our current version), or raises
        :class:`FHIRAPIError` (422 for a Patient we do not hold: the caller fetches it)."""
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or rtype not in SUPPORTED_TYPES:
            raise FHIRAPIError(422, "resourceType", "resource type not supported here")
        if not isinstance(rid, str):
            raise FHIRAPIError(400, f"{rtype}.id", "missing")
        current = await self._on_reader(lambda c: self._store.read(c, rtype, rid))
        if current is not None and _without_volatile_meta(current.resource) == \
                _without_volatile_meta(mark_upstream(resource, source_url)):
            return "unchanged"
        entry = {"method": "PUT", "type": rtype, "id": rid, "resource": dict(resource)}
        await self._write("update", [entry], Client(f"source:{source_name}", "mtls"),
                          source_name, source=source_url)
        return "stored"

    async def _notification(self, name: str, request: FHIRRequest) -> FHIRResponse:
        hook = self.sources.get(name)
        if hook is None:
            raise FHIRAPIError(404, "", "no such source")
        references: list[str] = []
        if request.body.strip():
            body = self._parse_body(request)
            references = _notified_references(body)
        count = await hook.notify(references)
        return self._json(200, operation_outcome(200, f"{count} resources fetched"))

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
    def _json(status: int, body: dict[str, Any], *,
              headers: Mapping[str, str] | None = None) -> FHIRResponse:
        return FHIRResponse(status, body, dict(headers or {}))


def _search_parameters(request: FHIRRequest) -> tuple[tuple[str, str], ...]:
    """A ``POST [type]/_search``'s parameters: the URL's, then the form body's (R4 http.html,
    search by POST)."""
    return request.query + tuple(parse_qsl(request.body.decode("utf-8", "replace"),
                                           keep_blank_values=True))


def _searchset(base: str, search: ParsedSearch, page: Sequence[ResourceVersion],
               cursor: Cursor | None, total: int | None) -> dict[str, Any]:
    """A searchset Bundle (R4 3.1.1.2): self link, a next link from ``cursor`` (the last
    result's position) when more follow, ``total`` when known."""
    rtype = search.type
    links = [{"relation": "self", "url": f"{base}/{rtype}?{urlencode(search.params)}"}]
    if cursor is not None:
        links.append({"relation": "next", "url": f"{base}/{rtype}?" + urlencode(
            [*search.params, ("_cursor", cursor.encode())])})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if page:
        bundle["entry"] = [{"fullUrl": f"{base}/{item.type}/{item.id}",
                            "resource": item.resource, "search": {"mode": "match"}}
                           for item in page]
    return bundle


def _instant_bounds(prefix: str, rng: Any) -> tuple[str | None, str | None]:
    """Bounds on a millisecond instant column equivalent to a date condition (``ne``: none,
    filtered in Python)."""
    from edge.store.resources import fhir_instant

    lo, hi = fhir_instant(rng.start), fhir_instant(rng.end)
    return {"eq": (lo, hi), "gt": (hi, None), "ge": (lo, None), "lt": (None, lo),
            "le": (None, hi)}.get(prefix, (None, None))


def _identifier_condition(condition: str, name: str) -> str:
    """The identifier token of ``identifier=SYSTEM|VALUE`` (the only conditional search)."""
    pairs = parse_qsl(condition.lstrip("?").partition("?")[2] or condition.lstrip("?"),
                      keep_blank_values=True)
    if len(pairs) != 1 or pairs[0][0] != "identifier" or "|" not in pairs[0][1]:
        raise FHIRAPIError(400, name, "only identifier=SYSTEM|VALUE is supported")
    return pairs[0][1]


def _header(client: str, request_id: str, interaction: str) -> Header:
    # The inbox's PHI-free metadata: the client as the sender, our request id as control id,
    # message_type FHIR^<interaction> (what the processor routes to normalize_fhir by).
    return Header(field_separator="|", encoding_characters="^~\\&",
                  sending_application=client, sending_facility="", receiving_application="",
                  receiving_facility="", message_datetime="", message_code="FHIR",
                  trigger_event=interaction, message_structure="", control_id=request_id,
                  processing_id="P", version_id="4.0.1", accept_ack_type="",
                  application_ack_type="", character_sets=(), codec="utf-8")


def _bundle_entry(entry: Any, where: str) -> tuple[str, str, str, dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise FHIRAPIError(400, f"{where}.request", "missing")
    req = entry["request"]
    method, url = str(req.get("method", "")).upper(), str(req.get("url", ""))
    resource = entry.get("resource")
    if method in ("POST", "PUT") and (not isinstance(resource, dict)
                                      or not isinstance(resource.get("resourceType"), str)):
        raise FHIRAPIError(400, f"{where}.resource", "missing or not a resource")
    path = url.split("?", maxsplit=1)[0].strip("/").split("/")
    rtype = path[0] if path else ""
    if method == "POST" and len(path) != 1:
        raise FHIRAPIError(400, f"{where}.request.url", "POST takes TYPE")
    if method == "PUT" and len(path) != 2:
        raise FHIRAPIError(400, f"{where}.request.url", "PUT takes TYPE/ID")
    if method in ("POST", "PUT"):
        assert isinstance(resource, dict)
        if resource["resourceType"] != rtype:
            raise FHIRAPIError(400, f"{where}.resource.resourceType",
                               "does not match request.url")
        if rtype not in SUPPORTED_TYPES:
            raise FHIRAPIError(422, f"{where}.resource.resourceType",
                               "resource type not supported here")
        if method == "PUT" and resource.get("id") != path[1]:
            raise FHIRAPIError(400, f"{where}.resource.id", "missing or not the id in "
                               "request.url")
    return method, rtype, path[1] if len(path) > 1 else "", resource or {}


def _response_entry(base: str, item: ResourceVersion, status: str) -> dict[str, Any]:
    return {"fullUrl": f"{base}/{item.type}/{item.id}", "resource": item.resource,
            "response": {"status": status,
                         "location": f"{item.type}/{item.id}/_history/{item.version}",
                         "etag": _etag(item.version), "lastModified": item.last_updated}}


def _sub_request(request: FHIRRequest, entry: Any, where: str) -> FHIRRequest:
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise FHIRAPIError(400, f"{where}.request", "missing")
    req = entry["request"]
    method = str(req.get("method", "")).upper()
    url = str(req.get("url", ""))
    path, _, query = url.partition("?")
    headers: dict[str, str] = {"content-type": FHIR_JSON}
    for element, header in (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist")):
        if req.get(element):
            headers[header] = str(req[element])
    body = b""
    if method in ("POST", "PUT"):
        body = json.dumps(entry.get("resource")).encode()
    return FHIRRequest(method, path.strip("/"), tuple(parse_qsl(query, keep_blank_values=True)),
                       headers, body, request.base_url, request.peer, request.peer_ip,
                       request.client_cert)


def _batch_response_entry(response: FHIRResponse) -> dict[str, Any]:
    status = f"{response.status} {_REASONS.get(response.status, '')}".strip()
    out: dict[str, Any] = {"response": {"status": status}}
    if "Location" in response.headers:
        out["response"]["location"] = response.headers["Location"]
    if "ETag" in response.headers:
        out["response"]["etag"] = response.headers["ETag"]
    if response.body is not None:
        if response.status >= 400:
            out["response"]["outcome"] = response.body
        else:
            out["resource"] = response.body
    return out


_REASONS: Final = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized",
                   404: "Not Found", 405: "Method Not Allowed", 409: "Conflict",
                   412: "Precondition Failed", 415: "Unsupported Media Type",
                   422: "Unprocessable Entity", 500: "Internal Server Error",
                   503: "Service Unavailable"}


def _notified_references(body: Mapping[str, Any]) -> list[str]:
    """What a rest-hook notification says changed: the focus of each notification event
    (R4B/R5 SubscriptionStatus, and the R4 backport IG's Bundle of type history), else the
    resources it carries; an empty list means "something changed": poll."""
    refs: list[str] = []
    if body.get("resourceType") == "Bundle":
        for entry in body.get("entry") or ():
            resource = entry.get("resource") if isinstance(entry, Mapping) else None
            if not isinstance(resource, Mapping):
                continue
            if resource.get("resourceType") in ("SubscriptionStatus", "Parameters"):
                events = resource.get("notificationEvent") or [
                    p for p in resource.get("parameter") or ()
                    if isinstance(p, Mapping) and p.get("name") == "notification-event"]
                for event in events:
                    focus = event.get("focus") if isinstance(event, Mapping) else None
                    if focus is None and isinstance(event, Mapping):
                        focus = next((part.get("valueReference") for part in
                                      event.get("part") or () if part.get("name") == "focus"),
                                     None)
                    if isinstance(focus, Mapping) and isinstance(focus.get("reference"), str):
                        refs.append(focus["reference"])
            elif isinstance(resource.get("id"), str):
                refs.append(f"{resource['resourceType']}/{resource['id']}")
    elif isinstance(body.get("id"), str) and isinstance(body.get("resourceType"), str):
        refs.append(f"{body['resourceType']}/{body['id']}")
    return refs


# Re-exported for the adapter's type hints.
Handler = Callable[[FHIRRequest], Awaitable[FHIRResponse]]
