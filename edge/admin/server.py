"""/healthz, /readyz, /metrics and /status on ``[admin].bind`` (aiohttp with AppRunner).

/healthz answers while the event loop turns. /readyz is 200 only when every listener is bound
and storage accepts writes; a ledger that cannot be reached makes it report ``degraded``
without failing readiness, because intake goes on without the ledger (issue 6).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from adapters.base import format_address
from edge.metrics import Metrics

StatusSource = Callable[[], Awaitable[dict[str, Any]]]
ReadinessSource = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]


class AdminServer:
    def __init__(self, host: str, port: int, *, metrics: Metrics, status: StatusSource,
                 readiness: ReadinessSource) -> None:
        self._host, self._port = host, port
        self._metrics = metrics
        self._status = status
        self._readiness = readiness
        self._runner: web.AppRunner | None = None
        self.bound: list[str] = []

    async def start(self) -> list[str]:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics_view)
        app.router.add_get("/status", self._status_view)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        self.bound = [format_address(sock.getsockname()) for sock in _sockets(site)]
        return self.bound

    async def aclose(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, detail = await self._readiness()
        return web.json_response({"ready": ready, **detail}, status=200 if ready else 503)

    async def _metrics_view(self, request: web.Request) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _status_view(self, request: web.Request) -> web.Response:
        return web.json_response(await self._status())


def _sockets(site: web.TCPSite) -> list[Any]:
    server = site._server
    return list(getattr(server, "sockets", None) or [])
