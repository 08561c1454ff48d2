"""Pulling from upstream FHIR servers (``[[fhir.sources]]``) into the inbox.

Each poll of a source, per configured resource type in order (Patients first, so records
find the patient they are sealed under):

- **incremental search**: ``GET Type?_lastUpdated=geCHECKPOINT&_sort=_lastUpdated&_count=N``,
  following ``next`` links. After each page is in our store, the type's checkpoint moves to
  the page's newest ``meta.lastUpdated`` (table ``fhir_source_checkpoints``), so a restart
  resumes there. ``ge`` rather than ``gt``: a page boundary can fall between resources with
  the same instant; what we already hold comes back and is recognized as unchanged
  (:meth:`~edge.fhirapi.service.FHIRService.ingest_upstream`) instead of stored again;
- **Bulk Data** (``bulk = "auto"`` and the server's CapabilityStatement offers ``export``):
  one ``$export?_type=...&_since=CHECKPOINT``, its ndjson files ingested type by type in the
  configured order, then the checkpoint ``*`` becomes the export's ``transactionTime``.

A resource naming a Patient we do not hold makes the poller fetch that Patient from the same
source first. A resource the pipeline rejects (invalid) stays a dead letter in the inbox with
its reason and the poll goes on; a source that fails (network, 5xx) is retried after a pause
that doubles from ``interval_s / 10`` up to ``backoff_max_s``.

A subscription notification (:meth:`SourcePoller.notify`) fetches the resources it names, or
polls at once when it names none.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from adapters.fhir.client import UpstreamClient, UpstreamError
from edge.config.model import FHIRSourceSettings
from edge.fhirapi.outcome import FHIRAPIError
from edge.fhirapi.schema import BULK, CHECKPOINTS
from edge.normalize.fhir_json import patient_references
from edge.storage.database import connect
from edge.storage.errors import StorageError
from edge.storage.group_commit import GroupCommitter

log = logging.getLogger(__name__)


class Ingest(Protocol):
    async def __call__(self, resource: Mapping[str, Any], source_url: str,
                       source_name: str) -> str: ...


class Checkpoints:
    """Per (source, resource type) positions in ``fhir_source_checkpoints``."""

    def __init__(self, db_path: Path, committer: GroupCommitter) -> None:
        self._db_path = db_path
        self._committer = committer

    async def get(self, source: str, rtype: str) -> str | None:
        def read() -> str | None:
            conn = connect(self._db_path, readonly=True)
            try:
                row = conn.execute(f"SELECT last_updated FROM {CHECKPOINTS} "  # noqa: S608
                                   "WHERE source = ? AND resource_type = ?",
                                   (source, rtype)).fetchone()
            finally:
                conn.close()
            return str(row[0]) if row else None

        return await asyncio.to_thread(read)

    async def set(self, source: str, rtype: str, last_updated: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO {CHECKPOINTS} (source, resource_type, last_updated, updated_at) "  # noqa: S608
                "VALUES (?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
                "ON CONFLICT (source, resource_type) DO UPDATE SET "
                "last_updated = excluded.last_updated, updated_at = excluded.updated_at",
                (source, rtype, last_updated))

        await self._committer.run(op)


@dataclass
class PollStats:
    polls: int = 0
    stored: int = 0
    unchanged: int = 0
    rejected: int = 0
    failures: int = 0
    last_error: str = ""
    last_success: str = ""
    mode: str = ""


class SourcePoller:
    def __init__(self, source: FHIRSourceSettings, client: UpstreamClient, ingest: Ingest,
                 checkpoints: Checkpoints, *,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 now: Callable[[], str] | None = None) -> None:
        self.source = source
        self.client = client
        self._ingest = ingest
        self._checkpoints = checkpoints
        self._sleep = sleep
        self._now = now or _utc_now
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._bulk: bool | None = None  # learnt from the CapabilityStatement
        self.stats = PollStats()

    @property
    def name(self) -> str:
        return self.source.name

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {"name": self.name, "mode": s.mode, "polls": s.polls, "stored": s.stored,
                "unchanged": s.unchanged, "rejected": s.rejected, "failures": s.failures,
                "last_error": s.last_error, "last_success": s.last_success}

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Poll every ``interval_s`` (or when woken) until cancelled; back off on errors."""
        backoff = 0.0
        while True:
            try:
                await self.poll_once()
                backoff = 0.0
                delay = self.source.interval_s
            except Exception as exc:  # noqa: BLE001 - a source must never stop the daemon
                # UpstreamError and StorageError say what failed (PHI-free); anything else
                # is named by its type only (its message could quote upstream content).
                known = isinstance(exc, (UpstreamError, StorageError))
                self.stats.failures += 1
                self.stats.last_error = str(exc) if known else type(exc).__name__
                self._bulk = None  # ask again: the server may have changed
                backoff = min(max(backoff * 2, self.source.interval_s / 10),
                              self.source.backoff_max_s)
                delay = backoff
                log.warning("FHIR source poll failed", extra={"fields": {
                    "source": self.name, "error": self.stats.last_error, "retry_in_s": delay}})
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            sleeper = asyncio.ensure_future(self._sleep(delay))
            await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            for task in (waiter, sleeper):
                task.cancel()

    async def poll_once(self) -> int:
        """One poll (bulk or incremental); returns how many resources were stored."""
        async with self._lock:
            before = self.stats.stored
            self.stats.polls += 1
            if self._bulk is None:
                self._bulk = self.source.bulk == "auto" and _offers_export(
                    await self.client.capability())
            if self._bulk:
                self.stats.mode = "bulk"
                await self._poll_bulk()
            else:
                self.stats.mode = "search"
                for rtype in self.source.resource_types:
                    await self._poll_type(rtype)
            self.stats.last_success = self._now()
            return self.stats.stored - before

    async def notify(self, references: Sequence[str]) -> int:
        """A subscription notification: fetch what it names from the source, or poll."""
        if not references:
            return await self.poll_once()
        before = self.stats.stored
        async with self._lock:
            for reference in references:
                rtype, rid = _split_reference(reference)
                if rtype not in self.source.resource_types or not rid:
                    continue  # not a type this source is configured to bring
                resource = await self.client.read(rtype, rid)
                if resource is not None:
                    await self._take(resource)
        return self.stats.stored - before

    # -- internals ----------------------------------------------------------------------

    async def _poll_type(self, rtype: str) -> None:
        since = await self._checkpoints.get(self.name, rtype)
        params = [("_sort", "_lastUpdated"), ("_count", str(self.source.page_size))]
        if since:
            params.insert(0, ("_lastUpdated", f"ge{since}"))
        async for page in self.client.search(rtype, params):
            newest = since
            for entry in page.get("entry") or ():
                resource = entry.get("resource") if isinstance(entry, Mapping) else None
                if not isinstance(resource, Mapping) or resource.get("resourceType") != rtype:
                    continue  # an OperationOutcome or an _include: not ours to store
                await self._take(resource)
                stamp = (resource.get("meta") or {}).get("lastUpdated")
                if isinstance(stamp, str) and (newest is None or stamp > newest):
                    newest = stamp
            if newest and newest != since:
                await self._checkpoints.set(self.name, rtype, newest)
                since = newest

    async def _poll_bulk(self) -> None:
        since = await self._checkpoints.get(self.name, BULK)
        manifest = await self.client.export(self.source.resource_types, since)
        order = {t: i for i, t in enumerate(self.source.resource_types)}
        for rtype, url in sorted(manifest.outputs, key=lambda o: order.get(o[0], len(order))):
            if rtype not in order:
                continue
            async for resource in self.client.ndjson(url, token=manifest.requires_token):
                await self._take(resource)
        await self._checkpoints.set(self.name, BULK, manifest.transaction_time)

    async def _take(self, resource: Mapping[str, Any], *, depth: int = 0) -> None:
        rtype, rid = str(resource.get("resourceType")), str(resource.get("id"))
        version = (resource.get("meta") or {}).get("versionId")
        url = f"{self.client.base_url}/{rtype}/{rid}" + (
            f"/_history/{version}" if version else "")
        try:
            outcome = await self._ingest(resource, url, self.name)
        except FHIRAPIError as exc:
            missing = self._missing_patient(resource) if exc.status == 422 else None
            if missing is not None and depth == 0:
                patient = await self.client.read("Patient", missing)
                if patient is not None:
                    await self._take(patient, depth=1)
                    await self._take(resource, depth=1)
                    return
            self.stats.rejected += 1
            log.warning("FHIR source resource rejected", extra={"fields": {
                "source": self.name, "type": rtype, "status": exc.status,
                "reason": str(exc)}})
            return
        if outcome == "stored":
            self.stats.stored += 1
        else:
            self.stats.unchanged += 1

    @staticmethod
    def _missing_patient(resource: Mapping[str, Any]) -> str | None:
        for _, ref in patient_references(resource):
            reference = ref.get("reference")
            if isinstance(reference, str) and reference.startswith("Patient/"):
                return reference.partition("/")[2]
        return None


def _split_reference(reference: str) -> tuple[str, str]:
    """(type, id) of ``Type/id``, ``Type/id/_history/n`` or an absolute URL of either."""
    parts = reference.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return (parts[-2], parts[-1]) if len(parts) >= 2 else ("", "")


def _offers_export(capability: Mapping[str, Any]) -> bool:
    """Whether a CapabilityStatement offers system-level ``$export`` (Bulk Data IG)."""
    for rest in capability.get("rest") or ():
        for operation in (rest.get("operation") or ()) if isinstance(rest, Mapping) else ():
            if not isinstance(operation, Mapping):
                continue
            definition = str(operation.get("definition", ""))
            if operation.get("name") == "export" or definition.endswith("/export"):
                return True
    return False


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
