"""The peer client: GET requests to a member over mutual TLS (aiohttp), answering the
status, the body and the certificate the server presented (so the caller can check it is the
member it meant to ask, not merely some member)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from types import TracebackType

import aiohttp
from aiohttp.connector import Connection

from adapters.errors import AdapterError


class PeerUnavailable(AdapterError):
    """The peer could not be asked: refused, TLS failure, timeout. ``kind`` names which."""

    fault = "environment"
    retriable = True

    def __init__(self, kind: str) -> None:
        super().__init__(f"peer unavailable: {kind}")
        self.kind = kind


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
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, *, token: str | None = None,
                  accept: str = "application/fhir+json") -> PeerReply:
        """GET ``url`` (with ``Authorization: Bearer token`` when given)."""
        assert self._session is not None, "use PeerClient in 'async with'"
        headers = {"Accept": accept}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                cert = resp.server_cert if isinstance(resp, _CertResponse) else None
                body = await resp.read()
                return PeerReply(resp.status, body, resp.content_type, cert)
        except TimeoutError:
            raise PeerUnavailable("timeout") from None
        except aiohttp.ClientConnectorCertificateError:
            raise PeerUnavailable("server certificate not trusted") from None
        except (aiohttp.ClientSSLError, ssl.SSLError):
            raise PeerUnavailable("tls handshake failed") from None
        except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
            raise PeerUnavailable(type(exc).__name__) from None
