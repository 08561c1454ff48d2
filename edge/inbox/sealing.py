"""The inbox's payload sealer: raw messages under the inbox data key, bound to their row.

Raw messages arrive before the patient is known, so they are sealed under one inbox key
(issue 5); normalization later re-keys them to the patient's key. Duplicate detection uses
a keyed fingerprint (HMAC under the index key), so the database holds no plain hash that a
guess of a message could be tested against.
"""

from __future__ import annotations

from edge.crypto.blind_index import BlindIndexer
from edge.crypto.envelope import AAD, FORMAT_V1, open_, seal
from edge.crypto.keys import KeyPurpose
from edge.storage.keystore import KeyStore

INBOX_OWNER = "inbox"
INDEX_OWNER = "index"


class InboxSealer:
    payload_format = FORMAT_V1

    def __init__(self, keys: KeyStore) -> None:
        self._keys = keys
        self._key = keys.get_or_create(KeyPurpose.INBOX, INBOX_OWNER)
        self._indexer = BlindIndexer(keys.get_or_create(KeyPurpose.INDEX, INDEX_OWNER))

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def seal(self, table: str, row_id: int, version: int, plaintext: bytes) -> bytes:
        return seal(self._key, plaintext, AAD(table, str(row_id), version))

    def open(self, table: str, row_id: int, version: int, key_id: str, blob: bytes) -> bytes:
        return open_(self._keys.get(key_id), blob, AAD(table, str(row_id), version))

    def fingerprint(self, data: bytes) -> bytes:
        return self._indexer.fingerprint(data)

    def __repr__(self) -> str:
        return f"InboxSealer(key_id={self.key_id!r})"
