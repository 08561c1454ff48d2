"""The store's tables (migrations 2, 10-13, 41 and 42; the registry is in
:mod:`edge.storage.database`).

``resources``: one row per FHIR resource version. In clear: type, logical id, version, the
patient's blind index (``patient``, HMAC under the index key, never the identifier), the data
key id, ``last_updated``, the leaf hash and the ledger index. Sealed (``body``, AES-256-GCM under
the patient's data key, or the SYSTEM key for resources without a patient): the record's
32-byte ledger salt followed by its RFC 8785 JSON, bound by the AAD to
(``resources``, ``Type/id``, version).

``resource_identifiers`` and ``patient_demographics``: blind indexes of the *current* version
of each resource (older versions are found through history, not search), so a search never
has to skip superseded rows and a stale index row is a verification failure. Values are
16-byte search terms (:data:`edge.crypto.blind_index.TERM_LEN`; migration 42 truncated the
32-byte values written before).

``data_keys``: every data key, wrapped under the KEK (:class:`edge.store.keys.StoreKeys`).

``erasures``: what ``erase`` did, in counts only (see :mod:`edge.store.erasure` for why no
patient index is kept). ``kek_state``: the KEK every new data key must be wrapped under
(see :mod:`edge.store.rotation`). ``resource_change_epoch``: a counter that triggers raise on
every change to ``resources`` a cache of current rows could miss (migration 41).
"""

from __future__ import annotations

import sqlite_utils

from edge.storage.database import migration

DATA_KEYS = "data_keys"
RESOURCES = "resources"
IDENTIFIERS = "resource_identifiers"
DEMOGRAPHICS = "patient_demographics"
ERASURES = "erasures"
KEK_STATE = "kek_state"


@migration(2, "data keys")
def _create_data_keys(db: sqlite_utils.Database) -> None:
    # Wrapped data keys (see edge.crypto.keys): one per (purpose, owner); erasure deletes rows.
    db.table(DATA_KEYS).create(
        {"key_id": str, "purpose": str, "owner": str, "wrapped": bytes, "created_at": str},
        pk="key_id", not_null={"purpose", "owner", "wrapped", "created_at"},
    )
    db.table(DATA_KEYS).create_index(["purpose", "owner"], unique=True,
                                     index_name="data_keys_by_owner")


@migration(10, "resources")
def _create_resources(db: sqlite_utils.Database) -> None:
    db.table(RESOURCES).create(
        {
            "row": int,
            "type": str,
            "id": str,
            "version": int,
            "patient": bytes,  # blind index (patient-key kind); NULL: no patient
            "key_id": str,
            "last_updated": str,  # FHIR instant, UTC
            "body": bytes,  # sealed: salt (32) || RFC 8785 JSON
            "leaf_hash": bytes,  # SHA-256(0x00 || salt || JSON)
            "ledger_index": int,  # filled by the ledger stage
        },
        pk="row",
        not_null={"type", "id", "version", "key_id", "last_updated", "body", "leaf_hash"},
    )
    db.table(RESOURCES).create_index(["type", "id", "version"], unique=True,
                               index_name="resources_by_identity")
    db.table(RESOURCES).create_index(["patient"], index_name="resources_by_patient")
    # The ledger stage polls for rows it has not appended yet; a partial index stays small.
    db.execute(f"CREATE INDEX resources_unanchored ON {RESOURCES} (row) "
               "WHERE ledger_index IS NULL")
    db.table(IDENTIFIERS).create(
        {"resource": int, "value": bytes},
        not_null={"resource", "value"},
        foreign_keys=[("resource", RESOURCES, "row")],
    )
    db.table(IDENTIFIERS).create_index(["value"], index_name="resource_identifiers_by_value")
    db.table(IDENTIFIERS).create_index(["resource"], index_name="resource_identifiers_by_resource")
    db.table(DEMOGRAPHICS).create(
        {"resource": int, "kind": str, "value": bytes},
        not_null={"resource", "kind", "value"},
        foreign_keys=[("resource", RESOURCES, "row")],
    )
    demographics = db.table(DEMOGRAPHICS)
    demographics.create_index(["kind", "value"], index_name="patient_demographics_by_value")
    demographics.create_index(["resource"], index_name="patient_demographics_by_resource")


@migration(11, "erasures")
def _create_erasures(db: sqlite_utils.Database) -> None:
    db.table(ERASURES).create(
        {"id": int, "at": str, "resources": int, "identifiers": int, "demographics": int,
         "raw_messages": int, "keys": int},
        pk="id",
        not_null={"at", "resources", "identifiers", "demographics", "raw_messages", "keys"},
    )


@migration(12, "kek state")
def _create_kek_state(db: sqlite_utils.Database) -> None:
    db.table(KEK_STATE).create({"id": int, "kek_id": str, "updated_at": str}, pk="id",
                         not_null={"kek_id", "updated_at"})


@migration(13, "resources by patient and type")
def _index_resources_by_patient_and_type(db: sqlite_utils.Database) -> None:
    # A patient's resources of one type (peer $everything, search by patient and type): with
    # the patient-only index SQLite chose resources_by_identity (type=?) and scanned every row
    # of that type at the facility (57 ms for one patient's 9 types beside 400 others,
    # 0.8 ms with this index). Its prefix serves patient-only lookups, so it replaces that one.
    db.execute(f"CREATE INDEX resources_by_patient_type ON {RESOURCES} (patient, type, id)")
    db.execute("DROP INDEX resources_by_patient")


CHANGE_EPOCH = "resource_change_epoch"


@migration(41, "resource change epoch")
def _create_change_epoch(db: sqlite_utils.Database) -> None:
    # Numbered after every migration before it: a release before migrate() became set-based
    # applied only versions above a database's highest.
    # One counter, raised by every change to ``resources`` other than a new row for the same
    # patient: an UPDATE or DELETE of any row (only erasure, the ledger index and tampering
    # do those) and a new version written under another patient than the version before it
    # (the resource leaves the first patient's current set without a row of theirs
    # changing). A cache of a patient's current rows (edge.peer.entries) is valid while this
    # counter, the patient's row count and highest row per type, and their key are unchanged.
    # Triggers, not code in the store, so that every writer (the daemon, the CLI, an
    # out-of-band edit through SQLite) raises it. The move trigger costs one probe of the
    # identity index per new version; the first version of a resource costs nothing.
    # Literal SQL: a migration's statements stay as they ran, whatever names change later.
    # (Not executescript: it would commit the migration's transaction first.)
    bump = "BEGIN UPDATE resource_change_epoch SET epoch = epoch + 1 WHERE id = 1; END"
    for statement in (
        "CREATE TABLE resource_change_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "epoch INTEGER NOT NULL)",
        "INSERT INTO resource_change_epoch (id, epoch) VALUES (1, 0)",
        f"CREATE TRIGGER resources_updated AFTER UPDATE ON resources {bump}",
        f"CREATE TRIGGER resources_deleted AFTER DELETE ON resources {bump}",
        "CREATE TRIGGER resources_moved AFTER INSERT ON resources WHEN NEW.version > 1 "  # noqa: S608
        "AND NEW.patient IS NOT (SELECT patient FROM resources WHERE type = NEW.type "
        f"AND id = NEW.id AND version = NEW.version - 1) {bump}",
    ):
        db.execute(statement)


@migration(42, "blind index search terms truncated to 16 bytes")
def _truncate_search_terms(db: sqlite_utils.Database) -> None:
    # Search terms are the HMAC's first 16 bytes since this release (edge.crypto.blind_index,
    # TERM_LEN): the index rows written before keep matching once cut the same way. Literal
    # SQL: a migration's statements stay as they ran. substr() of a BLOB counts bytes and
    # returns a BLOB.
    for table in ("resource_identifiers", "patient_demographics"):
        db.execute(f"UPDATE {table} SET value = substr(value, 1, 16) "  # noqa: S608
                   "WHERE length(value) > 16")
