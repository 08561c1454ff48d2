"""TLS contexts for peer traffic: TLS 1.2+, a certificate required on both sides, checked
against the consortium CA; with a CRL configured, a revoked leaf certificate fails the
handshake.

What the handshake itself checks (OpenSSL, before any application byte): the chain to the
consortium CA, validity dates, and (``VERIFY_CRL_CHECK_LEAF``) that the leaf is not on the
CRL. Python's ``ssl`` offers no per-certificate callback, so *which member* a valid
certificate belongs to is checked right after the handshake completes, before the HTTP layer
sees the connection (:mod:`adapters.peer.listener`).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def _verify(context: ssl.SSLContext, ca: Path, crl: Path | None) -> None:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=str(ca))
    if crl is not None:
        # A CRL file is loaded like a CA file (PEM); with the flag set, a leaf whose issuer
        # has no CRL loaded fails too, so the flag is only set when a CRL is configured.
        context.load_verify_locations(cafile=str(crl))
        context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    context.verify_flags |= ssl.VERIFY_X509_STRICT


def server_context(*, cert: Path, key: Path, ca: Path, crl: Path | None = None,
                   ) -> ssl.SSLContext:
    """The peer listener's context: clients must present a certificate the CA signed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    _verify(context, ca, crl)
    return context


def client_context(*, cert: Path, key: Path, ca: Path, crl: Path | None = None,
                   ) -> ssl.SSLContext:
    """A peer client's context: presents our certificate, checks the server's against the
    CA (and the host name against its subjectAltName)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.load_cert_chain(cert, key)
    _verify(context, ca, crl)
    return context
