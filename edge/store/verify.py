"""A verification pass over every sealed row: after a restore, or on demand.

Opens every data key (its wrapping authenticates its id, purpose and owner), every resource
version (all the checks of :mod:`edge.store.resources`), every raw inbox payload, and compares
the blind index rows with the indexes re-derived from each current record. Failures are listed
by table and row with the reason; nothing decrypted is kept or shown.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from edge.crypto.envelope import AAD, open_
from edge.crypto.errors import CryptoError, UnknownKeyError
from edge.crypto.keys import KeyPurpose, WrappedKey
from edge.inbox.schema import TABLE as INBOX
from edge.inbox.store import PAYLOAD_VERSION
from edge.store._tx import read_snapshot
from edge.store.keys import StoreKeys
from edge.store.rekey import DROPPED_KEY_ID
from edge.store.resources import (
    CURRENT_ONLY,
    ROW_COLUMNS,
    ROW_FROM,
    ResourceStore,
    demographic_indexes,
    identifier_indexes,
)
from edge.store.schema import DATA_KEYS, DEMOGRAPHICS, IDENTIFIERS, RESOURCES


@dataclass(frozen=True, slots=True)
class RowFailure:
    table: str
    row: str  # key id, "Type/id v<n> (row <n>)" or inbox row id
    problem: str


@dataclass(slots=True)
class VerifyReport:
    checked: dict[str, int] = field(default_factory=dict)
    failures: list[RowFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def verify_store(conn: sqlite3.Connection, keys: StoreKeys) -> VerifyReport:
    """Check every sealed row in one read snapshot. Never raises for a bad row: it is listed."""
    report = VerifyReport()
    store = ResourceStore(keys)
    with read_snapshot(conn):
        _verify_keys(conn, keys, report)
        _verify_resources(conn, store, report)
        _verify_orphans(conn, report)
        _verify_inbox(conn, keys, report)
    return report


def _verify_keys(conn: sqlite3.Connection, keys: StoreKeys, report: VerifyReport) -> None:
    n = 0
    for row in conn.execute(f"SELECT key_id, purpose, owner, wrapped FROM {DATA_KEYS}"):  # noqa: S608
        n += 1
        try:
            # Unwrapped with the keyring, not through the cache: every wrapping is checked.
            keys.keyring.unwrap(WrappedKey(row[0], KeyPurpose(row[1]), row[2], row[3]))
        except UnknownKeyError:
            try:
                keys.reload().unwrap(WrappedKey(row[0], KeyPurpose(row[1]), row[2], row[3]))
            except (CryptoError, ValueError) as exc:
                report.failures.append(RowFailure(DATA_KEYS, str(row[0]), str(exc)))
        except (CryptoError, ValueError) as exc:
            report.failures.append(RowFailure(DATA_KEYS, str(row[0]), str(exc)))
    report.checked[DATA_KEYS] = n


def _verify_resources(conn: sqlite3.Connection, store: ResourceStore,
                      report: VerifyReport) -> None:
    n = 0
    indexer = store.keys.existing_indexer(conn)
    cursor = conn.execute(f"SELECT {ROW_COLUMNS}, {CURRENT_ONLY} FROM {ROW_FROM} ORDER BY r.row")  # noqa: S608
    for row in cursor:
        n += 1
        name = f"{row[1]}/{row[2]} v{row[3]} (row {row[0]})"
        try:
            item = store.open_row(row[:10], row[10:14], rehash=True)
        except CryptoError as exc:
            report.failures.append(RowFailure(RESOURCES, name, str(exc)))
            continue
        if not row[-1] or indexer is None:
            continue
        stored_ids = {bytes(v) for (v,) in conn.execute(
            f"SELECT value FROM {IDENTIFIERS} WHERE resource = ?", (item.row,))}  # noqa: S608
        stored_demo = {(k, bytes(v)) for k, v in conn.execute(
            f"SELECT kind, value FROM {DEMOGRAPHICS} WHERE resource = ?", (item.row,))}  # noqa: S608
        try:
            if stored_ids != identifier_indexes(indexer, item.resource):
                report.failures.append(RowFailure(IDENTIFIERS, name,
                                                  "identifier index rows do not match the record"))
            if stored_demo != demographic_indexes(indexer, item.resource):
                report.failures.append(RowFailure(DEMOGRAPHICS, name,
                                                  "demographic index rows do not match the record"))
        except Exception as exc:  # noqa: BLE001 - a record we cannot index is a finding
            report.failures.append(RowFailure(RESOURCES, name,
                                              f"cannot index the record: {type(exc).__name__}"))
    report.checked[RESOURCES] = n


def _verify_orphans(conn: sqlite3.Connection, report: VerifyReport) -> None:
    # Index rows must point at the current version of an existing resource.
    for table in (IDENTIFIERS, DEMOGRAPHICS):
        (orphans,) = conn.execute(
            f"SELECT count(*) FROM {table} i LEFT JOIN {RESOURCES} r ON r.row = i.resource "  # noqa: S608
            f"WHERE r.row IS NULL OR NOT ({CURRENT_ONLY})").fetchone()
        if orphans:
            report.failures.append(RowFailure(table, "*", f"{orphans} index rows point at no "
                                              "current resource version"))


def _verify_inbox(conn: sqlite3.Connection, keys: StoreKeys, report: VerifyReport) -> None:
    n = 0
    for row_id, key_id, payload in conn.execute(
            f"SELECT id, key_id, payload FROM {INBOX} ORDER BY id"):  # noqa: S608
        if key_id == DROPPED_KEY_ID:
            continue
        n += 1
        try:
            open_(keys.get(conn, key_id), payload, AAD(INBOX, str(row_id), PAYLOAD_VERSION))
        except CryptoError as exc:
            report.failures.append(RowFailure(INBOX, str(row_id), str(exc)))
    report.checked[INBOX] = n
