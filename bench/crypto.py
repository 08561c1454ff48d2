"""Per-call cost of edge.crypto's envelope and blind index, beside the bare primitives.

Prints operations/s for seal/open of a typical FHIR resource (~1.5 KiB) and for a blind index,
next to AESGCM.encrypt/decrypt and hmac.digest called directly in the same run: the ratio is
the envelope's overhead (header, AAD encoding, checks). Run: .venv/bin/python bench/crypto.py
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable

from _figures import record
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.crypto.blind_index import BlindIndexer
from edge.crypto.envelope import AAD, open_, seal
from edge.crypto.keys import DataKey, KeyPurpose

N = 50_000


def rate(fn: Callable[[], object], n: int = N) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def main() -> None:
    payload = os.urandom(1500)
    key = DataKey.generate(KeyPurpose.PATIENT, "bench")
    aad = AAD("resources", "Observation/0f3c2a9e-5d1b-4c1e-9a57-1f2e3d4c5b6a", 7)
    raw = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    raw_aad = b"x" * 80
    blob = seal(key, payload, aad)
    raw_ct = raw.encrypt(nonce, payload, raw_aad)
    index_key = DataKey.generate(KeyPurpose.INDEX, "index")
    indexer = BlindIndexer(index_key)
    mac_key = os.urandom(32)

    rows = [
        (
            "seal",
            rate(lambda: seal(key, payload, aad)),
            rate(lambda: raw.encrypt(nonce, payload, raw_aad)),
        ),
        (
            "open",
            rate(lambda: open_(key, blob, aad)),
            rate(lambda: raw.decrypt(nonce, raw_ct, raw_aad)),
        ),
        (
            "blind index (identifier)",
            rate(lambda: indexer.identifier("urn:oid:2.16.840.1.113883.3.1234", "MRN0012345")),
            rate(lambda: hmac.digest(mac_key, b"x" * 60, "sha256")),
        ),
    ]
    for name, ours, bare in rows:
        print(
            f"{name:26s} {ours:12,.0f}/s   bare primitive {bare:12,.0f}/s   ratio {ours / bare:.2f}"
        )
        record("crypto", name, ours, "op/s", baseline="bare primitive", baseline_value=bare)


if __name__ == "__main__":
    main()
