"""Server-side TLS contexts from ``tls`` config tables (TLS 1.2+, mutual TLS when a client CA
is configured). Shared by every TCP adapter so one policy covers all of them."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Protocol


class TLSConfig(Protocol):
    @property
    def cert(self) -> Path: ...

    @property
    def key(self) -> Path: ...

    @property
    def client_ca(self) -> Path | None: ...


def server_context(tls: TLSConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    if tls.client_ca is not None:
        # Mutual TLS: a client without a certificate signed by this CA fails the handshake.
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=tls.client_ca)
    return context


def client_context(*, ca: Path | None, cert: Path | None = None, key: Path | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = check_hostname
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context
