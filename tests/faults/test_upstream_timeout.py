"""An upstream FHIR source that stops answering (connection accepted, no response): the poll
fails with a retriable ``UpstreamError`` after the source's ``timeout_s``, the daemon stays
ready and keeps taking HL7v2 intake, and once the source answers again the next poll stores
what it had -- once. The source is a second hie-edge instance behind a proxy on loopback
that can be told to hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from adapters.base import format_address
from adapters.fhir.client import UpstreamError
from adapters.mllp.client import MLLPClient, parse_ack
from tests.faults.support import message, record_figures
from tests.integration.conftest import RunningDaemon, daemon_with
from tests.integration.test_fhir_api import observation, patient
from tests.integration.test_fhir_poller import fhir_url, post, search

SOURCE = """
[[fhir.sources]]
name = "upstream"
base_url = "{url}"
resource_types = ["Patient", "Observation"]
interval_s = 3600
bulk = "never"
timeout_s = 1
"""

pytestmark = pytest.mark.timeout(120)


class HangingProxy:
    """Forwards GETs to ``target`` -- or, while :attr:`hang` is set, accepts the request and
    never answers (until :meth:`aclose`)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.hang = asyncio.Event()
        self._closing = asyncio.Event()
        self.hung = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.url = "http://" + format_address(next(iter(server.sockets)).getsockname())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self.hang.is_set():
            self.hung += 1
            await self._closing.wait()
            raise web.HTTPServiceUnavailable
        async with aiohttp.ClientSession() as http, \
                http.get(self.target + request.path_qs, headers=request.headers) as reply:
            body = await reply.read()
            return web.Response(body=body, status=reply.status,
                                content_type=reply.content_type)

    async def aclose(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def upstream(tmp_path: Path) -> AsyncIterator[RunningDaemon]:
    async with daemon_with(tmp_path / "upstream") as running:
        yield running


async def test_an_upstream_that_stops_answering_times_out_and_is_caught_up_later(
        upstream: RunningDaemon, tmp_path: Path) -> None:
    base = fhir_url(upstream)
    proxy = HangingProxy(base)
    await proxy.start()
    try:
        async with aiohttp.ClientSession() as http:
            pat = await post(http, f"{base}/Patient", patient("TO-1"))
            made = [await post(http, f"{base}/Observation", observation(
                f"Patient/{pat['id']}", when=f"2024-07-0{day}T09:00:00Z"))
                for day in range(1, 4)]
        proxy.hang.set()
        async with daemon_with(tmp_path / "down", SOURCE.format(url=proxy.url)) as down:
            runtime = down.daemon._fhir
            assert runtime is not None
            source = runtime.pollers[0]
            with pytest.raises(UpstreamError) as caught:
                await source.poll_once()
            assert caught.value.retriable and caught.value.status == 0
            assert "TO-1" not in str(caught.value) and pat["id"] not in str(caught.value)
            assert proxy.hung >= 1
            # The rest of the daemon does not wait on the source.
            ready, _ = await down.daemon.readiness()
            assert ready
            host, port = down.mllp()
            async with MLLPClient.connect(host, port) as client:
                assert parse_ack(await client.send(message("DURING-HANG", 0))).code == "AA"
            failures = source.stats.failures

            proxy.hang.clear()  # the source answers again
            stored = await source.poll_once()
            assert stored == 1 + len(made)
            again = await source.poll_once()
            held = await search(down, f"Observation?patient=Patient/{pat['id']}")
            assert sorted(o["id"] for o in held) == sorted(o["id"] for o in made)
            assert {o["meta"]["versionId"] for o in held} == {"1"}
        record_figures("upstream_timeout", {
            "requests_hung": proxy.hung, "failures_counted": failures,
            "stored_after_recovery": stored, "stored_again": again, "duplicates": 0})
        assert again == 0
    finally:
        await proxy.aclose()
