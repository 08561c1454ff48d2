"""Encrypted store throughput beside plaintext SQLite, measured in the same run.

Writes: resources/s through ``ResourceStore.put`` (per-patient AES-256-GCM, blind indexes,
salt and RFC 8785 leaf hash) against a plaintext store of the same rows: the same tables and
indexes with plaintext in place of ciphertext and plaintext identifier/demographic values in
place of blind indexes, the same salt and leaf hash (the ledger needs them either way), the same
WAL + synchronous=FULL connection and the same transaction batching. Reads: ``read(type, id)``
(decrypt and verify every check) against SELECT + ``json.loads``. A second, bare baseline
(``json.dumps`` into one table, no leaf, no index rows) is printed for context.

Run: .venv/bin/python bench/store.py [--patients 1000] [--batch 50]
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _figures import record

from edge.crypto.keys import generate_kek_file, load_keyring
from edge.storage.database import connect, migrate
from edge.store.keys import PatientRef, StoreKeys
from edge.store.resources import ResourceStore, fhir_instant
from ledger_client.leaf import canonical_json, new_salt
from ledger_client.merkle import leaf_hash

SYSTEM = "urn:oid:2.16.840.1.113883.3.1234"
Item = tuple[dict[str, Any], PatientRef]


def workload(patients: int) -> list[Item]:
    """A Patient and four Observations per patient (~1 KiB of JSON each)."""
    items: list[Item] = []
    for n in range(patients):
        ref = PatientRef(SYSTEM, f"MRN{n:08d}")
        items.append(({
            "resourceType": "Patient", "id": f"pat-{n}",
            "identifier": [{"system": SYSTEM, "value": ref.value},
                           {"system": "http://hl7.org/fhir/sid/us-ssn",
                            "value": f"999-{n % 100:02d}-{n % 10000:04d}"}],
            "name": [{"family": f"Family{n}", "given": [f"Given{n}", "Middle"]}],
            "birthDate": f"19{50 + n % 50:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "gender": "female" if n % 2 else "male",
            "address": [{"line": [f"{n} Main Street"], "city": "Springfield",
                         "postalCode": "62701"}],
        }, ref))
        for k in range(4):
            items.append(({
                "resourceType": "Observation", "id": f"obs-{n}-{k}", "status": "final",
                "identifier": [{"system": "urn:accession", "value": f"ACC{n}-{k}"}],
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                          "observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "718-7",
                                     "display": "Hemoglobin [Mass/volume] in Blood"}]},
                "subject": {"reference": f"Patient/pat-{n}"},
                "effectiveDateTime": "2024-05-01T10:00:00Z",
                "valueQuantity": {"value": 13.5 + k / 10, "unit": "g/dL",
                                  "system": "http://unitsofmeasure.org", "code": "g/dL"},
                "referenceRange": [{"low": {"value": 12.0}, "high": {"value": 16.0}}],
            }, ref))
    return items


# -- plaintext baselines ------------------------------------------------------------------

PLAIN_SCHEMA = """
CREATE TABLE resources (row INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,
    version INTEGER NOT NULL, patient TEXT, last_updated TEXT NOT NULL, body BLOB NOT NULL,
    salt BLOB NOT NULL, leaf_hash BLOB NOT NULL, ledger_index INTEGER);
CREATE UNIQUE INDEX resources_by_identity ON resources (type, id, version);
CREATE INDEX resources_by_patient ON resources (patient);
CREATE INDEX resources_unanchored ON resources (row) WHERE ledger_index IS NULL;
CREATE TABLE resource_identifiers (resource INTEGER NOT NULL REFERENCES resources(row),
    value TEXT NOT NULL);
CREATE INDEX resource_identifiers_by_value ON resource_identifiers (value);
CREATE INDEX resource_identifiers_by_resource ON resource_identifiers (resource);
CREATE TABLE patient_demographics (resource INTEGER NOT NULL REFERENCES resources(row),
    kind TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX patient_demographics_by_value ON patient_demographics (kind, value);
CREATE INDEX patient_demographics_by_resource ON patient_demographics (resource);
"""


def plain_put(conn: sqlite3.Connection, resource: dict[str, Any], patient: PatientRef) -> None:
    rtype, rid = resource["resourceType"], resource["id"]
    (last,) = conn.execute("SELECT max(version) FROM resources WHERE type = ? AND id = ?",
                           (rtype, rid)).fetchone()
    version = (last or 0) + 1
    now = fhir_instant(_now())
    record = {**resource, "meta": {"versionId": str(version), "lastUpdated": now}}
    body = canonical_json(record)
    salt = new_salt()
    cursor = conn.execute(
        "INSERT INTO resources (type, id, version, patient, last_updated, body, salt, leaf_hash) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (rtype, rid, version, f"{patient.system}|{patient.value}", now, body, salt,
         leaf_hash(salt + body)))
    row = cursor.lastrowid
    conn.executemany("INSERT INTO resource_identifiers (resource, value) VALUES (?, ?)",
                     [(row, f"{i.get('system', '')}|{i['value']}")
                      for i in record.get("identifier", [])])
    if rtype == "Patient":
        demo = [("birthdate", record["birthDate"]), ("gender", record["gender"])]
        for name in record["name"]:
            demo.append(("family", name["family"]))
            demo += [("given", g) for g in name["given"]]
        conn.executemany(
            "INSERT INTO patient_demographics (resource, kind, value) VALUES (?, ?, ?)",
            [(row, k, v) for k, v in demo])


def plain_read(conn: sqlite3.Connection, rtype: str, rid: str) -> dict[str, Any]:
    (body,) = conn.execute("SELECT body FROM resources WHERE type = ? AND id = ? "
                           "ORDER BY version DESC LIMIT 1", (rtype, rid)).fetchone()
    result: dict[str, Any] = json.loads(body)
    return result


def bare_put(conn: sqlite3.Connection, resource: dict[str, Any], patient: PatientRef) -> None:
    conn.execute("INSERT INTO bare (type, id, version, body) VALUES (?, ?, 1, ?)",
                 (resource["resourceType"], resource["id"], json.dumps(resource).encode()))


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- timing -------------------------------------------------------------------------------


def timed_writes(conn: sqlite3.Connection, items: Sequence[Item], batch: int,
                 put: Callable[[sqlite3.Connection, dict[str, Any], PatientRef], object]) -> float:
    start = time.perf_counter()
    for i in range(0, len(items), batch):
        conn.execute("BEGIN IMMEDIATE")
        for resource, ref in items[i : i + batch]:
            put(conn, resource, ref)
        conn.execute("COMMIT")
    return len(items) / (time.perf_counter() - start)


def timed_reads(keys: Sequence[tuple[str, str]], read: Callable[[str, str], object]) -> float:
    start = time.perf_counter()
    for rtype, rid in keys:
        if read(rtype, rid) is None:
            raise SystemExit(f"missing {rtype}/{rid}")
    return len(keys) / (time.perf_counter() - start)


def one_round(round_: int, items: Sequence[Item], order: Sequence[tuple[str, str]],
              batch: int) -> dict[str, float]:
    """Each store on a fresh database in a temporary directory; resources/s per operation."""
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kek_file = root / "keys" / "kek"
        generate_kek_file(kek_file)
        enc = connect(root / "enc.db")
        migrate(enc)
        store = ResourceStore(StoreKeys(lambda: load_keyring(kek_file)))
        plain = connect(root / "plain.db")
        plain.executescript(PLAIN_SCHEMA)
        bare = connect(root / "bare.db")
        bare.execute("CREATE TABLE bare (row INTEGER PRIMARY KEY, type TEXT, id TEXT, "
                     "version INTEGER, body BLOB)")
        bare.execute("CREATE UNIQUE INDEX bare_by_identity ON bare (type, id, version)")

        def enc_put(c: sqlite3.Connection, r: dict[str, Any], p: PatientRef) -> object:
            return store.put(c, r, patient=p)

        writes: list[tuple[str, Callable[[], float]]] = [
            ("plain write", lambda: timed_writes(plain, items, batch, plain_put)),
            ("encrypted write", lambda: timed_writes(enc, items, batch, enc_put)),
        ]
        reads: list[tuple[str, Callable[[], float]]] = [
            ("plain read", lambda: timed_reads(order, lambda t, i: plain_read(plain, t, i))),
            ("encrypted read", lambda: timed_reads(order, lambda t, i: store.read(enc, t, i))),
        ]
        # Alternate which goes first: a shared machine's load drifts during a run.
        for name, run in writes if round_ % 2 == 0 else writes[::-1]:
            rates[name] = run()
        rates["bare write"] = timed_writes(bare, items, batch, bare_put)
        for name, run in reads if round_ % 2 == 0 else reads[::-1]:
            rates[name] = run()
        for conn in (enc, plain, bare):
            conn.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=50, help="resources per transaction")
    parser.add_argument("--rounds", type=int, default=4, help="best of this many rounds")
    args = parser.parse_args()
    items = workload(args.patients)
    order = [(r["resourceType"], r["id"]) for r, _ in items]
    random.Random(7).shuffle(order)
    best: dict[str, float] = {}
    for round_ in range(args.rounds):
        for name, rate in one_round(round_, items, order, args.batch).items():
            best[name] = max(best.get(name, 0.0), rate)
    enc_w, plain_w, bare_w = best["encrypted write"], best["plain write"], best["bare write"]
    enc_r, plain_r = best["encrypted read"], best["plain read"]
    print(f"{len(items)} resources ({args.patients} patients), {args.batch} per transaction, "
          f"best of {args.rounds} rounds, WAL + synchronous=FULL")
    print(f"writes  encrypted {enc_w:9,.0f}/s  plaintext {plain_w:9,.0f}/s  "
          f"ratio {enc_w / plain_w:.2f}  (bare json.dumps insert {bare_w:,.0f}/s, "
          f"ratio {enc_w / bare_w:.2f})")
    print(f"reads   encrypted {enc_r:9,.0f}/s  plaintext {plain_r:9,.0f}/s  "
          f"ratio {enc_r / plain_r:.2f}")
    record("store", "encrypted writes", enc_w, "resources/s", baseline="plaintext writes",
           baseline_value=plain_w)
    record("store", "encrypted reads", enc_r, "resources/s", baseline="plaintext reads",
           baseline_value=plain_r)


if __name__ == "__main__":
    main()
