"""The encrypted local store: FHIR resource versions under per-patient data keys.

Modules: :mod:`.resources` (put/read/vread/history/search, verified on every read),
:mod:`.keys` (data keys through the caller's connection, :class:`PatientRef`),
:mod:`.rekey` (raw messages moved to the patient's key or dropped), :mod:`.erasure`
(``erase --patient``), :mod:`.rotation` (KEK rotation online), :mod:`.backup`
(backup/restore), :mod:`.verify` (a pass over every sealed row), :mod:`.schema` (tables),
:mod:`.errors`.
"""

from __future__ import annotations

from edge.store.backup import BackupError, backup_database, restore_database
from edge.store.erasure import ErasureReport, erase_patient, erase_patient_rows, scrub
from edge.store.errors import (
    ErasureError,
    IntegrityError,
    ResourceInputError,
    StoreError,
    UnknownKeyError,
)
from edge.store.keys import PatientRef, StoreKeys
from edge.store.rekey import DROPPED_KEY_ID, rekey_inbox_message
from edge.store.resources import ResourceStore, ResourceVersion, StoredVersion
from edge.store.rotation import (
    RewrapReport,
    record_current_kek,
    retire_unused_keks,
    rewrap_all,
)
from edge.store.verify import RowFailure, VerifyReport, verify_store

__all__ = [
    "DROPPED_KEY_ID",
    "BackupError",
    "ErasureError",
    "ErasureReport",
    "IntegrityError",
    "PatientRef",
    "ResourceInputError",
    "ResourceStore",
    "ResourceVersion",
    "RewrapReport",
    "RowFailure",
    "StoreError",
    "StoreKeys",
    "StoredVersion",
    "UnknownKeyError",
    "VerifyReport",
    "backup_database",
    "erase_patient",
    "erase_patient_rows",
    "record_current_kek",
    "rekey_inbox_message",
    "restore_database",
    "retire_unused_keks",
    "rewrap_all",
    "scrub",
    "verify_store",
]
