"""The peer listener: aiohttp behind TLS with client certificates required.

Connection path: the TLS handshake verifies the client's chain against the consortium CA and
the CRL (:mod:`adapters.peer.tls`): no certificate, another CA's, an expired or a revoked one
fail *in the handshake*, and asyncio never reports the connection. When the handshake
completes, :class:`_Gate` (the protocol asyncio hands the transport to) maps the certificate
to a member of the directory; an unknown certificate has its transport aborted right there,
before the HTTP protocol is even created: no request byte is ever parsed for it. A known one
is handed to aiohttp's request handler, and each request reaches ``handle`` with its member.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from adapters.base import format_address
from edge.peer.directory import Peer
from edge.peer.service import PeerRequest, PeerResponse

log = logging.getLogger(__name__)

Identify = Callable[[bytes | None], Peer | None]
Handle = Callable[[PeerRequest], Awaitable[PeerResponse]]
# A client that connects and then says nothing holds a socket at most this long.
_HANDSHAKE_TIMEOUT_S = 10.0



@dataclass(slots=True)
class ListenerCounters:
    accepted: int = 0
    refused_unknown: int = 0
    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)


def _peer_cert(transport: asyncio.BaseTransport) -> bytes | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject):
        return None
    return ssl_object.getpeercert(binary_form=True)


class _Gate(asyncio.Protocol):
    """Admits a connection to the HTTP layer only for a member's certificate."""

    def __init__(self, make_inner: Callable[[], asyncio.Protocol], identify: Identify,
                 counters: ListenerCounters, on_closed: Callable[[], None]) -> None:
        self._make_inner = make_inner
        self._identify = identify
        self._counters = counters
        self._on_closed = on_closed
        self._inner: asyncio.Protocol | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = self._identify(_peer_cert(transport))
        if peer is None:
            self._counters.refused_unknown += 1
            peername = transport.get_extra_info("peername")
            log.warning("peer certificate not in the directory; connection refused",
                        extra={"fields": {"peer": format_address(peername) if peername
                                          else "?"}})
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
            return
        self._counters.accepted += 1
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)
        self._on_closed()

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class PeerListener:
    """Serves the peer API over mutual TLS: on ``host:port`` (:meth:`start`), or on
    connections accepted elsewhere and handed over (:meth:`adopt`: a peer worker process
    serves what the daemon accepted, :mod:`edge.peer.workers`)."""

    name = "peer"

    def __init__(self, host: str, port: int, context: ssl.SSLContext, identify: Identify,
                 handle: Handle, *, on_closed: Callable[[], None] | None = None) -> None:
        """``on_closed`` is called once for every connection :meth:`adopt` took, when it
        ends (refused in the handshake or by the gate, closed by either side)."""
        self._host, self._port = host, port
        self._context = context
        self._identify = identify
        self._handle = handle
        self._on_closed = on_closed or (lambda: None)
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._adopting: set[asyncio.Task[None]] = set()
        self.counters = ListenerCounters()
        self.bound: list[str] = []

    async def start(self, *, listen: bool = True) -> list[str]:
        """Set up the HTTP application; bind and accept unless ``listen`` is False (then
        connections arrive through :meth:`adopt` only)."""
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._view)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        if listen:
            self._server = await asyncio.get_running_loop().create_server(
                self._gate, self._host, self._port, ssl=self._context, reuse_address=True,
                ssl_handshake_timeout=_HANDSHAKE_TIMEOUT_S)
            self.bound = [format_address(sock.getsockname()) for sock in self._server.sockets]
        return self.bound

    def _gate(self) -> _Gate:
        server = self._runner.server if self._runner is not None else None
        assert server is not None
        return _Gate(server, self._identify, self.counters, self._on_closed)

    def adopt(self, sock: socket.socket) -> None:
        """Serve ``sock``, a connection accepted by another process: the TLS handshake and
        everything after it happen here, as for a connection :meth:`start` accepted."""
        task = asyncio.create_task(self._handshake(sock))
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def _handshake(self, sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self._gate, sock, ssl=self._context, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT_S)
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError
            # Refused in the handshake (no certificate, another CA's, revoked), or the peer
            # went away: as asyncio's own accept loop does for a listening socket, nothing
            # is reported beyond the handshake's failure; the gate never saw it.
            sock.close()
            self._on_closed()

    async def aclose(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._adopting:
            task.cancel()
        if self._runner is not None:
            await asyncio.wait_for(self._runner.cleanup(), timeout)
            self._runner = None
        self._server = None

    async def _view(self, request: web.Request) -> web.StreamResponse:
        self.counters.requests += 1
        transport = request.transport
        der = _peer_cert(transport) if transport is not None else None
        peer = self._identify(der)
        if peer is None or der is None:  # cannot happen past the gate; refuse anyway
            raise web.HTTPForbidden()
        peername = transport.get_extra_info("peername") if transport is not None else None
        answer = await self._handle(PeerRequest(
            peer=peer, cert_der=der, method=request.method, path=request.path,
            query={k: request.query.getone(k) for k in request.query},
            authorization=request.headers.get("Authorization"),
            remote=format_address(peername) if peername else None,
            base_url=f"https://{request.host}"))
        return web.Response(status=answer.status, body=answer.body,
                            headers={**answer.headers, "Content-Type": answer.content_type,
                                     "Cache-Control": "no-store"})
