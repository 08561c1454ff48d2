"""The peer directory: which facility a client certificate belongs to.

The TLS handshake has already checked the certificate chain against the consortium CA (and
the CRL when one is configured); this module answers the second question, *which member is
it*, by the SHA-256 of the certificate (DER) or its subject, as ``[[peer.peers]]`` says. A
certificate the CA signed that matches no entry is refused (:mod:`adapters.peer.listener`).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edge.config.model import PeerEntrySettings
from ledger_client.checkpoint import NoteVerifier


def cert_sha256(der: bytes) -> bytes:
    """SHA-256 of a certificate's DER encoding (its fingerprint)."""
    return hashlib.sha256(der).digest()


def cert_thumbprint(der: bytes) -> str:
    """``x5t#S256`` (RFC 8705 3.1): base64url of the SHA-256 of the DER, unpadded."""
    return base64.urlsafe_b64encode(cert_sha256(der)).rstrip(b"=").decode("ascii")


def _normalize_fingerprint(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


@dataclass(frozen=True, slots=True)
class Peer:
    """A member facility: its id, URL and keys (from the directory)."""

    id: str
    url: str
    verifier: NoteVerifier  # its Ed25519 key: checkpoint notes and request-context JWTs
    certificate_sha256: bytes | None
    certificate_subject: str | None

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.verifier.public_key

    def matches(self, der: bytes) -> bool:
        """True when ``der`` is this facility's certificate, by fingerprint or subject."""
        if self.certificate_sha256 is not None:
            return cert_sha256(der) == self.certificate_sha256
        try:
            subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
        except ValueError:
            return False
        return subject == self.certificate_subject

    @classmethod
    def from_settings(cls, entry: PeerEntrySettings) -> Peer:
        return cls(entry.id, entry.url.rstrip("/"), NoteVerifier.from_vkey(entry.signing_key),
                   _normalize_fingerprint(entry.certificate_sha256)
                   if entry.certificate_sha256 else None, entry.certificate_subject)


class PeerDirectory:
    """Every configured member, looked up by certificate or id. Lookups by certificate are
    cached by fingerprint (a handshake per connection, a lookup per request)."""

    def __init__(self, peers: Iterable[Peer]) -> None:
        self._peers = {peer.id: peer for peer in peers}
        self._by_cert: dict[bytes, Peer | None] = {}

    @classmethod
    def from_settings(cls, entries: Iterable[PeerEntrySettings]) -> PeerDirectory:
        return cls(Peer.from_settings(entry) for entry in entries)

    def __len__(self) -> int:
        return len(self._peers)

    def all(self) -> list[Peer]:
        """Every member, by id."""
        return [self._peers[peer_id] for peer_id in sorted(self._peers)]

    def get(self, peer_id: str) -> Peer | None:
        return self._peers.get(peer_id)

    @property
    def ids(self) -> list[str]:
        return sorted(self._peers)

    def identify(self, der: bytes | None) -> Peer | None:
        """The member whose certificate ``der`` is; None for no certificate or an unknown one.
        A certificate matching two entries is ambiguous and refused (None)."""
        if not der:
            return None
        key = cert_sha256(der)
        if key in self._by_cert:
            return self._by_cert[key]
        found = [peer for peer in self._peers.values() if peer.matches(der)]
        peer = found[0] if len(found) == 1 else None
        if len(self._by_cert) < 4096:
            self._by_cert[key] = peer
        return peer
