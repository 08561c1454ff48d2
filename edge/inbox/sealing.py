"""The inbox's payload sealer: raw messages under the inbox data key, bound to their row.

Raw messages arrive before the patient is known, so they are sealed under one inbox key
(issue 5); normalization later re-keys them to the patient's key
(:func:`edge.store.rekey.rekey_inbox_message`). Duplicate detection uses a keyed fingerprint
(HMAC under the index key), so the database holds no plain hash that a guess of a message
could be tested against.
"""

from __future__ import annotations

import sqlite3

from edge.crypto.envelope import AAD, FORMAT_V1, open_, seal
from edge.crypto.keys import KeyPurpose
from edge.store._tx import write_transaction
from edge.store.keys import INBOX_OWNER, StoreKeys


class InboxSealer:
    payload_format = FORMAT_V1

    def __init__(self, keys: StoreKeys, conn: sqlite3.Connection) -> None:
        """Loads (on first start: creates) the inbox and index keys through ``conn``."""
        self._keys = keys
        with write_transaction(conn):
            self._key = keys.get_or_create(conn, KeyPurpose.INBOX, INBOX_OWNER)
            self._indexer = keys.indexer(conn)

    @property
    def key_id(self) -> str:
        return self._key.key_id

    def seal(self, table: str, row_id: int, version: int, plaintext: bytes) -> bytes:
        return seal(self._key, plaintext, AAD(table, str(row_id), version))

    def open(self, conn: sqlite3.Connection, table: str, row_id: int, version: int,
             key_id: str, blob: bytes) -> bytes:
        """Decrypt a payload; its key may be the inbox key or, once re-keyed, the patient's."""
        return open_(self._keys.get(conn, key_id), blob, AAD(table, str(row_id), version))

    def fingerprint(self, data: bytes) -> bytes:
        return self._indexer.fingerprint(data)

    def __repr__(self) -> str:
        return f"InboxSealer(key_id={self.key_id!r})"
