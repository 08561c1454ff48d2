"""A peer service behind the real mutual-TLS listener on loopback, with a dev CA, a server
certificate and the certificate of the asking member (``there``, the env's peer)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from adapters.peer.listener import PeerListener
from adapters.peer.tls import server_context
from edge.devca import IssuedCert, create_ca, issue
from edge.peer.service import PeerService
from tests.edge.peer.support import PeerEnv


@dataclass(frozen=True)
class Listening:
    bound: str  # host:port
    ca: IssuedCert
    server: IssuedCert
    client: IssuedCert  # the asking member's certificate and key
    client_der: bytes  # what its request-context JWT is bound to


@contextlib.asynccontextmanager
async def listening(tmp_path: Path, env: PeerEnv,
                    service: PeerService) -> AsyncIterator[Listening]:
    """``service`` (facility ``here``) served until the block ends; the client certificate
    identifies ``env.peer``, any other certificate nobody."""
    tls = tmp_path / "tls"
    tls.mkdir()
    ca = create_ca(tls, name="t")
    server = issue(ca, tls, "server", common_name="server")
    client = issue(ca, tls, "there", common_name="there")
    der = x509.load_pem_x509_certificate(client.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER)
    listener = PeerListener("127.0.0.1", 0, server_context(cert=server.cert, key=server.key,
                                                             ca=ca.cert),
                            lambda cert: env.peer if cert == der else None, service.handle)
    (bound,) = await listener.start()
    try:
        yield Listening(bound, ca, server, client, der)
    finally:
        await listener.aclose()
