"""Helpers for the store tests: the test environment and synthetic FHIR resources carrying
known PHI strings (so tests can search the files for them)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.config.model import FacilitySettings, KeySettings, Settings, StorageSettings
from edge.crypto.keys import generate_kek_file, load_keyring
from edge.storage.database import connect, database_path, migrate
from edge.store.keys import PatientRef, StoreKeys


@dataclass
class Env:
    root: Path
    settings: Settings

    @property
    def kek_file(self) -> Path:
        return self.settings.keys.kek_file

    @property
    def db_path(self) -> Path:
        return database_path(self.settings.storage.dir)

    def keys(self) -> StoreKeys:
        kek_file = self.kek_file
        return StoreKeys(lambda: load_keyring(kek_file))

    def connect(self) -> sqlite3.Connection:
        return connect(self.db_path)


def make_env(tmp_path: Path) -> Env:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    kek_file = tmp_path / "keys" / "kek"
    generate_kek_file(kek_file)
    settings = Settings(facility=FacilitySettings(id="test-facility"),
                        storage=StorageSettings(dir=data), keys=KeySettings(kek_file=kek_file))
    conn = connect(database_path(data))
    migrate(conn)
    conn.close()
    return Env(tmp_path, settings)


SYSTEM = "urn:oid:2.16.840.1.113883.3.1234"


def patient_ref(n: int) -> PatientRef:
    return PatientRef(SYSTEM, f"MRN{n:06d}")


def patient_resource(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": f"pat-{n}",
        "identifier": [{"system": SYSTEM, "value": f"MRN{n:06d}"},
                       {"system": "http://hl7.org/fhir/sid/us-ssn", "value": f"999-00-{n:04d}"}],
        "name": [{"family": f"Quxfamily{n}", "given": [f"Zorbgiven{n}"]}],
        "birthDate": f"19{50 + n % 40:02d}-0{1 + n % 9}-1{n % 10}",
        "gender": "female" if n % 2 else "male",
        **extra,
    }


def observation_resource(n: int, k: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"obs-{n}-{k}",
        "status": "final",
        "identifier": [{"system": "urn:accession", "value": f"ACC{n}-{k}"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/pat-{n}"},
        "valueQuantity": {"value": 13.5 + k, "unit": "g/dL"},
        "note": [{"text": f"patient Quxfamily{n} Zorbgiven{n} seen"}],
    }


def insert_inbox_message(conn: sqlite3.Connection, keys: StoreKeys, raw: bytes) -> int:
    """Insert a raw message the way the inbox does, inside the caller's transaction: sealed
    under the inbox key, bound to its row (AAD = (inbox_messages, str(id), 1))."""
    from edge.crypto.envelope import AAD, seal
    from edge.crypto.keys import KeyPurpose
    from edge.inbox.sealing import INBOX_OWNER

    key = keys.get_or_create(conn, KeyPurpose.INBOX, INBOX_OWNER)
    (row_id,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM inbox_messages").fetchone()
    conn.execute(
        "INSERT INTO inbox_messages (id, received_at, listener, payload, payload_format, "
        "key_id, state, size, attempts) VALUES (?, '2024-01-01T00:00:00.000000Z', 'adt', ?, 1, "
        "?, 'processed', ?, 0)",
        (row_id, seal(key, raw, AAD("inbox_messages", str(row_id), 1)), key.key_id, len(raw)))
    return int(row_id)


def add_inbox_message(conn: sqlite3.Connection, keys: StoreKeys, raw: bytes) -> int:
    """:func:`insert_inbox_message` in a transaction of its own."""
    conn.execute("BEGIN IMMEDIATE")
    row_id = insert_inbox_message(conn, keys, raw)
    conn.execute("COMMIT")
    return row_id


def hl7_message(n: int) -> bytes:
    """A small ADT message carrying patient ``n``'s PHI (the same strings as the resources)."""
    p = patient_resource(n)
    dob = p["birthDate"].replace("-", "")
    return (f"MSH|^~\\&|LAB|HOSP|EDGE|HOSP|20240101000000||ADT^A01|MSG{n}|P|2.5\r"
            f"PID|1||MRN{n:06d}^^^HOSP||Quxfamily{n}^Zorbgiven{n}||{dob}|"
            f"{'F' if n % 2 else 'M'}\r").encode()


def file_bytes(db_path: Path) -> bytes:
    """The database file and its WAL, as they are on disk."""
    data = db_path.read_bytes()
    wal = Path(f"{db_path}-wal")
    if wal.exists():
        data += wal.read_bytes()
    return data


def phi_strings(n: int) -> list[str]:
    p = patient_resource(n)
    return [f"MRN{n:06d}", f"Quxfamily{n}", f"Zorbgiven{n}", f"999-00-{n:04d}", p["birthDate"],
            p["birthDate"].replace("-", "")]
