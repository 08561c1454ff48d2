"""Our log's leaves: one per record version.

``leaf_data = salt || RFC 8785 canonical JSON of the resource``, so the leaf hash is
SHA-256(0x00 || salt || JCS bytes) (RFC 9162 2.1.1 with our entry format). The salt is 32
random bytes per record version, stored encrypted with the record and disclosed only with
it: without it nobody holding the public log can test a guess of a record against a leaf.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

import rfc8785

from ledger_client.errors import LedgerError
from ledger_client.merkle import leaf_hash

SALT_SIZE = 32


class LeafError(LedgerError):
    """A resource that has no canonical form (not JSON-serializable, NaN, huge integers), or
    a salt of the wrong size."""


def new_salt() -> bytes:
    """32 bytes from the OS CSPRNG, one per record version."""
    return secrets.token_bytes(SALT_SIZE)


def canonical_json(resource: Mapping[str, Any] | str | bytes) -> bytes:
    """RFC 8785 (JCS) bytes of a resource given parsed, or as JSON text."""
    if isinstance(resource, str | bytes):
        try:
            resource = json.loads(resource)
        except ValueError as exc:
            # The position helps find the fault; the content is never echoed.
            raise LeafError(f"resource is not JSON (error at offset {getattr(exc, 'pos', '?')})"
                            ) from None
    try:
        return rfc8785.dumps(resource)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise LeafError(f"resource has no RFC 8785 form: {exc.__class__.__name__}") from None


def leaf_data(resource: Mapping[str, Any] | str | bytes, salt: bytes) -> bytes:
    """The log entry for a record version: salt || JCS(resource)."""
    if len(salt) != SALT_SIZE:
        raise LeafError(f"salt must be {SALT_SIZE} bytes, got {len(salt)}")
    return bytes(salt) + canonical_json(resource)


def record_leaf(resource: Mapping[str, Any] | str | bytes, salt: bytes) -> bytes:
    """The leaf hash of a record version: SHA-256(0x00 || salt || JCS(resource))."""
    return leaf_hash(leaf_data(resource, salt))
