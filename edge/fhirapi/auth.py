"""Who a FHIR API request comes from: mutual TLS, a bearer token, or anonymous on loopback.

In this order (docs/fhir.md):

1. a client certificate the TLS layer verified against ``[fhir.tls] client_ca`` → the client
   is named by the certificate's subject common name;
2. ``Authorization: Bearer TOKEN`` → the SHA-256 of TOKEN must be in ``[fhir] tokens_file``
   (``NAME sha256:HEX`` lines). Only hashes are kept: a copy of the file lets nobody in. Tokens
   must be long random strings (32+ bytes), which is why a plain hash suffices; a wrong token
   is 401 even where anonymous access is allowed;
3. nothing → anonymous, only when ``allow_anonymous_loopback = true`` and the peer address is
   a loopback address; otherwise 401 with ``WWW-Authenticate: Bearer`` (RFC 6750 3).

The tokens file is re-read when its modification time or size changes, so revoking a client
takes effect at its next request without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from edge.config.model import FHIRSettings
from edge.errors import EdgeError
from edge.fhirapi.outcome import FHIRAPIError

__all__ = ["Authenticator", "Client", "TokensFileError", "hash_token", "read_tokens_file"]

log = logging.getLogger(__name__)

_LINE: Final = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.@-]{0,63})\s+sha256:([0-9a-fA-F]{64})$")
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="hie-edge"'}


class TokensFileError(EdgeError):
    """The tokens file cannot be read or has a malformed line (named by number)."""

    fault = "config"


@dataclass(frozen=True, slots=True)
class Client:
    """An authenticated client: PHI-free, logged and recorded as the inbox sender."""

    name: str
    method: Literal["mtls", "bearer", "anonymous"]


def hash_token(token: str) -> str:
    """The tokens-file form of a token's hash: ``sha256:HEX``."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()


def read_tokens_file(path: Path) -> dict[bytes, str]:
    """``{sha256 digest: client name}``; raises :class:`TokensFileError` naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TokensFileError(f"{path}: cannot read ({type(exc).__name__})") from None
    out: dict[bytes, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise TokensFileError(f"{path} line {number}: expected NAME sha256:HEX")
        out[bytes.fromhex(match.group(2))] = match.group(1)
    return out


class Authenticator:
    def __init__(self, settings: FHIRSettings) -> None:
        self._settings = settings
        self._tokens: dict[bytes, str] = {}
        self._stamp: tuple[int, int] | None = None
        if settings.tokens_file is not None:
            self._refresh(settings.tokens_file)

    def authenticate(self, *, authorization: str | None, peer_ip: str,
                     cert_subject: str | None) -> Client:
        """The request's client, or :class:`FHIRAPIError` 401."""
        if cert_subject:
            return Client(cert_subject, "mtls")
        if authorization:
            scheme, _, credential = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not credential.strip():
                raise FHIRAPIError(401, "Authorization", "only Bearer tokens are accepted",
                                   headers=_CHALLENGE)
            name = self._bearer(credential.strip())
            if name is None:
                raise FHIRAPIError(401, "Authorization", "unknown or revoked token",
                                   headers={"WWW-Authenticate":
                                            'Bearer realm="hie-edge", error="invalid_token"'})
            return Client(name, "bearer")
        if self._settings.allow_anonymous_loopback and _is_loopback(peer_ip):
            return Client("anonymous", "anonymous")
        raise FHIRAPIError(401, "Authorization", "authentication required",
                           headers=_CHALLENGE)

    def _bearer(self, credential: str) -> str | None:
        path = self._settings.tokens_file
        if path is None:
            return None
        self._refresh(path)
        digest = hashlib.sha256(credential.encode()).digest()
        found = None
        for known, name in self._tokens.items():  # every entry: no early exit to time
            if hmac.compare_digest(known, digest):
                found = name
        return found

    def _refresh(self, path: Path) -> None:
        try:
            info = os.stat(path)
        except OSError:
            if self._stamp is None:
                raise TokensFileError(f"{path}: cannot read") from None
            return  # keep the last good list; the next stat may succeed
        stamp = (info.st_mtime_ns, info.st_size)
        if stamp == self._stamp:
            return
        try:
            self._tokens = read_tokens_file(path)
        except TokensFileError as exc:
            if self._stamp is None:
                raise
            # A half-edited file: keep the last good list rather than lock every client out.
            log.error("tokens file not reloaded", extra={"fields": {"reason": str(exc)}})
        self._stamp = stamp


def _is_loopback(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
