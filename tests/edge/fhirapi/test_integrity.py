"""The FHIR API meeting a stored row that fails verification (a flipped ciphertext byte): every
read path (read, vread, history, and search by patient, identifier, ``_id`` and by type scan)
answers 500 with an OperationOutcome ``exception`` and none of the record, and the log gets one
ERROR line locating the row (table, row number, type, version, key id), without a traceback or
PHI. Driven through the real aiohttp server on loopback, on a real database file."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest

from adapters.fhir.server import FHIRServer
from edge.config.model import FHIRSettings
from edge.fhirapi.accounting import AccountingAudit
from edge.fhirapi.service import FHIRService
from edge.inbox.store import InboxStore
from edge.processing.processor import Processor
from edge.storage.group_commit import GroupCommitter
from edge.store.resources import ResourceStore
from tests.edge.fhirapi.support import NoWrites
from tests.edge.store.store_support import (
    make_env,
    observation_resource,
    patient_ref,
    patient_resource,
)

# What the test patient is known by (store_support's patient 1): none of it may be answered
# or logged, nor the Observation's content.
PHI = ("MRN000001", "999-00-0001", "Quxfamily1", "Zorbgiven1", "1951-02-11", "13.5")


@dataclass
class Api:
    url: str
    http: aiohttp.ClientSession
    service: FHIRService
    db: Path
    row: int  # the tampered row (obs-1-0, version 1)
    key_id: str


def _tamper(conn: sqlite3.Connection, rid: str) -> tuple[int, str]:
    row, key_id, body = conn.execute(
        "SELECT row, key_id, body FROM resources WHERE id = ?", (rid,)).fetchone()
    flipped = bytearray(body)
    flipped[40] ^= 0x01
    with conn:
        conn.execute("UPDATE resources SET body = ? WHERE row = ?", (bytes(flipped), row))
    return int(row), str(key_id)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    env = make_env(tmp_path)
    store = ResourceStore(env.keys())
    conn = env.connect()
    try:
        store.put(conn, patient_resource(1), patient=patient_ref(1))
        store.put(conn, observation_resource(1, 0), patient=patient_ref(1))
        row, key_id = _tamper(conn, "obs-1-0")
    finally:
        conn.close()
    settings = FHIRSettings.model_validate({"bind": "127.0.0.1:0",
                                            "allow_anonymous_loopback": True})
    # Reads of records write nothing, not even an audit event (only reading the accounting
    # of disclosures is audited: tests/edge/fhirapi/test_accounting.py).
    accounting = AccountingAudit(cast(GroupCommitter, NoWrites()), store,
                                 facility="test-facility")
    service = FHIRService(settings, db_path=env.db_path,
                          inbox=cast(InboxStore, NoWrites()),
                          processor=cast(Processor, NoWrites()), store=store,
                          accounting=accounting)
    server = FHIRServer(settings, service.handle)
    (bound,) = await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://{bound}", http, service, env.db_path, row, key_id)
    finally:
        await server.aclose(5)
        service.close()


@pytest.mark.parametrize("path", [
    "/Observation/obs-1-0",
    "/Observation/obs-1-0/_history/1",
    "/Observation/obs-1-0/_history",
    "/Observation?patient=Patient/pat-1",
    "/Observation?identifier=urn:accession|ACC1-0",
    "/Observation?_id=obs-1-0",
    "/Observation?_lastUpdated=gt2000-01-01",  # a type scan, filtered on opened records
], ids=["read", "vread", "history", "search-patient", "search-identifier", "search-id",
        "search-scan"])
async def test_a_tampered_row_is_a_500_outcome_on_every_read_path(
        api: Api, path: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        async with api.http.get(api.url + path) as resp:
            status, body = resp.status, await resp.text()
            kind = resp.content_type
    assert (status, kind) == (500, "application/fhir+json"), body
    outcome: dict[str, Any] = await _json(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in outcome["issue"]] == ["exception"]
    assert "entry" not in outcome
    assert not any(p in body for p in PHI)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [(r.name, r.exc_info) for r in errors] == [("edge.fhirapi.service", None)]
    fields = getattr(errors[0], "fields", {})
    assert {k: fields.get(k) for k in ("table", "row", "type", "version", "key_id")} == {
        "table": "resources", "row": api.row, "type": "Observation", "version": 1,
        "key_id": api.key_id}
    logged = caplog.text + repr([getattr(r, "fields", None) for r in caplog.records])
    assert "Traceback" not in logged
    assert not any(p in logged for p in (*PHI, "obs-1-0", "pat-1"))
    assert api.service.counts["integrity_failures"] == 1


async def test_other_records_still_read(api: Api) -> None:
    async with api.http.get(api.url + "/Patient/pat-1") as resp:
        assert resp.status == 200


async def test_a_batch_answers_the_damaged_entry_alone(
        api: Api, caplog: pytest.LogCaptureFixture) -> None:
    """R4 3.1.0.11.1: batch entries stand alone. The entry meeting the tampered row is its
    own 500 (none of the record in it), the others are answered, and the batch is a 200
    batch-response, not one error for entries that may have been done. The ERROR line names
    the entry's interaction (its GET), not the batch's POST."""
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/pat-1"}},
        {"request": {"method": "GET", "url": "Observation/obs-1-0"}},
        {"request": {"method": "GET", "url": "Patient/pat-1/_history/1"}},
    ]}
    with caplog.at_level(logging.ERROR):
        async with api.http.post(api.url + "/", json=batch) as resp:
            status, body = resp.status, await resp.text()
    assert status == 200, body
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [getattr(r, "fields", {}).get("method") for r in errors] == ["GET"]
    answer = await _json(body)
    assert answer["type"] == "batch-response"
    codes = [e["response"]["status"].split()[0] for e in answer["entry"]]
    assert codes == ["200", "500", "200"]
    damaged = answer["entry"][1]
    assert "resource" not in damaged
    assert [i["code"] for i in damaged["response"]["outcome"]["issue"]] == ["exception"]
    assert answer["entry"][0]["resource"]["id"] == "pat-1"
    assert not any(p in json.dumps(damaged) for p in PHI)
    assert api.service.counts["integrity_failures"] == 1


async def _json(text: str) -> dict[str, Any]:
    return dict(json.loads(text))
