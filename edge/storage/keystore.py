"""Data keys at rest: wrapped under the KEK in the ``data_keys`` table.

A key is created once per (purpose, owner) — the inbox key, the index key, one per patient —
and looked up by id when a row names it. Destroying a key (erasure) deletes its row: what it
sealed can no longer be opened by anyone.
"""

from __future__ import annotations

import sqlite3
import threading

import sqlite_utils

from edge.crypto.errors import UnknownKeyError
from edge.crypto.keys import DataKey, KeyPurpose, Keyring, WrappedKey
from edge.storage.database import migration

TABLE = "data_keys"


@migration(2, "data keys")
def _create_data_keys(db: sqlite_utils.Database) -> None:
    db.table(TABLE).create(
        {"key_id": str, "purpose": str, "owner": str, "wrapped": bytes, "created_at": str},
        pk="key_id", not_null={"purpose", "owner", "wrapped", "created_at"},
    )
    db.table(TABLE).create_index(["purpose", "owner"], unique=True, index_name="data_keys_by_owner")


class KeyStore:
    """Unwrapped data keys, cached in memory. Thread-safe (the writer thread reads it too)."""

    def __init__(self, conn: sqlite3.Connection, keyring: Keyring) -> None:
        self._conn = conn
        self._keyring = keyring
        self._by_id: dict[str, DataKey] = {}
        self._lock = threading.Lock()

    def get_or_create(self, purpose: KeyPurpose, owner: str) -> DataKey:
        with self._lock:
            row = self._conn.execute(
                f"SELECT key_id, purpose, owner, wrapped FROM {TABLE} "  # noqa: S608
                "WHERE purpose = ? AND owner = ?", (purpose.value, owner)).fetchone()
            if row is not None:
                return self._unwrap(row)
            key = DataKey.generate(purpose, owner)
            wrapped = self._keyring.wrap(key)
            self._conn.execute(
                f"INSERT INTO {TABLE} (key_id, purpose, owner, wrapped, created_at) "  # noqa: S608
                "VALUES (?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (key.key_id, purpose.value, owner, wrapped.blob))
            self._by_id[key.key_id] = key
            return key

    def get(self, key_id: str) -> DataKey:
        key = self._by_id.get(key_id)
        if key is not None:
            return key
        with self._lock:
            row = self._conn.execute(
                f"SELECT key_id, purpose, owner, wrapped FROM {TABLE} WHERE key_id = ?",  # noqa: S608
                (key_id,)).fetchone()
            if row is None:
                raise UnknownKeyError(f"data key {key_id} does not exist (destroyed?)",
                                      key_id=key_id, fault="internal")
            return self._unwrap(row)

    def _unwrap(self, row: tuple[str, str, str, bytes]) -> DataKey:
        key = self._keyring.unwrap(WrappedKey(row[0], KeyPurpose(row[1]), row[2], row[3]))
        self._by_id[key.key_id] = key
        return key
