"""Cryptographic core of the encrypted store: envelope encryption (AES-256-GCM), the key
hierarchy (KEK, wrapped data keys, rotation), blind indexes and Shamir shares of the KEK.

Modules: :mod:`.envelope` (seal/open payloads), :mod:`.keys` (KEK files, data keys, keyring),
:mod:`.blind_index` (HMAC-SHA256 indexes), :mod:`.shamir` (KEK split/recover),
:mod:`.errors`.
"""

from __future__ import annotations

from edge.crypto.blind_index import BlindIndexer, IndexKind, parse_identifier_token
from edge.crypto.envelope import AAD, open_, peek_key_id, reseal, seal
from edge.crypto.errors import (
    CryptoError,
    IndexInputError,
    IntegrityError,
    KeyFileError,
    ShareError,
    UnknownKeyError,
)
from edge.crypto.keys import (
    DataKey,
    Kek,
    KeyPurpose,
    Keyring,
    WrappedKey,
    generate_kek_file,
    load_keyring,
    rotate_kek_file,
)
from edge.crypto.shamir import recover_kek, split_kek

__all__ = [
    "AAD",
    "BlindIndexer",
    "CryptoError",
    "DataKey",
    "IndexInputError",
    "IndexKind",
    "IntegrityError",
    "Kek",
    "KeyFileError",
    "KeyPurpose",
    "Keyring",
    "ShareError",
    "UnknownKeyError",
    "WrappedKey",
    "generate_kek_file",
    "load_keyring",
    "open_",
    "parse_identifier_token",
    "peek_key_id",
    "recover_kek",
    "reseal",
    "rotate_kek_file",
    "seal",
    "split_kek",
]
