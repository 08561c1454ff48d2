"""FHIR resource versions, encrypted under the patient's data key, with blind indexes.

One row per version (``resources``, see :mod:`edge.store.schema`). Writing a version
(:meth:`ResourceStore.put_many`, of records made ready off the writer by
:mod:`edge.store.prepared`) sets ``meta.versionId`` and ``meta.lastUpdated``, draws a 32-byte
salt, computes the ledger leaf hash SHA-256(0x00 || salt || RFC 8785 JSON) (design.md,
"canonical JSON"; :mod:`ledger_client.leaf`) and seals ``salt || JSON`` under the patient's key
with AAD (``resources``, ``Type/id``, version) and the leaf hash as the envelope's bound value
(format 2, :mod:`edge.crypto.envelope`). One seal covers salt and record: they are disclosed
together or not at all, and it halves the AES-GCM calls on the write path.

Every read opens and verifies the rows it returns, and raises
:class:`~edge.crypto.errors.IntegrityError` naming the row instead of returning anything from a
row that fails. Checks, in order:

1. the row's data key exists (it is gone after an erasure) and unwraps (its row unaltered);
2. the key belongs to the row's patient (the key owner is authenticated by the wrap), or is the
   SYSTEM key for a row without a patient: a row moved between patients is refused;
3. AES-GCM authenticates the ciphertext under that key and the AAD: a flipped byte, a body
   copied from another resource, an old version replayed over a newer one all fail;
4. the stored leaf hash equals the hash of what was opened (the link to the ledger): for a
   format-2 row the leaf hash column is part of what AES-GCM authenticated in 3, so it is the
   hash computed from this record when it was sealed (changing the column fails 3); a
   format-1 row (written before format 2) has its record hashed again, and verification
   passes (:mod:`edge.store.verify`) hash every row again;
5. the record's ``resourceType``, ``id`` and ``meta.versionId`` match the row;
6. a search by identifier or demographics re-derives the blind indexes from the record and
   requires the one searched for: a forged index row cannot pull in an unrelated record.

Not detectable locally: deleting the newest version (a read then returns the one before). The
ledger catches it: the newest version's leaf is in the log and its record is missing.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from edge.crypto.blind_index import BlindIndexer, IndexKind, parse_identifier_token
from edge.crypto.envelope import AAD, binds, open_, seal
from edge.crypto.errors import IntegrityError
from edge.crypto.keys import DataKey, KeyPurpose
from edge.storage.errors import StorageError
from edge.store._tx import read_snapshot, write_transaction
from edge.store.errors import ResourceInputError
from edge.store.keys import SYSTEM_OWNER, KeyRow, PatientRef, StoreKeys
from edge.store.prepared import IndexTerm, PreparedRecord, index_terms, prepare_record
from edge.store.schema import DATA_KEYS, DEMOGRAPHICS, IDENTIFIERS, RESOURCES
from ledger_client.leaf import SALT_SIZE, new_salt
from ledger_client.log import MerkleLog
from ledger_client.merkle import leaf_hash

Clock = Callable[[], datetime]

# A row as read: the resource columns, then (joined, for passes over many rows) its key row.
BASE_COLUMNS = ("r.row, r.type, r.id, r.version, r.patient, r.key_id, r.last_updated, r.body, "
                "r.leaf_hash, r.ledger_index")
ROW_COLUMNS = f"{BASE_COLUMNS}, k.key_id, k.purpose, k.owner, k.wrapped"
ROW_FROM = f"{RESOURCES} r LEFT JOIN {DATA_KEYS} k ON k.key_id = r.key_id"
KEY_ROW_BY_ID = f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS} WHERE key_id = ?"  # noqa: S608
_KEY_OF_OWNER = f"SELECT key_id FROM {DATA_KEYS} WHERE purpose = ? AND owner = ?"  # noqa: S608
_INSERT_VERSION = (f"INSERT INTO {RESOURCES} (type, id, version, patient, key_id, "  # noqa: S608
                   "last_updated, body, leaf_hash, ledger_index) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# BASE_COLUMNS but type and id, which the caller gives (each column fetched costs ~0.15 µs).
_READ_NEWEST = ("SELECT r.row, r.version, r.patient, r.key_id, r.last_updated, r.body, "  # noqa: S608
                f"r.leaf_hash, r.ledger_index FROM {RESOURCES} r WHERE r.type = ? AND r.id = ? "
                "ORDER BY r.version DESC LIMIT 1")
_KIND_TEXT = {kind: kind.value for kind in IndexKind}  # Enum.value is a descriptor call
_IDENTS_PER_STATEMENT = 400  # 800 parameters: far below SQLite's limit of 32766
# Only the newest version of each resource (search results are current versions).
CURRENT_ONLY = (f"r.version = (SELECT max(r2.version) FROM {RESOURCES} r2 "  # noqa: S608
            "WHERE r2.type = r.type AND r2.id = r.id)")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def fhir_instant(moment: datetime) -> str:
    """A FHIR ``instant`` in UTC with milliseconds (``2024-05-01T12:00:00.000Z``)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


# Not frozen: a frozen dataclass's __init__ costs ~2 µs more (object.__setattr__ per field),
# and one of each is made per resource written or read.
@dataclass(slots=True, repr=False)
class StoredVersion:
    """What :meth:`ResourceStore.put` wrote. ``salt`` is secret (it is what keeps the
    public leaf hash from being tested against guesses): hand it only to the ledger stage."""

    type: str
    id: str
    version: int
    leaf_hash: bytes
    salt: bytes
    row: int
    last_updated: str
    ledger_index: int | None = None  # set when put_many appended the leaf to a log

    def __repr__(self) -> str:
        return f"StoredVersion({self.type}/{self.id}/_history/{self.version}, row={self.row})"


@dataclass(slots=True, repr=False)
class ResourceVersion:
    """A verified, decrypted resource version. ``repr`` shows no content."""

    type: str
    id: str
    version: int
    last_updated: str
    resource: dict[str, Any]
    salt: bytes
    leaf_hash: bytes
    ledger_index: int | None
    row: int

    def __repr__(self) -> str:
        return f"ResourceVersion({self.type}/{self.id}/_history/{self.version}, row={self.row})"


def _key_owner(owner: bytes | None) -> tuple[str, str]:
    """The ``data_keys`` (purpose, owner) of the key that seals a record of ``owner``."""
    if owner is None:
        return KeyPurpose.SYSTEM.value, SYSTEM_OWNER
    return KeyPurpose.PATIENT.value, owner.hex()


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows of a read. A database error other than an OperationalError (locked, busy)
    means the file itself cannot be read: a StorageError saying so."""
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise StorageError("read resources", "the database is damaged "
                           f"({type(exc).__name__}); run PRAGMA integrity_check",
                           retriable=False) from None


def _fail(row: int, aad: AAD, key_id: str | None, problem: str) -> IntegrityError:
    return IntegrityError(f"{aad.describe()} (row {row}): {problem}", table=aad.table,
                          row_id=aad.row_id, version=aad.version, key_id=key_id, row=row,
                          problem=problem)


def _latest_versions(conn: sqlite3.Connection, idents: Collection[tuple[str, str]]
                     ) -> dict[tuple[str, str], tuple[int, int | None]]:
    """The newest stored version of each ``(type, id)`` and its row (``(0, None)`` for none),
    a few hundred per statement: one probe of the identity index each, without a statement
    per resource."""
    found: dict[tuple[str, str], tuple[int, int | None]] = {}
    pending = list(idents)
    for start in range(0, len(pending), _IDENTS_PER_STATEMENT):
        chunk = pending[start:start + _IDENTS_PER_STATEMENT]
        rows = ",".join(["(?, ?)"] * len(chunk))
        found.update(((t, i), (int(v or 0), row)) for t, i, v, row in conn.execute(
            "SELECT v.column1, v.column2, r.version, r.row FROM (VALUES "  # noqa: S608
            f"{rows}) v LEFT JOIN {RESOURCES} r ON r.row = (SELECT row FROM {RESOURCES} "
            "WHERE type = v.column1 AND id = v.column2 ORDER BY version DESC LIMIT 1)",
            [part for ident in chunk for part in ident]))
    return found


def identifier_indexes(indexer: BlindIndexer, resource: Mapping[str, Any]) -> set[bytes]:
    """Blind indexes of a resource's ``identifier`` element(s) that carry a value."""
    return {indexer.term(kind, fields) for kind, fields in index_terms(resource)
            if kind is IndexKind.IDENTIFIER}


def demographic_indexes(indexer: BlindIndexer,
                        resource: Mapping[str, Any]) -> set[tuple[str, bytes]]:
    """Blind indexes of a Patient's names, birth date and gender as ``(kind, value)``."""
    return {(kind.value, indexer.term(kind, fields)) for kind, fields in index_terms(resource)
            if kind is not IndexKind.IDENTIFIER}


class ResourceStore:
    """Reads and writes resource versions through a caller's connection.

    Writes (:meth:`put`) belong inside a write transaction (a group-commit operation); called
    outside one, ``put`` opens its own. Reads run in one snapshot. Thread-safe as far as
    :class:`StoreKeys` is; a connection must not be shared between threads at once.
    """

    def __init__(self, keys: StoreKeys, *, clock: Clock = _utc_now) -> None:
        self.keys = keys
        self._clock = clock

    # -- writing ----------------------------------------------------------------------

    def put(self, conn: sqlite3.Connection, resource: Mapping[str, Any], *,
            patient: PatientRef | None) -> StoredVersion:
        """Store ``resource`` as the next version of ``resourceType/id``, sealed under
        ``patient``'s data key (created on first use) or the SYSTEM key when ``None``.
        Raises :class:`ResourceInputError` (naming the element) for a resource it cannot
        store; nothing is written then."""
        return self.put_many(conn, [prepare_record(resource)], patient=patient)[0]

    def put_many(self, conn: sqlite3.Connection, records: Sequence[PreparedRecord], *,
                 patient: PatientRef | None, log: MerkleLog | None = None) -> list[StoredVersion]:
        """Store each prepared record as the next version of its ``Type/id`` (a record given
        twice gets two versions, in order), all sealed under ``patient``'s key, one clock
        reading for all. With ``log``, their leaves are appended to it in the same order and
        each row is written with its ledger index. Prepare the records with
        :func:`~edge.store.prepared.prepare_record` (the processing stage does it in its
        worker processes: here only what needs the database and the keys is left)."""
        if not records:
            return []
        # No savepoint of its own inside a caller's transaction: nothing below can refuse a
        # record once the first row is written, and the group committer gives each operation
        # a savepoint of its own. (Tested here rather than by write_transaction: the context
        # manager alone costs ~1 µs a message.)
        if conn.in_transaction:
            return self._put_many(conn, records, patient, log)
        with write_transaction(conn):
            return self._put_many(conn, records, patient, log)

    def _put_many(self, conn: sqlite3.Connection, records: Sequence[PreparedRecord],
                  patient: PatientRef | None, log: MerkleLog | None) -> list[StoredVersion]:
        indexer = self.keys.indexer(conn)
        owner = (None if patient is None
                 else indexer.patient_key(patient.system, patient.value))
        # The key's existence is checked on every write: a key erased by another process
        # is never used again.
        key_owner = _key_owner(owner)
        found = conn.execute(_KEY_OF_OWNER, key_owner).fetchone()
        if found is None:
            # None in this transaction, which holds the write lock: create it without
            # asking again (a patient's first message).
            key = self.keys.create(conn, KeyPurpose(key_owner[0]), key_owner[1])
        else:
            key = self.keys.cached(found[0]) or self.keys.for_owner(conn, owner)
        now = fhir_instant(self._clock())
        stored_before = _latest_versions(conn, {(r.type, r.id) for r in records})
        latest = {ident: version for ident, (version, _) in stored_before.items()}
        # Index rows describe current versions only, so only the newest stored version
        # of each resource written here can have any: they go (one probe each, however
        # long the history).
        replaced = [(row,) for _, row in stored_before.values() if row is not None]
        for table in (IDENTIFIERS, DEMOGRAPHICS):
            conn.executemany(f"DELETE FROM {table} WHERE resource = ?",  # noqa: S608
                             replaced)
        sealed: list[tuple[PreparedRecord, int, bytes, bytes, bytes]] = []
        for record in records:
            ident = (record.type, record.id)
            version = latest[ident] = latest[ident] + 1
            salt = new_salt()
            plain = salt + record.canonical(version, now)
            leaf = leaf_hash(plain)
            # Format 2: the leaf hash column is bound into the AAD (check 4).
            body = seal(key, plain, AAD(RESOURCES, f"{record.type}/{record.id}", version),
                        bound=leaf)
            sealed.append((record, version, salt, leaf, body))
        first = None if log is None else log.append([item[3] for item in sealed])
        stored: list[StoredVersion] = []
        # The newest of each Type/id here gets index rows.
        index_rows: dict[tuple[str, str], tuple[int, frozenset[IndexTerm]]] = {}
        for offset, (record, version, salt, leaf, body) in enumerate(sealed):
            index = None if first is None else first + offset
            row = conn.execute(_INSERT_VERSION, (
                record.type, record.id, version, owner, key.key_id, now, body, leaf,
                index)).lastrowid
            assert row is not None
            index_rows[(record.type, record.id)] = (row, record.terms)
            stored.append(StoredVersion(record.type, record.id, version, leaf, salt, row,
                                        now, index))
        identifiers, demographics = [], []
        for row, terms in index_rows.values():
            for kind, fields in terms:
                value = indexer.term(kind, fields)
                if kind is IndexKind.IDENTIFIER:
                    identifiers.append((row, value))
                else:
                    demographics.append((row, _KIND_TEXT[kind], value))
        if identifiers:
            conn.executemany(f"INSERT INTO {IDENTIFIERS} (resource, value) VALUES (?, ?)",  # noqa: S608
                             identifiers)
        if demographics:
            conn.executemany(
                f"INSERT INTO {DEMOGRAPHICS} (resource, kind, value) VALUES (?, ?, ?)",  # noqa: S608
                demographics)
        return stored

    def set_ledger_index(self, conn: sqlite3.Connection, row: int, index: int) -> None:
        """Record where the ledger appended a version's leaf (the ledger stage)."""
        conn.execute(f"UPDATE {RESOURCES} SET ledger_index = ? WHERE row = ?",  # noqa: S608
                     (index, row))

    def unanchored(self, conn: sqlite3.Connection, limit: int = 1000) -> list[tuple[int, bytes]]:
        """``(row, leaf_hash)`` of versions not yet in the ledger, oldest first."""
        return [(int(r), bytes(h)) for r, h in conn.execute(
            f"SELECT row, leaf_hash FROM {RESOURCES} WHERE ledger_index IS NULL "  # noqa: S608
            "ORDER BY row LIMIT ?", (limit,))]

    # -- reading ----------------------------------------------------------------------

    def read(self, conn: sqlite3.Connection, rtype: str, rid: str) -> ResourceVersion | None:
        """The newest version of ``rtype/rid``, or ``None`` when there is none."""
        rows = _rows(conn, _READ_NEWEST, (rtype, rid))
        if not rows:
            return None
        found = rows[0]
        return self._open_found(conn, (found[0], rtype, rid, *found[1:]))

    def vread(self, conn: sqlite3.Connection, rtype: str, rid: str,
              version: int) -> ResourceVersion | None:
        """Version ``version`` of ``rtype/rid``, or ``None``."""
        rows = self._select(conn, "r.type = ? AND r.id = ? AND r.version = ?",
                            (rtype, rid, version))
        return rows[0] if rows else None

    def history(self, conn: sqlite3.Connection, rtype: str, rid: str) -> list[ResourceVersion]:
        """Every stored version of ``rtype/rid``, newest first (FHIR R4 3.1.0.4, history)."""
        return self._select(conn, "r.type = ? AND r.id = ? ORDER BY r.version DESC",
                            (rtype, rid))

    def search(self, conn: sqlite3.Connection, *, identifier: str | None = None,
               patient: PatientRef | None = None,
               type: str | None = None) -> list[ResourceVersion]:
        """Current versions by ``identifier`` (a FHIR token ``SYSTEM|VALUE``; ``|VALUE`` for
        an empty system: the system is part of the index, so a value alone cannot be searched)
        and/or by ``patient`` (everything sealed under that patient's key), optionally of one
        resource ``type``. Results are ordered by type and id."""
        if identifier is None and patient is None:
            raise ResourceInputError("search", "needs identifier= or patient=")
        with read_snapshot(conn):
            indexer = self.keys.existing_indexer(conn)
            if indexer is None:
                return []
            where: list[str] = [CURRENT_ONLY]
            params: list[Any] = []
            wanted: bytes | None = None
            if identifier is not None:
                wanted = indexer.identifier(*parse_identifier_token(identifier))
                where.append(f"r.row IN (SELECT resource FROM {IDENTIFIERS} "  # noqa: S608
                             "WHERE value = ?)")
                params.append(wanted)
            if patient is not None:
                where.append("r.patient = ?")
                params.append(indexer.patient_key(patient.system, patient.value))
            if type is not None:
                where.append("r.type = ?")
                params.append(type)
            found = self._select(conn, " AND ".join(where) + " ORDER BY r.type, r.id", params)
            if wanted is not None:
                for item in found:
                    if wanted not in identifier_indexes(indexer, item.resource):
                        raise _fail(item.row, AAD(RESOURCES, f"{item.type}/{item.id}",
                                                  item.version), None,
                                    "an identifier index row points at a record without that "
                                    "identifier")
            return found

    def search_patients(self, conn: sqlite3.Connection, *, family: str | None = None,
                        given: str | None = None, birthdate: str | None = None,
                        gender: str | None = None) -> list[ResourceVersion]:
        """Current Patient versions matching every demographic given (normalized as the
        blind indexes are: see :mod:`edge.crypto.blind_index`)."""
        with read_snapshot(conn):
            indexer = self.keys.existing_indexer(conn)
            if indexer is None:
                return []
            wanted: list[tuple[str, bytes]] = []
            for kind_, text, index in ((IndexKind.FAMILY, family, indexer.family),
                                      (IndexKind.GIVEN, given, indexer.given),
                                      (IndexKind.BIRTHDATE, birthdate, indexer.birthdate),
                                      (IndexKind.GENDER, gender, indexer.gender)):
                if text is not None:
                    wanted.append((kind_.value, index(text)))
            if not wanted:
                raise ResourceInputError("search_patients", "needs at least one demographic")
            where = [CURRENT_ONLY, "r.type = 'Patient'"]
            params: list[Any] = []
            for kind, value in wanted:
                where.append(f"r.row IN (SELECT resource FROM {DEMOGRAPHICS} "  # noqa: S608
                             "WHERE kind = ? AND value = ?)")
                params += [kind, value]
            found = self._select(conn, " AND ".join(where) + " ORDER BY r.id", params)
            for item in found:
                have = demographic_indexes(indexer, item.resource)
                if not have.issuperset(wanted):
                    raise _fail(item.row, AAD(RESOURCES, f"Patient/{item.id}", item.version),
                                None, "a demographic index row does not match the record")
            return found

    def verify_row(self, conn: sqlite3.Connection, row: int) -> ResourceVersion:
        """Open and verify one stored row by its row number (for verification passes)."""
        rows = self._select(conn, "r.row = ?", (row,))
        if not rows:
            raise IntegrityError(f"table {RESOURCES!r} row {row}: no such row", table=RESOURCES,
                                 row=row, problem="no such row")
        return rows[0]

    # -- internals --------------------------------------------------------------------

    def _select(self, conn: sqlite3.Connection, where: str,
                params: Sequence[Any]) -> list[ResourceVersion]:
        # One statement for the rows; a key not cached yet is read after it. Erasure deletes
        # a key and its rows together, so a missing key with its row gone means the row was
        # erased in between (it is skipped); with its row still there it is a finding.
        rows = _rows(conn, f"SELECT {BASE_COLUMNS} FROM {RESOURCES} r WHERE {where}", params)  # noqa: S608
        return [version for r in rows if (version := self._open_found(conn, r)) is not None]

    def _open_found(self, conn: sqlite3.Connection, r: Sequence[Any]) -> ResourceVersion | None:
        """Open a row a read found; None when it was erased since (its key and the row are
        both gone)."""
        key = self.keys.cached(r[5])
        if key is not None:
            return self._open(r, key, rehash=False)
        key_row = conn.execute(KEY_ROW_BY_ID, (r[5],)).fetchone()
        if key_row is None and conn.execute(
                f"SELECT 1 FROM {RESOURCES} WHERE row = ?", (r[0],)).fetchone() is None:  # noqa: S608
            return None
        return self.open_row(r, key_row)

    def open_row(self, r: Sequence[Any], key_row: KeyRow | None = None, *,
                 rehash: bool = False) -> ResourceVersion:
        """Open and verify a row of :data:`BASE_COLUMNS` (see the module docstring for the
        checks). ``key_row`` is its ``data_keys`` row, needed when the key is not cached.
        ``rehash``: hash the record again even when the row's format binds its leaf hash
        (verification passes)."""
        key = self.keys.cached(r[5])
        if key is None:
            aad = AAD(RESOURCES, f"{r[1]}/{r[2]}", r[3])
            if key_row is None or key_row[3] is None:
                raise _fail(r[0], aad, r[5], f"its data key {r[5]} does not exist (erased?)")
            try:
                key = self.keys.from_row(key_row)
            except IntegrityError as exc:
                raise _fail(r[0], aad, r[5], str(exc)) from None
        return self._open(r, key, rehash=rehash)

    def _open(self, r: Sequence[Any], key: DataKey, *, rehash: bool) -> ResourceVersion:
        """:meth:`open_row` once the row's key is found."""
        (row, rtype, rid, version, patient, key_id, last_updated, body, leaf,
         ledger_index) = r[:10]
        aad = AAD(RESOURCES, f"{rtype}/{rid}", version)
        if patient is None:
            owned = key.purpose is KeyPurpose.SYSTEM
        else:
            owned = (key.purpose is KeyPurpose.PATIENT and type(patient) is bytes
                     and key.owner == patient.hex())
        if not owned:
            raise _fail(row, aad, key_id,
                        "its data key belongs to another owner (row moved between patients)")
        if type(leaf) is not bytes:  # a BLOB column, unless altered
            raise _fail(row, aad, key_id, "the leaf hash does not match the record")
        bound = binds(body)
        try:
            plain = open_(key, body, aad, bound=leaf)
        except IntegrityError:
            raise _fail(row, aad, key_id, "ciphertext failed authentication"
                        f"{' with its leaf hash' if bound else ''} "
                        "(tampered, swapped or replayed)") from None
        # Format 2 bound the leaf hash column into the AAD, so authentication has covered
        # check 4; a format-1 row's record is hashed again.
        if len(plain) <= SALT_SIZE or ((rehash or not bound) and not hmac.compare_digest(
                leaf_hash(plain), leaf)):
            raise _fail(row, aad, key_id, "the leaf hash does not match the record")
        try:
            resource = json.loads(plain[SALT_SIZE:])
        except ValueError:
            raise _fail(row, aad, key_id, "the record is not JSON") from None
        meta = resource.get("meta") if isinstance(resource, dict) else None
        if (not isinstance(meta, dict) or resource.get("resourceType") != rtype
                or resource.get("id") != rid or meta.get("versionId") != str(version)):
            raise _fail(row, aad, key_id, "the record's type, id or version is not the row's")
        return ResourceVersion(rtype, rid, version, last_updated, resource,
                               plain[:SALT_SIZE], leaf, ledger_index, row)
