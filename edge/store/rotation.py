"""KEK rotation while the daemon runs: record the new KEK, re-wrap every data key, retire the old.

The steps (``hie-edge keys rotate``, :mod:`edge.cli.keys`), each safe to crash after and to
run again:

1. :func:`~edge.crypto.keys.rotate_kek_file` archives the current KEK as ``kek.<id>`` and
   writes a new ``kek``.
2. :func:`record_current_kek` writes the new KEK id to ``kek_state``.
3. :func:`rewrap_all` re-wraps the ``data_keys`` rows still under another KEK, ``batch_size``
   rows per transaction, each transaction committing on its own: the daemon's writer waits
   for one short batch at a time, never for the whole pass.
4. :func:`retire_unused_keks` deletes every archived KEK that no row needs any more.

The race with a running daemon, and why it is closed:

- *Data keys the daemon already unwrapped* stay cached: re-wrapping changes the wrapping, not
  the key, so nothing the daemon holds becomes wrong.
- *A key the daemon has not unwrapped yet*, now wrapped under the new KEK it has not loaded:
  unwrapping raises ``UnknownKeyError``, and :class:`~edge.store.keys.StoreKeys` re-reads the
  keys directory once and retries (a SIGHUP does the same ahead of time).
- *A key the daemon creates during the rotation*: before wrapping a new key,
  ``StoreKeys.get_or_create`` reads ``kek_state`` in the same write transaction as its
  INSERT, and re-reads the keyring when the recorded KEK is not its current one. Step 2
  commits before step 3 starts, so every key created after step 2 is wrapped under the new
  KEK, and a key created before it is an ordinary row that step 3 re-wraps.
- *Retiring a KEK while a key under it is being written*: step 4 checks and deletes the files
  while holding the database's write lock (``BEGIN IMMEDIATE``), so no row can be written
  between "nothing needs KEK x" and "kek.x is gone".

The inbox's keys come from the same :class:`edge.store.keys.StoreKeys`, so they follow the
same ``kek_state`` rule.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge.crypto.errors import IntegrityError
from edge.crypto.keys import (
    KEK_ID_LEN,
    KeyPurpose,
    Keyring,
    WrappedKey,
    read_archived_keks,
    retire_kek,
)
from edge.store._tx import write_transaction
from edge.store.schema import DATA_KEYS, KEK_STATE

# The KEK id is bytes 1..8 of a wrapped blob (edge.crypto.keys, WrappedKey layout).
_KEK_ID_SQL = f"substr(wrapped, 2, {KEK_ID_LEN})"


@dataclass(slots=True)
class RewrapReport:
    rewrapped: int = 0
    batches: int = 0
    failed: list[str] = field(default_factory=list)  # key ids that did not unwrap


def record_current_kek(conn: sqlite3.Connection, kek_id: str) -> None:
    """Make ``kek_id`` the KEK every new data key must be wrapped under."""
    with write_transaction(conn):
        conn.execute(
            f"INSERT INTO {KEK_STATE} (id, kek_id, updated_at) "  # noqa: S608
            "VALUES (1, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
            "ON CONFLICT (id) DO UPDATE SET kek_id = excluded.kek_id, "
            "updated_at = excluded.updated_at", (kek_id,))


def recorded_kek(conn: sqlite3.Connection) -> str | None:
    row = conn.execute(f"SELECT kek_id FROM {KEK_STATE} WHERE id = 1").fetchone()  # noqa: S608
    return None if row is None else str(row[0])


def kek_ids_in_use(conn: sqlite3.Connection) -> dict[str, int]:
    """How many data keys each KEK wraps."""
    return {bytes(kek).hex(): int(n) for kek, n in conn.execute(
        f"SELECT {_KEK_ID_SQL}, count(*) FROM {DATA_KEYS} GROUP BY 1")}  # noqa: S608


def rewrap_batch(conn: sqlite3.Connection, keyring: Keyring, limit: int,
                 skip: frozenset[str] = frozenset()) -> tuple[int, list[str]]:
    """Re-wrap up to ``limit`` rows not under the current KEK, in one transaction. Returns
    how many were re-wrapped and the ids of rows that failed to unwrap (left as they are;
    ``skip`` lists ids already known to fail)."""
    current = keyring.current.kek_id_bytes
    done, failed = 0, []
    with write_transaction(conn):
        marks = ",".join("?" * len(skip))
        exclude = f"AND key_id NOT IN ({marks})" if skip else ""
        rows = conn.execute(
            f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS} "  # noqa: S608
            f"WHERE {_KEK_ID_SQL} != ? {exclude} LIMIT ?",
            (current, *sorted(skip), limit)).fetchall()
        for key_id, purpose, owner, blob in rows:
            try:
                wrapped = keyring.rewrap(WrappedKey(key_id, KeyPurpose(purpose), owner, blob))
            except (IntegrityError, ValueError):
                failed.append(key_id)
                continue
            conn.execute(f"UPDATE {DATA_KEYS} SET wrapped = ? WHERE key_id = ?",  # noqa: S608
                         (wrapped.blob, key_id))
            done += 1
    return done, failed


def rewrap_all(conn: sqlite3.Connection, keyring: Keyring, *, batch_size: int = 500,
               progress: Callable[[int], None] | None = None) -> RewrapReport:
    """Re-wrap every data key under the keyring's current KEK, ``batch_size`` per committed
    transaction, until none is left (keys created meanwhile included). Raises
    ``UnknownKeyError`` when a row needs a KEK the keyring does not hold."""
    report = RewrapReport()
    skip: frozenset[str] = frozenset()
    while True:
        done, failed = rewrap_batch(conn, keyring, batch_size, skip)
        if failed:
            report.failed.extend(failed)
            skip = skip | set(failed)
        if not done and not failed:
            return report
        report.rewrapped += done
        report.batches += 1
        if progress is not None:
            progress(report.rewrapped)


def retire_unused_keks(conn: sqlite3.Connection, keyring: Keyring,
                       keys_dir: Path) -> list[str]:
    """Delete every archived ``kek.<id>`` in ``keys_dir`` that no data key row is wrapped
    under, checked and deleted under the write lock. Returns the retired ids."""
    retired: list[str] = []
    with write_transaction(conn):
        in_use = kek_ids_in_use(conn)
        for kek in read_archived_keks(keys_dir):
            if kek.kek_id != keyring.current.kek_id and kek.kek_id not in in_use:
                retire_kek(keys_dir, kek.kek_id)
                retired.append(kek.kek_id)
    return retired
