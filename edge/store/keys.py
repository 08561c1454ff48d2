"""Data keys for the store, looked up through the caller's connection.

The one holder of data keys for the inbox, the store and the CLI. Functions run inside the
group committer's transactions (and inside the CLI's), so creating a patient's key must
happen on *that* connection, in *that* transaction: a second connection would wait on the
writer's own lock. :class:`StoreKeys` works on the ``data_keys`` table through whatever
connection it is handed, and caches unwrapped keys in memory.

The database, not the cache, decides whether a key exists: every use selects the key's row
(a primary-key or unique-index lookup, joined into the row query where it can be), so a key
destroyed by ``erase`` in another process is never used again here, even while its material is
still cached; :meth:`StoreKeys.prune` drops such material.

KEK rotation while running (see :mod:`edge.store.rotation`): a key row re-wrapped under a KEK
this process has not loaded makes unwrapping raise ``UnknownKeyError``; the keyring is then
re-read once (:meth:`StoreKeys.reload`) and the unwrap retried. Before wrapping a *new* key,
the KEK recorded in ``kek_state`` is compared with the keyring's current KEK inside the same
write transaction, and the keyring re-read when they differ: no key is ever wrapped under a KEK
that rotation has already left behind.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edge.crypto.blind_index import BlindIndexer
from edge.crypto.errors import UnknownKeyError
from edge.crypto.keys import DataKey, KeyPurpose, Keyring, WrappedKey
from edge.pickled import reduce_by_fields
from edge.store.schema import DATA_KEYS, KEK_STATE

SYSTEM_OWNER = "system"
INBOX_OWNER = "inbox"
INDEX_OWNER = "index"

KeyRow = tuple[str, str, str, bytes]  # key_id, purpose, owner, wrapped


@dataclass(frozen=True, slots=True)
class PatientRef:
    """The identifier a patient's data key is owned by (its blind index, never the text):
    the patient's primary identifier as a FHIR ``Identifier.system`` and value. ``erase
    --patient SYSTEM|VALUE`` names the same pair. ``repr`` shows neither."""

    system: str
    value: str

    def __repr__(self) -> str:
        return "PatientRef(<redacted>)"

    __str__ = __repr__
    __reduce__ = reduce_by_fields


def patient_ref_of(patient: Mapping[str, Any]) -> PatientRef | None:
    """The identifier a Patient's records are sealed under: among its identifiers with a
    system and a value, the first typed ``MR``, else the first; None when it has none. The one
    rule for every writer and reader (the FHIR API and poller through
    :func:`edge.normalize.fhir_json.patient_key_of`, the peer API, the accounting); the HL7
    path's PID-3 choice gives the same, its identifiers always carrying a system."""
    usable = [i for i in patient.get("identifier") or ()
              if isinstance(i, Mapping) and isinstance(i.get("system"), str)
              and isinstance(i.get("value"), str) and i["system"] and i["value"].strip()]
    if not usable:
        return None

    def is_mr(ident: Mapping[str, Any]) -> bool:
        kind = ident.get("type")
        codings = kind.get("coding") if isinstance(kind, Mapping) else None
        return any(isinstance(c, Mapping) and c.get("code") == "MR" for c in codings or ())

    primary = next((i for i in usable if is_mr(i)), usable[0])
    return PatientRef(primary["system"], primary["value"])


def _now_sql() -> str:
    return "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


_INSERT_KEY = (f"INSERT INTO {DATA_KEYS} (key_id, purpose, owner, wrapped, created_at) "  # noqa: S608
               f"VALUES (?, ?, ?, ?, {_now_sql()})")


class StoreKeys:
    """Unwrapped data keys cached in memory; the key rows read through the caller's
    connection. Thread-safe: the writer thread and reader threads share one instance."""

    def __init__(self, load_keyring: Callable[[], Keyring]) -> None:
        self._load = load_keyring
        self._keyring = load_keyring()
        self._by_id: dict[str, DataKey] = {}
        self._indexer: BlindIndexer | None = None
        self._lock = threading.Lock()

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def reload(self) -> Keyring:
        """Re-read the keyring (the daemon calls this on SIGHUP; it also happens by itself on
        an unknown KEK and when ``kek_state`` names another current KEK)."""
        keyring = self._load()
        self._keyring = keyring  # one assignment: readers see the old or the new keyring
        return keyring

    # -- lookups ----------------------------------------------------------------------

    def get(self, conn: sqlite3.Connection, key_id: str) -> DataKey:
        """The key ``key_id``. Raises ``UnknownKeyError`` when it has no row (destroyed)."""
        row = conn.execute(
            f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS} WHERE key_id = ?",  # noqa: S608
            (key_id,)).fetchone()
        if row is None:
            self.forget(key_id)
            raise UnknownKeyError(f"data key {key_id} does not exist (destroyed?)",
                                  key_id=key_id, fault="environment")
        return self.from_row(row)

    def cached(self, key_id: str) -> DataKey | None:
        """The key ``key_id`` if this process has unwrapped it, without touching the database.
        Only for rows read in the same snapshot as their key's existence (see the module
        docstring): a resource row that exists implies its key row exists, since erasure
        deletes both in one transaction."""
        return self._by_id.get(key_id)

    def from_row(self, row: KeyRow) -> DataKey:
        """The key stored in a ``data_keys`` row (unwrapped once, then cached). The cached
        key's purpose and owner are the authenticated ones from its first unwrap."""
        key = self._by_id.get(row[0])
        if key is not None:
            return key
        wrapped = WrappedKey(row[0], KeyPurpose(row[1]), row[2], row[3])
        try:
            key = self._keyring.unwrap(wrapped)
        except UnknownKeyError:
            # Re-wrapped by a rotation this process has not seen yet: read the keys again.
            key = self.reload().unwrap(wrapped)
        with self._lock:
            self._by_id[key.key_id] = key
        return key

    def get_or_create(self, conn: sqlite3.Connection, purpose: KeyPurpose,
                      owner: str) -> DataKey:
        """The key for ``(purpose, owner)``, created when it does not exist. Call it inside a
        write transaction on ``conn``: the new row commits or rolls back with the caller's
        rows, and the ``kek_state`` check below is serialized with rotation."""
        row = conn.execute(
            f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS} "  # noqa: S608
            "WHERE purpose = ? AND owner = ?", (purpose.value, owner)).fetchone()
        if row is not None:
            return self.from_row(row)
        return self.create(conn, purpose, owner)

    def create(self, conn: sqlite3.Connection, purpose: KeyPurpose, owner: str) -> DataKey:
        """A new key for ``(purpose, owner)``, for a caller that has just seen, in the same
        write transaction on ``conn``, that there is none (:meth:`get_or_create` otherwise;
        a second key for an owner is refused by the ``data_keys_by_owner`` unique index)."""
        keyring = self._current_keyring(conn)
        key = DataKey.generate(purpose, owner)
        conn.execute(_INSERT_KEY, (key.key_id, purpose.value, owner, keyring.wrap_blob(key)))
        with self._lock:
            self._by_id[key.key_id] = key
        return key

    def _current_keyring(self, conn: sqlite3.Connection) -> Keyring:
        row = conn.execute(f"SELECT kek_id FROM {KEK_STATE} WHERE id = 1").fetchone()  # noqa: S608
        keyring = self._keyring
        if row is None or row[0] == keyring.current.kek_id:
            return keyring
        keyring = self.reload()
        if keyring.current.kek_id != row[0]:
            raise UnknownKeyError(
                f"the database says new keys go under KEK {row[0]}, but the KEK file holds "
                f"{keyring.current.kek_id}: finish or redo `hie-edge keys rotate`",
                key_id=row[0])
        return keyring

    def indexer(self, conn: sqlite3.Connection) -> BlindIndexer:
        """The blind indexer under the index key (the same key the inbox uses), created when
        missing (call inside a write transaction then)."""
        indexer = self._indexer
        if indexer is None:
            indexer = BlindIndexer(self.get_or_create(conn, KeyPurpose.INDEX, INDEX_OWNER))
            self._indexer = indexer
        return indexer

    def existing_indexer(self, conn: sqlite3.Connection) -> BlindIndexer | None:
        """The blind indexer, or ``None`` when no index key exists yet (nothing is indexed):
        for read paths, which must not write."""
        if self._indexer is None:
            row = conn.execute(
                f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS} "  # noqa: S608
                "WHERE purpose = ? AND owner = ?",
                (KeyPurpose.INDEX.value, INDEX_OWNER)).fetchone()
            if row is None:
                return None
            self._indexer = BlindIndexer(self.from_row(row))
        return self._indexer

    def patient_index(self, conn: sqlite3.Connection, patient: PatientRef) -> bytes:
        """The patient's blind index (kind ``patient-key``): the owner of their data key."""
        return self.indexer(conn).patient_key(patient.system, patient.value)

    def for_owner(self, conn: sqlite3.Connection, patient_index: bytes | None) -> DataKey:
        """The key that seals a record: the patient's, or the SYSTEM key when none."""
        if patient_index is None:
            return self.get_or_create(conn, KeyPurpose.SYSTEM, SYSTEM_OWNER)
        return self.get_or_create(conn, KeyPurpose.PATIENT, patient_index.hex())

    # -- cache hygiene ----------------------------------------------------------------

    def forget(self, key_id: str) -> None:
        """Drop a key's material from memory (after its row was deleted)."""
        with self._lock:
            self._by_id.pop(key_id, None)

    def prune(self, conn: sqlite3.Connection) -> int:
        """Drop cached keys whose rows no longer exist (erased by another process). Returns
        how many were dropped."""
        cached = list(self._by_id)
        gone: list[str] = []
        for start in range(0, len(cached), 500):
            chunk = cached[start : start + 500]
            marks = ",".join("?" * len(chunk))
            present = {r[0] for r in conn.execute(
                f"SELECT key_id FROM {DATA_KEYS} WHERE key_id IN ({marks})",  # noqa: S608
                chunk)}
            gone.extend(k for k in chunk if k not in present)
        for key_id in gone:
            self.forget(key_id)
        return len(gone)

    def __repr__(self) -> str:
        return f"StoreKeys(cached={len(self._by_id)}, keyring={self._keyring!r})"
