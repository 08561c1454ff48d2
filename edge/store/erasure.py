"""Erasure of one patient ("right to be forgotten", issue 5).

The patient's record hashes live on an immutable ledger, so erasure works by destroying what
gives them meaning. In one write transaction :func:`erase_patient`:

- deletes the patient's data key row: everything sealed under it (resource versions, their
  salts, re-keyed raw messages, and any copy of them in a backup taken later) can no longer be
  opened by anyone, whatever KEK they hold;
- deletes the resource rows (ciphertext, salt, leaf hash, ledger index), their blind index
  rows, and the raw inbox messages re-keyed to the patient (:mod:`edge.store.rekey`). Without
  the salt, the leaf hashes left in the ledger cannot be tested against any guess of a record,
  and without the leaf hash column nothing local links the patient to a ledger position;
- records an erasure event (:data:`~edge.store.schema.ERASURES`) holding only the time and the
  counts.

Then it makes the deleted bytes go away rather than merely unlinked: ``PRAGMA secure_delete =
ON`` (SQLite zeroes deleted content and freed pages instead of leaving them in free space) and
``PRAGMA wal_checkpoint(TRUNCATE)`` (the WAL, which still holds the old page images, is copied
back and truncated to zero bytes; https://www.sqlite.org/pragma.html#pragma_wal_checkpoint).
A checkpoint that cannot finish because a reader holds an old snapshot is reported
(``scrubbed`` false); running ``erase`` again, or the next checkpoint, finishes it.

Why the erasure event keeps no patient index, not even the HMAC: with the index key, anyone can
recompute the HMAC of a guessed identifier and learn "this person was a patient here and asked
to be forgotten", which is itself PHI, and it would outlive the erasure in every backup. What
is lost: the store cannot refuse records that arrive for the same identifier afterwards (they
are stored under a new data key, as a new patient), and an auditor sees that an erasure
happened, when, and how much it removed, but not whose. Identifying the request is the job of
the facility's request log, outside this database.

Limits: a raw message that never reached normalization is still under the inbox key and is not
found by the patient's identifier (it would have to be decrypted and parsed); erasure works on
this database, not on backups taken before it (those hold the wrapped patient key: expire
them), and a running daemon keeps an erased key's material in memory until it touches that
patient again or calls :meth:`~edge.store.keys.StoreKeys.prune`; it never uses it again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from edge.crypto.keys import KeyPurpose
from edge.inbox.schema import TABLE as INBOX
from edge.store._tx import write_transaction
from edge.store.errors import ErasureError
from edge.store.keys import StoreKeys
from edge.store.resources import fhir_instant
from edge.store.schema import DATA_KEYS, DEMOGRAPHICS, ERASURES, IDENTIFIERS, RESOURCES

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ErasureReport:
    """What one erasure removed (counts only: no PHI, safe to print and log)."""

    erasure_id: int | None  # None: nothing was stored for the patient, nothing recorded
    at: str
    resources: int = 0
    identifiers: int = 0
    demographics: int = 0
    raw_messages: int = 0
    keys: int = 0
    scrubbed: bool = False  # the WAL checkpoint (TRUNCATE) completed

    @property
    def found(self) -> bool:
        return self.erasure_id is not None


def patient_owners(conn: sqlite3.Connection, keys: StoreKeys, system: str,
                   value: str) -> set[bytes]:
    """The patient indexes that ``system|value`` names: the patient keyed by that identifier,
    and the owner of any Patient resource carrying it as one of its identifiers."""
    indexer = keys.existing_indexer(conn)
    if indexer is None:
        return set()
    owners: set[bytes] = set()
    direct = indexer.patient_key(system, value)
    if conn.execute(
        f"SELECT 1 FROM {DATA_KEYS} WHERE purpose = ? AND owner = ? "  # noqa: S608
        f"UNION ALL SELECT 1 FROM {RESOURCES} WHERE patient = ? LIMIT 1",
        (KeyPurpose.PATIENT.value, direct.hex(), direct)).fetchone():
        owners.add(direct)
    for (owner,) in conn.execute(
        f"SELECT DISTINCT r.patient FROM {IDENTIFIERS} i JOIN {RESOURCES} r "  # noqa: S608
        "ON r.row = i.resource WHERE i.value = ? AND r.type = 'Patient' "
        "AND r.patient IS NOT NULL", (indexer.identifier(system, value),)):
        owners.add(bytes(owner))
    return owners


def erase_patient_rows(conn: sqlite3.Connection, keys: StoreKeys, system: str, value: str,
                       *, at: str) -> ErasureReport:
    """The erasure's deletes and its event row, in one write transaction (a SAVEPOINT when
    the caller holds one). Does not scrub: see :func:`erase_patient`. Raises
    :class:`ErasureError` when the identifier names more than one patient."""
    conn.execute("PRAGMA secure_delete = ON")  # allowed inside a transaction; stays on
    with write_transaction(conn):
        owners = patient_owners(conn, keys, system, value)
        if not owners:
            return ErasureReport(None, at)
        if len(owners) > 1:
            raise ErasureError(f"the identifier names {len(owners)} patients; erase each by its "
                               "own primary identifier")
        owner = owners.pop()
        key_ids = [r[0] for r in conn.execute(
            f"SELECT key_id FROM {DATA_KEYS} WHERE purpose = ? AND owner = ?",  # noqa: S608
            (KeyPurpose.PATIENT.value, owner.hex()))]
        marks = ",".join("?" * len(key_ids)) or "NULL"
        rows_of = (f"SELECT row FROM {RESOURCES} WHERE patient = ? "  # noqa: S608
                   f"OR key_id IN ({marks})")
        params = (owner, *key_ids)
        identifiers = conn.execute(
            f"DELETE FROM {IDENTIFIERS} WHERE resource IN ({rows_of})", params).rowcount  # noqa: S608
        demographics = conn.execute(
            f"DELETE FROM {DEMOGRAPHICS} WHERE resource IN ({rows_of})", params).rowcount  # noqa: S608
        resources = conn.execute(
            f"DELETE FROM {RESOURCES} WHERE row IN ({rows_of})", params).rowcount  # noqa: S608
        raw = conn.execute(
            f"DELETE FROM {INBOX} WHERE key_id IN ({marks})", key_ids).rowcount  # noqa: S608
        destroyed = conn.execute(
            f"DELETE FROM {DATA_KEYS} WHERE key_id IN ({marks})", key_ids).rowcount  # noqa: S608
        cursor = conn.execute(
            f"INSERT INTO {ERASURES} (at, resources, identifiers, demographics, raw_messages, "  # noqa: S608
            "keys) VALUES (?, ?, ?, ?, ?, ?)",
            (at, resources, identifiers, demographics, raw, destroyed))
    for key_id in key_ids:
        keys.forget(key_id)
    return ErasureReport(cursor.lastrowid, at, resources, identifiers, demographics, raw,
                         destroyed)


def scrub(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and truncate it. True when it completed (no reader
    held an older snapshot). Must run outside a transaction."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return int(busy) == 0


def erase_patient(conn: sqlite3.Connection, keys: StoreKeys, system: str, value: str, *,
                  clock: Clock = _utc_now) -> ErasureReport:
    """Erase the patient ``system|value`` (see the module docstring) and scrub the files.
    ``conn`` must not be inside a transaction (the checkpoint cannot run in one)."""
    if conn.in_transaction:
        raise ErasureError("erase_patient must run outside a transaction")
    report = erase_patient_rows(conn, keys, system, value, at=fhir_instant(clock()))
    if not report.found:
        return report
    scrubbed = scrub(conn)
    return ErasureReport(report.erasure_id, report.at, report.resources, report.identifiers,
                         report.demographics, report.raw_messages, report.keys, scrubbed)
