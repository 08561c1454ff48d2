"""HTTP client for an upstream FHIR server: reads, paged searches, Bulk Data ``$export``.

Only moves bytes: what to fetch and what to do with it is :mod:`edge.fhirapi.poller`'s.
Errors are :class:`UpstreamError` with the HTTP status (0 for no answer) and whether trying
later can help. The bearer token (read from its file by the caller) is sent only to URLs under
the configured base URL, and to Bulk Data files whose manifest says ``requiresAccessToken``: a
``next`` link or a file elsewhere never gets it.

Bulk Data: FHIR Bulk Data Access IG 2.0 (kick-off with ``Prefer: respond-async`` → 202 and
``Content-Location``; poll it: 202 with ``Retry-After`` while in progress, 200 with the
manifest when done; files are ndjson).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin

import aiohttp

from adapters.errors import AdapterError

__all__ = ["BulkManifest", "UpstreamClient", "UpstreamError"]

FHIR_JSON = "application/fhir+json"


class UpstreamError(AdapterError):
    """An upstream request failed. ``status`` 0: no HTTP answer (network, timeout, TLS)."""

    def __init__(self, what: str, status: int, reason: str) -> None:
        super().__init__(f"{what}: {reason}" + (f" (HTTP {status})" if status else ""))
        self.status = status
        self.retriable = status in {0, 429} or status >= 500


@dataclass(frozen=True, slots=True)
class BulkManifest:
    transaction_time: str
    outputs: tuple[tuple[str, str], ...]  # (resource type, file URL)
    requires_token: bool


class UpstreamClient:
    def __init__(self, base_url: str, *, token: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout_s: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._ssl = ssl_context
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._sleep = sleep

    def __repr__(self) -> str:  # never the token
        return f"UpstreamClient({self.base_url!r})"

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _url(self, path_or_url: str) -> str:
        if "://" in path_or_url:
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def _headers(self, url: str, *, token: bool | None = None,
                 accept: str = FHIR_JSON) -> dict[str, str]:
        headers = {"Accept": accept}
        send = token if token is not None else url.startswith(self.base_url + "/")
        if self._token and send:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    async def _request(self, method: str, path_or_url: str, *,
                       params: Sequence[tuple[str, str]] | None = None,
                       headers: Mapping[str, str] | None = None,
                       ) -> tuple[int, Mapping[str, str], bytes]:
        url = self._url(path_or_url)
        merged = {**self._headers(url), **(headers or {})}
        try:
            async with self._http().request(method, url, params=params, headers=merged,
                                            ssl=self._ssl if self._ssl else True) as response:
                return response.status, dict(response.headers), await response.read()
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise UpstreamError(f"{method} {_what(url)}", 0, type(exc).__name__) from None

    async def get_json(self, path_or_url: str, *,
                       params: Sequence[tuple[str, str]] | None = None) -> dict[str, Any]:
        status, _, body = await self._request("GET", path_or_url, params=params)
        if status != 200:
            raise UpstreamError(f"GET {_what(self._url(path_or_url))}", status, "not 200")
        return _json_object(body, path_or_url)

    async def capability(self) -> dict[str, Any]:
        return await self.get_json("metadata")

    async def read(self, rtype: str, rid: str) -> dict[str, Any] | None:
        status, _, body = await self._request("GET", f"{rtype}/{rid}")
        if status in (404, 410):
            return None
        if status != 200:
            raise UpstreamError(f"GET {rtype}/ID", status, "read failed")
        return _json_object(body, rtype)

    async def search(self, rtype: str,
                     params: Sequence[tuple[str, str]]) -> AsyncIterator[dict[str, Any]]:
        """Each page (a searchset Bundle), following ``next`` links under the base URL."""
        page = await self.get_json(rtype, params=params)
        while True:
            yield page
            following = next((link.get("url") for link in page.get("link") or ()
                              if isinstance(link, Mapping) and link.get("relation") == "next"),
                             None)
            if not isinstance(following, str):
                return
            following = urljoin(self.base_url + "/", following)
            if not following.startswith(self.base_url + "/"):
                raise UpstreamError(f"GET {rtype}", 0, "a next link leaves the base URL")
            page = await self.get_json(following)

    # -- Bulk Data $export ----------------------------------------------------------------

    async def export(self, types: Sequence[str], since: str | None, *,
                     max_wait_s: float = 3600.0) -> BulkManifest:
        """Kick off a system-level ``$export`` and wait for its manifest."""
        params = [("_type", ",".join(types))]
        if since:
            params.append(("_since", since))
        status, headers, _ = await self._request(
            "GET", "$export", params=params, headers={"Prefer": "respond-async"})
        location = headers.get("Content-Location")
        if status != 202 or not location:
            raise UpstreamError("$export kick-off", status, "not accepted")
        location = urljoin(self.base_url + "/", location)
        waited = 0.0
        while True:
            status, headers, body = await self._request(
                "GET", location, headers=self._headers(location, token=True))
            if status == 200:
                return _manifest(body)
            if status != 202:
                raise UpstreamError("$export status", status, "export failed")
            delay = _retry_after(headers.get("Retry-After"))
            waited += delay
            if waited > max_wait_s:
                raise UpstreamError("$export status", 0, "still running; given up")
            await self._sleep(delay)

    async def ndjson(self, url: str, *, token: bool) -> AsyncIterator[dict[str, Any]]:
        """The resources of one export file, line by line."""
        full = urljoin(self.base_url + "/", url)
        headers = self._headers(full, token=token, accept="application/fhir+ndjson")
        try:
            async with self._http().get(full, headers=headers,
                                        ssl=self._ssl if self._ssl else True) as response:
                if response.status != 200:
                    raise UpstreamError("export file", response.status, "download failed")
                async for line in response.content:
                    if line.strip():
                        yield _json_object(line, "export file")
        except (aiohttp.ClientError, TimeoutError, ssl.SSLError) as exc:
            raise UpstreamError("export file", 0, type(exc).__name__) from None


def _what(url: str) -> str:
    # Logs name the resource type or operation, not ids or query values (PHI).
    path = url.split("?", 1)[0].split("://", 1)[-1].split("/", 1)[-1]
    return path.split("/", 1)[0] or "base"


def _json_object(body: bytes, what: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UpstreamError(_what(what), 200, "not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamError(_what(what), 200, "not a JSON object")
    return data


def _manifest(body: bytes) -> BulkManifest:
    data = _json_object(body, "$export manifest")
    outputs = tuple((str(o.get("type")), str(o.get("url"))) for o in data.get("output") or ()
                    if isinstance(o, Mapping) and o.get("url"))
    when = data.get("transactionTime")
    if not isinstance(when, str):
        raise UpstreamError("$export manifest", 200, "no transactionTime")
    return BulkManifest(when, outputs, bool(data.get("requiresAccessToken")))


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 1.0), 0.0), 300.0)
    except ValueError:
        return 1.0
