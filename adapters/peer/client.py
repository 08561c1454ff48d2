"""The peer client: GET requests to a member over mutual TLS (aiohttp), answering the
status, the body and the certificate the server presented (so the caller can check it is the
member it meant to ask, not merely some member)."""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from aiohttp.connector import Connection

from adapters.errors import AdapterError


class PeerUnavailable(AdapterError):
    """The peer could not be asked: refused, TLS failure, timeout, or gone mid-answer.
    ``kind`` names which (no content). ``unanswered`` is true when the connection dropped
    after the request went out and before any of the answer came back: the member may never
    have seen the request, so a GET may be sent again on a new connection (RFC 9112 section
    9.3.1)."""

    fault = "environment"
    retriable = True

    def __init__(self, kind: str, *, unanswered: bool = False) -> None:
        super().__init__(f"peer unavailable: {kind}")
        self.kind = kind
        self.unanswered = unanswered


@dataclass(frozen=True, slots=True)
class PeerReply:
    status: int
    body: bytes = field(repr=False)
    content_type: str
    server_cert: bytes | None = field(repr=False)


class _CertResponse(aiohttp.ClientResponse):
    """Remembers the server's certificate when the response starts (aiohttp may hand the
    connection back to its pool before the caller sees the response)."""

    server_cert: bytes | None = None

    async def start(self, connection: Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if isinstance(ssl_object, ssl.SSLObject):
            self.server_cert = ssl_object.getpeercert(binary_form=True)
        return await super().start(connection)


class PeerClient:
    """One connection pool for many requests; use ``async with``."""

    def __init__(self, context: ssl.SSLContext, *, timeout_s: float, limit: int = 100) -> None:
        self._context = context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PeerClient:
        connector = aiohttp.TCPConnector(ssl=self._context, limit=self._limit)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                              response_class=_CertResponse)
        # aiohttp resends an idempotent request once, with the *same* headers, when a kept
        # connection drops before the answer; our request context would then be a replay
        # (401), reported as a refusal instead of a dropped connection. We retry ourselves,
        # with a fresh context (``get``). aiohttp has no public switch for this; its own
        # test client turns it off the same way.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, token: str | Callable[[], str] | None = None,
                  accept: str = "application/fhir+json") -> PeerReply:
        """GET ``url``, with ``Authorization: Bearer <token>`` when a token is given. A
        callable ``token`` is called for each attempt: a connection that drops before any
        answer (a kept-alive connection the member closed, or a member that went away) is
        retried once on a new connection, and a request context is single-use (its ``jti``),
        so the retry needs a fresh one. Raises :class:`PeerUnavailable`."""
        try:
            return await self._get(url, token, accept)
        except PeerUnavailable as exc:
            if not exc.unanswered:
                raise
        return await self._get(url, token, accept)

    async def _get(self, url: str, token: str | Callable[[], str] | None,
                   accept: str) -> PeerReply:
        assert self._session is not None, "use PeerClient in 'async with'"
        headers = {"Accept": accept}
        if token is not None:
            headers["Authorization"] = f"Bearer {token() if callable(token) else token}"
        answered = False
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                answered = True
                cert = resp.server_cert if isinstance(resp, _CertResponse) else None
                body = await resp.read()
                return PeerReply(resp.status, body, resp.content_type, cert)
        except TimeoutError:
            raise PeerUnavailable("timeout") from None
        except aiohttp.ClientConnectorCertificateError:
            raise PeerUnavailable("server certificate not trusted") from None
        except (aiohttp.ClientSSLError, ssl.SSLError):
            raise PeerUnavailable("tls handshake failed") from None
        except aiohttp.ClientConnectorError as exc:
            raise PeerUnavailable(_kind(exc)) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise PeerUnavailable(_kind(exc), unanswered=not answered) from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise PeerUnavailable(_kind(exc)) from None


def _kind(exc: BaseException) -> str:
    """A short, content-free name for how the connection failed (what an operator reads in
    ``hie-edge peer query``). A body cut short is told apart from a connection that never
    answered: the first means the member went away *while* answering (RFC 9112 section 6.3:
    fewer bytes than Content-Length, or an unfinished chunked body, is an incomplete
    message)."""
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "answer cut off mid-body"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected before answering"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "cannot connect"
    if isinstance(exc, ConnectionResetError) or getattr(exc, "errno", None) == errno.ECONNRESET:
        return "connection reset"
    return type(exc).__name__
