"""Upstream FHIR sources: a second hie-edge instance as the source for incremental polling,
and a small fake Bulk Data server (real aiohttp on loopback) for ``$export``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from adapters.base import format_address
from edge.fhirapi.poller import SourcePoller
from edge.fhirapi.schema import CHECKPOINTS
from edge.fhirapi.service import FHIRRequest
from edge.normalize.fhir_json import UPSTREAM_EXTENSION
from tests.integration.conftest import RunningDaemon, daemon_with, start_daemon
from tests.integration.test_fhir_api import SYSTEM, observation, patient

SOURCE = """
[[fhir.sources]]
name = "upstream"
base_url = "{url}"
resource_types = ["Patient", "Observation"]
interval_s = 3600
page_size = 2
"""


def fhir_url(running: RunningDaemon) -> str:
    return f"http://{running.daemon.bound['fhir'][0]}"


def poller(running: RunningDaemon) -> SourcePoller:
    runtime = running.daemon._fhir
    assert runtime is not None
    return runtime.pollers[0]


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any],
               method: str = "POST") -> dict[str, Any]:
    async with http.request(method, url, data=json.dumps(body),
                            headers={"Content-Type": "application/fhir+json"}) as response:
        assert response.status in (200, 201), await response.text()
        result: dict[str, Any] = await response.json(content_type=None)
        return result


async def search(running: RunningDaemon, query: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"{fhir_url(running)}/{query}") as response:
        assert response.status == 200
        bundle = await response.json(content_type=None)
    return [e["resource"] for e in bundle.get("entry", [])]


def checkpoints(running: RunningDaemon) -> dict[tuple[str, str], str]:
    with sqlite3.connect(running.settings.storage.dir / "edge.db") as conn:
        rows = conn.execute(f"SELECT source, resource_type, last_updated "
                            f"FROM {CHECKPOINTS}").fetchall()
    return {(s, t): v for s, t, v in rows}


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with daemon_with(tmp_path / "upstream") as running:
        yield running


async def test_polls_a_second_instance_incrementally_and_resumes(
        upstream: RunningDaemon, tmp_path: Path) -> None:
    base = fhir_url(upstream)
    async with aiohttp.ClientSession() as http:
        pat = await post(http, f"{base}/Patient", patient("UP-1"))
        first = [await post(http, f"{base}/Observation", observation(
            f"Patient/{pat['id']}", when=f"2024-06-0{day}T09:00:00Z")) for day in range(1, 5)]
        config_dir = tmp_path / "downstream"
        async with daemon_with(config_dir, SOURCE.format(url=base)) as down:
            source = poller(down)
            await source.poll_once()  # waits for the start-up poll too (one lock)
            assert source.stats.failures == 0 and source.stats.mode == "search"
            held = await search(down, f"Observation?patient=Patient/{pat['id']}")
            assert sorted(o["id"] for o in held) == sorted(o["id"] for o in first)
            marks = held[0]["meta"]["extension"]
            assert marks[0]["url"] == UPSTREAM_EXTENSION
            assert marks[0]["valueUri"].startswith(f"{base}/Observation/")
            # Sealed under the same patient key: found by the patient's identifier too.
            assert [p["id"] for p in await search(
                down, f"Patient?identifier={SYSTEM}|UP-1")] == [pat["id"]]
            saved = checkpoints(down)
            assert set(saved) == {("upstream", "Patient"), ("upstream", "Observation")}
            assert saved["upstream", "Observation"] == max(
                o["meta"]["lastUpdated"] for o in first)

            # Changes upstream: one new, one updated. Only they are stored again.
            stored_before = source.stats.stored
            await post(http, f"{base}/Observation", observation(f"Patient/{pat['id']}",
                                                                 "2345-7"))
            await post(http, f"{base}/Observation/{first[0]['id']}",
                       {**first[0], "status": "amended"}, method="PUT")
            await source.poll_once()
            assert source.stats.stored - stored_before == 2
        # Restart: the checkpoint is in the database; nothing is fetched twice as new.
        down = await start_daemon(config_dir / "edge.toml")
        try:
            source = poller(down)
            await source.poll_once()
            assert source.stats.stored == 0 and source.stats.failures == 0
            assert source.stats.unchanged <= 4  # resumed at the checkpoint, not from zero
            amended = await search(down, f"Observation?_id={first[0]['id']}")
            assert amended[0]["status"] == "amended"
            assert amended[0]["meta"]["versionId"] == "2"
        finally:
            assert await down.stop() == 0


async def test_subscription_notification_fetches_what_changed(upstream: RunningDaemon,
                                                              tmp_path: Path) -> None:
    base = fhir_url(upstream)
    async with aiohttp.ClientSession() as http, \
            daemon_with(tmp_path / "down", SOURCE.format(url=base)) as down:
        source = poller(down)
        await source.poll_once()
        pat = await post(http, f"{base}/Patient", patient("SUB-1"))
        obs = await post(http, f"{base}/Observation", observation(f"Patient/{pat['id']}"))
        # An R4B/R5 style notification: SubscriptionStatus naming the focus. The Patient is
        # not named: the poller fetches it because the Observation needs its key.
        note = {"resourceType": "Bundle", "type": "history", "entry": [{"resource": {
            "resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
            "notificationEvent": [{"eventNumber": "1",
                                   "focus": {"reference": f"{base}/Observation/{obs['id']}"}}],
        }}]}
        result = await post(http, f"{fhir_url(down)}/subscription-notification/upstream", note)
        assert "2 resources fetched" in result["issue"][0]["diagnostics"]
        assert [o["id"] for o in await search(down, f"Observation?_id={obs['id']}")] == [
            obs["id"]]
        async with http.post(f"{fhir_url(down)}/subscription-notification/nosuch") as response:
            assert response.status == 404


async def test_notification_naming_what_the_source_lacks_stores_nothing(
        upstream: RunningDaemon, tmp_path: Path) -> None:
    async with daemon_with(tmp_path / "down", SOURCE.format(url=fhir_url(upstream))) as down:
        runtime = down.daemon._fhir
        assert runtime is not None
        response = await runtime.service.handle(FHIRRequest(
            "POST", "subscription-notification/upstream", peer_ip="127.0.0.1",
            headers={"content-type": "application/fhir+json"},
            body=json.dumps({"resourceType": "Observation", "id": "nope"}).encode()))
        assert response.status == 200 and response.body is not None
        assert "0 resources fetched" in response.body["issue"][0]["diagnostics"]


# -- Bulk Data $export against a fake bulk server ------------------------------------------

@dataclass
class FakeBulkServer:
    resources: dict[str, list[dict[str, Any]]]
    kickoffs: list[dict[str, str]] = field(default_factory=list)
    polls: int = 0
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/fhir/metadata", self.metadata)
        app.router.add_get("/fhir/$export", self.kickoff)
        app.router.add_get("/fhir/status/1", self.status)
        app.router.add_get("/files/{type}.ndjson", self.file)
        return app

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response({"resourceType": "CapabilityStatement", "rest": [{
            "mode": "server", "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]}]})

    async def kickoff(self, request: web.Request) -> web.Response:
        assert request.headers["Prefer"] == "respond-async"
        self.kickoffs.append(dict(request.query))
        return web.Response(status=202, headers={"Content-Location": f"{self.url}/fhir/status/1"})

    async def status(self, request: web.Request) -> web.Response:
        self.polls += 1
        if self.polls % 2 == 1:  # in progress once, then done
            return web.Response(status=202, headers={"Retry-After": "0", "X-Progress": "50%"})
        return web.json_response({
            "transactionTime": f"2024-07-0{len(self.kickoffs)}T00:00:00Z",
            "request": f"{self.url}/fhir/$export", "requiresAccessToken": False,
            "output": [{"type": t, "url": f"{self.url}/files/{t}.ndjson"}
                       for t in reversed(list(self.resources))],  # Observation file first
            "error": []})

    async def file(self, request: web.Request) -> web.Response:
        lines = [json.dumps(r) for r in self.resources[request.match_info["type"]]]
        return web.Response(body="\n".join(lines).encode() + b"\n",
                            content_type="application/fhir+ndjson")


@pytest.fixture
async def bulk_server() -> AsyncIterator[FakeBulkServer]:
    pat = {**patient("BULK-1"), "id": "bulk-patient"}
    obs = [{**observation("Patient/bulk-patient", when=f"2024-06-1{i}T00:00:00Z"),
            "id": f"bulk-obs-{i}"} for i in range(3)]
    fake = FakeBulkServer({"Patient": [pat], "Observation": obs})
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.url = "http://" + format_address(site._server.sockets[0].getsockname())  # type: ignore[union-attr]
    yield fake
    await runner.cleanup()


async def test_bulk_export_when_the_server_offers_it(bulk_server: FakeBulkServer,
                                                     tmp_path: Path) -> None:
    extra = SOURCE.format(url=f"{bulk_server.url}/fhir")
    async with daemon_with(tmp_path / "down", extra) as down:
        source = poller(down)
        await source.poll_once()
        assert source.stats.mode == "bulk" and source.stats.failures == 0
        held = await search(down, "Observation?patient=Patient/bulk-patient")
        assert sorted(o["id"] for o in held) == ["bulk-obs-0", "bulk-obs-1", "bulk-obs-2"]
        kicked = len(bulk_server.kickoffs)
        since = checkpoints(down)["upstream", "*"]
        assert since == f"2024-07-0{kicked}T00:00:00Z"  # the last export's transactionTime
        await source.poll_once()
        assert bulk_server.kickoffs[kicked]["_since"] == since
        assert bulk_server.kickoffs[kicked]["_type"] == "Patient,Observation"
        assert source.stats.unchanged >= 4  # the same files again: nothing new stored
