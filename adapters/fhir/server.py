"""The FHIR API's HTTP shell (aiohttp): requests to :class:`~edge.fhirapi.service.FHIRRequest`,
:class:`~edge.fhirapi.service.FHIRResponse` back to HTTP. No business logic here (design.md,
"examples to follow" 2-3): the handler decides everything.

TLS: with ``[fhir.tls]``; with a ``client_ca`` a client may present a certificate (verified
against it; its subject CN names the client). When a tokens file is configured too the
certificate is optional (``CERT_OPTIONAL``), so bearer-token clients can connect; otherwise it
is required.

It is an adapter like the MLLP listener (``run(deliver, ready)``, ``aclose``, ``describe``), but
an HTTP request is not a block of bytes with one answer, so it answers through the handler it
was built with and does not use ``deliver``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

from aiohttp import web

from adapters.base import Deliver, Ready, format_address
from adapters.tls import server_context
from edge.config.model import FHIRSettings
from edge.fhirapi.outcome import operation_outcome
from edge.fhirapi.service import FHIR_JSON, FHIRRequest, FHIRResponse, Handler

log = logging.getLogger(__name__)


class FHIRServer:
    name = "fhir"

    def __init__(self, settings: FHIRSettings, handler: Handler) -> None:
        self._settings = settings
        self._handler = handler
        self._runner: web.AppRunner | None = None
        self._closed = asyncio.Event()
        self._in_flight = 0
        self.bound: list[str] = []

    # -- Adapter interface -------------------------------------------------------------

    async def run(self, deliver: Deliver, ready: Ready) -> None:
        ready(await self.start())
        await self._closed.wait()

    async def start(self) -> list[str]:
        """Bind and serve in the background; returns the bound addresses."""
        app = web.Application(client_max_size=self._settings.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", self._view)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                     shutdown_timeout=10.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.bind.host, self._settings.bind.port,
                           ssl_context=self._ssl_context(), reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        server = site._server
        self.bound = [format_address(s.getsockname())
                      for s in getattr(server, "sockets", None) or ()]
        log.info("FHIR API listening", extra={"fields": {"bound": ",".join(self.bound),
                                                         "tls": self._settings.tls is not None}})
        return self.bound

    async def aclose(self, timeout: float) -> None:
        if self._runner is not None:
            # Stops accepting, then waits for in-flight requests up to the timeout.
            await self._runner.shutdown()
            await self._runner.cleanup()
            self._runner = None
        self._closed.set()

    def describe(self) -> dict[str, object]:
        return {"kind": "fhir", "tls": self._settings.tls is not None,
                "in_flight": self._in_flight}

    # -- HTTP --------------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self._settings.tls
        if tls is None:
            return None
        context = server_context(tls)
        if tls.client_ca is not None and self._settings.tokens_file is not None:
            context.verify_mode = ssl.CERT_OPTIONAL  # bearer-token clients need no cert
        return context

    async def _view(self, request: web.Request) -> web.StreamResponse:
        self._in_flight += 1
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _send(FHIRResponse(413, operation_outcome(
                    413, f"body larger than {self._settings.max_body_bytes} bytes", "body")))
            peer = request.transport.get_extra_info("peername") if request.transport else None
            response = await self._handler(FHIRRequest(
                method=request.method.upper(),
                path=request.path.strip("/"),
                query=tuple(request.query.items()),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                base_url=f"{request.scheme}://{request.host}",
                peer=format_address(peer) if peer else "unknown",
                peer_ip=str(peer[0]) if peer else "",
                client_cert=_client_cn(request),
            ))
            return _send(response)
        finally:
            self._in_flight -= 1


def _client_cn(request: web.Request) -> str | None:
    """The subject CN of a client certificate the TLS layer verified, else None."""
    transport = request.transport
    if transport is None or transport.get_extra_info("sslcontext") is None:
        return None
    cert: Any = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "certificate"


def _send(response: FHIRResponse) -> web.Response:
    headers = dict(response.headers)
    if response.body is None:
        return web.Response(status=response.status, headers=headers)
    headers["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
    text = json.dumps(response.body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(status=response.status, body=text.encode(), headers=headers)
