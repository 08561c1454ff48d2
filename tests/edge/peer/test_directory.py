"""The peer directory: certificates to members by fingerprint or subject."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.config.model import PeerEntrySettings
from edge.peer.directory import PeerDirectory, cert_thumbprint
from ledger_client.checkpoint import NoteSigner
from tests.edge.peer.support import self_signed


def vkey(facility: str) -> str:
    return NoteSigner(f"hie-edge/{facility}", Ed25519PrivateKey.generate()).verifier.vkey()


def test_identify_by_fingerprint_or_subject() -> None:
    one, two, stranger = self_signed("one"), self_signed("two"), self_signed("three")
    fp = ":".join(f"{b:02x}" for b in hashlib.sha256(one).digest())
    directory = PeerDirectory.from_settings([
        PeerEntrySettings(id="one", url="https://one.test", certificate_sha256=fp,
                          signing_key=vkey("one")),
        PeerEntrySettings(id="two", url="https://two.test/", certificate_subject="CN=two",
                          signing_key=vkey("two"))])
    assert directory.identify(one).id == "one"  # type: ignore[union-attr]
    found = directory.identify(two)
    assert found is not None and found.id == "two" and found.url == "https://two.test"
    assert directory.identify(stranger) is None
    assert directory.identify(None) is None
    assert len(cert_thumbprint(one)) == 43


def test_a_certificate_matching_two_entries_is_refused() -> None:
    cert = self_signed("twin")
    directory = PeerDirectory.from_settings([
        PeerEntrySettings(id=n, url=f"https://{n}.test", certificate_subject="CN=twin",
                          signing_key=vkey(n)) for n in ("x", "y")])
    assert directory.identify(cert) is None
