"""Store a resource version and append its leaf to the Merkle log, in the caller's
transaction: the one write path for everything that goes into the log: converted messages
(the processing stage), AuditEvents and Consents (the peer package).

Why a second ``MerkleLog`` object is safe here: :class:`ledger_client.log.MerkleLog` keeps no
state between calls (size and frontier are read inside the write transaction), and every
caller of this function runs on the group committer's writer connection (one thread, one
transaction at a time) or, from the CLI, in its own ``BEGIN IMMEDIATE`` transaction, which
SQLite serializes with the writer's. Two appends can never interleave.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from edge.store._tx import write_transaction
from edge.store.keys import PatientRef
from edge.store.prepared import PreparedRecord, prepare_record
from edge.store.resources import ResourceStore, StoredVersion
from ledger_client.log import MerkleLog


def put_ledgered(conn: sqlite3.Connection, store: ResourceStore,
                 resources: Sequence[Mapping[str, Any]], *,
                 patient: PatientRef | None) -> tuple[list[StoredVersion], int]:
    """Store ``resources`` (each as its next version) under ``patient``'s key and append their
    leaves; returns the stored versions and the log size after them. Atomic: inside a
    caller's transaction it is one savepoint, otherwise its own ``BEGIN IMMEDIATE``. Raises
    ResourceInputError (nothing written) for a resource the store cannot take."""
    return put_prepared(conn, store, [prepare_record(r) for r in resources], patient=patient)


def put_prepared(conn: sqlite3.Connection, store: ResourceStore,
                 records: Sequence[PreparedRecord], *,
                 patient: PatientRef | None) -> tuple[list[StoredVersion], int]:
    """:func:`put_ledgered` for records already made ready with
    :func:`~edge.store.prepared.prepare_record`. Preparing (checks, canonical JSON) needs no
    database, so a caller on the group committer does it *before* queueing its operation:
    the single writer then only seals, inserts and appends (each row written with its ledger
    index in the same INSERT)."""
    with write_transaction(conn):
        merkle = MerkleLog(conn)
        stored = store.put_many(conn, records, patient=patient, log=merkle)
        last = stored[-1].ledger_index if stored else None
        size = merkle.size if last is None else last + 1
    return stored, size
