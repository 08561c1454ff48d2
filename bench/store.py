"""Encrypted store throughput beside plaintext SQLite, measured in the same run.

Writes: resources/s the way the processing stage writes a converted message, messages in
random patient order (:func:`workload` says why): one patient's resources (a Patient and
four Observations) prepared (``prepare_record``: checks, index terms, RFC 8785 JSON; in the
daemon this runs in the worker processes, here it is timed with the writes) and stored with
one ``ResourceStore.put_many`` (per-patient AES-256-GCM, blind indexes, salt and leaf hash).
The baseline is a plaintext store of the same rows written with the same statements: the
same tables, indexes and triggers (the change epoch of migration 41, which every insert into
``resources`` runs) with plaintext in place of ciphertext and plaintext
identifier/demographic values (normalized the same way) in place of blind indexes, the same
records made ready by the same ``prepare_record`` (a plaintext store fed by the same worker
processes would prepare them the same way: the placeholder splice keeps the JSON off the
writer, not the keys), the same salt and leaf hash (the ledger needs them either way), the
same version lookup and index-row replacement per message, the same WAL + synchronous=FULL
connection and the same transaction batching. Reads: ``read(type, id)`` (decrypt and verify
every check) against the same SELECT of the newest version's row + ``json.loads`` into the
same ``ResourceVersion`` (the record with its version, lastUpdated, row, salt, leaf hash and
ledger index, which a plaintext store returns as well). A second, bare baseline
(``json.dumps`` into one table, no leaf, no index rows) is printed for context.

Run: .venv/bin/python bench/store.py [--patients 1000] [--batch 10]
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

from edge.crypto.blind_index import IndexKind
from edge.crypto.keys import generate_kek_file, load_keyring
from edge.storage.database import connect, migrate
from edge.store.keys import PatientRef, StoreKeys
from edge.store.prepared import PreparedRecord, prepare_record
from edge.store.resources import ResourceStore, ResourceVersion, fhir_instant
from ledger_client.leaf import new_salt
from ledger_client.merkle import leaf_hash

SYSTEM = "urn:oid:2.16.840.1.113883.3.1234"
Resource = dict[str, Any]
Message = tuple[list[Resource], PatientRef]  # one patient's resources, written together


def workload(patients: int) -> list[Message]:
    """A Patient and four Observations per patient (~1 KiB of JSON each), the messages in
    random patient order, as a feed brings them: consecutive messages are for unrelated
    patients. In MRN order (the order they are made in) each plaintext index insert of the
    baseline (patient, identifiers, names) lands next to the previous one, a best case no
    interface feed gives it, while the blind indexes' HMAC terms fall anywhere in either
    order. WAL frames per 10-message transaction (counted in the -wal file): plaintext twin
    65 in MRN order, 130 shuffled; encrypted store 144 and 156. The write ratio was 0.70 in
    MRN order and is 0.77 shuffled (same run conditions)."""
    messages: list[Message] = []
    for n in range(patients):
        ref = PatientRef(SYSTEM, f"MRN{n:08d}")
        items: list[Resource] = []
        messages.append((items, ref))
        items.append({
            "resourceType": "Patient", "id": f"pat-{n}",
            "identifier": [{"system": SYSTEM, "value": ref.value},
                           {"system": "http://hl7.org/fhir/sid/us-ssn",
                            "value": f"999-{n % 100:02d}-{n % 10000:04d}"}],
            "name": [{"family": f"Family{n}", "given": [f"Given{n}", "Middle"]}],
            "birthDate": f"19{50 + n % 50:02d}-{1 + n % 12:02d}-{1 + n % 28:02d}",
            "gender": "female" if n % 2 else "male",
            "address": [{"line": [f"{n} Main Street"], "city": "Springfield",
                         "postalCode": "62701"}],
        })
        for k in range(4):
            items.append({
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
            })
    random.Random(3).shuffle(messages)
    return messages


# -- plaintext baselines ------------------------------------------------------------------

PLAIN_SCHEMA = """
CREATE TABLE resources (row INTEGER PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL,
    version INTEGER NOT NULL, patient TEXT, last_updated TEXT NOT NULL, body BLOB NOT NULL,
    salt BLOB NOT NULL, leaf_hash BLOB NOT NULL, ledger_index INTEGER);
CREATE UNIQUE INDEX resources_by_identity ON resources (type, id, version);
CREATE INDEX resources_by_patient_type ON resources (patient, type, id);
CREATE INDEX resources_unanchored ON resources (row) WHERE ledger_index IS NULL;
CREATE INDEX resources_by_type_updated ON resources (type, last_updated);
CREATE TABLE resource_identifiers (resource INTEGER NOT NULL REFERENCES resources(row),
    value TEXT NOT NULL);
CREATE INDEX resource_identifiers_by_value ON resource_identifiers (value);
CREATE INDEX resource_identifiers_by_resource ON resource_identifiers (resource);
CREATE TABLE patient_demographics (resource INTEGER NOT NULL REFERENCES resources(row),
    kind TEXT NOT NULL, value TEXT NOT NULL);
CREATE INDEX patient_demographics_by_value ON patient_demographics (kind, value);
CREATE INDEX patient_demographics_by_resource ON patient_demographics (resource);
CREATE TABLE resource_change_epoch (id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL);
INSERT INTO resource_change_epoch (id, epoch) VALUES (1, 0);
CREATE TRIGGER resources_updated AFTER UPDATE ON resources
    BEGIN UPDATE resource_change_epoch SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER resources_deleted AFTER DELETE ON resources
    BEGIN UPDATE resource_change_epoch SET epoch = epoch + 1 WHERE id = 1; END;
CREATE TRIGGER resources_moved AFTER INSERT ON resources WHEN NEW.version > 1
    AND NEW.patient IS NOT (SELECT patient FROM resources WHERE type = NEW.type
    AND id = NEW.id AND version = NEW.version - 1)
    BEGIN UPDATE resource_change_epoch SET epoch = epoch + 1 WHERE id = 1; END;
"""


def twin_objects(conn: sqlite3.Connection, tables: Sequence[str]) -> set[tuple[str, str, str]]:
    """(type, name, table) of every index and trigger on ``tables``, and the tables."""
    marks = ",".join("?" * len(tables))
    return {(kind, name, table) for kind, name, table in conn.execute(
        f"SELECT type, name, tbl_name FROM sqlite_master WHERE tbl_name IN ({marks})",
        list(tables))}


def check_twin(enc: sqlite3.Connection, plain: sqlite3.Connection) -> None:
    """Refuse to measure when the plaintext twin's tables lack an index or trigger the
    migrated store has on them (or have one it lacks): the ratio would then measure a schema
    difference, not encryption."""
    tables = [t for (t,) in plain.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    missing = twin_objects(enc, tables) ^ twin_objects(plain, tables)
    if missing:
        raise SystemExit(f"the plaintext twin differs from the store's schema: {sorted(missing)}")


def plain_put_many(conn: sqlite3.Connection, records: Sequence[PreparedRecord],
                   patient: PatientRef) -> None:
    """The plaintext twin of ``put_many``: the same prepared records, the same statements,
    no keys."""
    idents = [(r.type, r.id) for r in records]
    rows = ",".join(["(?, ?)"] * len(idents))
    latest: dict[tuple[str, str], int] = {}
    replaced: list[tuple[int]] = []
    for t, i, v, row in conn.execute(
            "SELECT v.column1, v.column2, r.version, r.row FROM (VALUES "
            f"{rows}) v LEFT JOIN resources r ON r.row = (SELECT row FROM resources "
            "WHERE type = v.column1 AND id = v.column2 ORDER BY version DESC LIMIT 1)",
            [part for ident in idents for part in ident]):
        latest[(t, i)] = v or 0
        if row is not None:
            replaced.append((row,))
    for table in ("resource_identifiers", "patient_demographics"):
        conn.executemany(f"DELETE FROM {table} WHERE resource = ?", replaced)
    now = fhir_instant(_now())
    owner = f"{patient.system}|{patient.value}"
    identifiers: list[tuple[int, str]] = []
    demographics: list[tuple[int, str, str]] = []
    for prepared, ident in zip(records, idents, strict=True):
        version = latest[ident] = latest[ident] + 1
        body = prepared.canonical(version, now)
        salt = new_salt()
        row = conn.execute(
            "INSERT INTO resources (type, id, version, patient, last_updated, body, salt, "
            "leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*ident, version, owner, now, body, salt, leaf_hash(salt + body))).lastrowid
        assert row is not None
        # The same normalized terms the blind indexes are made from (matching needs them
        # either way), stored as text instead of HMACs.
        for kind, fields in prepared.terms:
            if kind is IndexKind.IDENTIFIER:
                identifiers.append((row, "|".join(fields)))
            else:
                demographics.append((row, kind.value, fields[0]))
    conn.executemany("INSERT INTO resource_identifiers (resource, value) VALUES (?, ?)",
                     identifiers)
    conn.executemany("INSERT INTO patient_demographics (resource, kind, value) VALUES (?, ?, ?)",
                     demographics)


def plain_read(conn: sqlite3.Connection, rtype: str, rid: str) -> ResourceVersion:
    """The plaintext twin of ``read``: the same result from the same row, the record beside
    the version, lastUpdated, row, salt, leaf hash and ledger index that the FHIR API and the
    ledger proofs take from it either way; nothing to unwrap, open or check."""
    row, version, last_updated, body, salt, leaf, index = conn.execute(
        "SELECT row, version, last_updated, body, salt, leaf_hash, ledger_index FROM resources "
        "WHERE type = ? AND id = ? ORDER BY version DESC LIMIT 1", (rtype, rid)).fetchone()
    return ResourceVersion(rtype, rid, version, last_updated, json.loads(body), salt, leaf,
                           index, row)


def bare_put_many(conn: sqlite3.Connection, resources: Sequence[Resource],
                  patient: PatientRef) -> None:
    conn.executemany("INSERT INTO bare (type, id, version, body) VALUES (?, ?, 1, ?)",
                     [(r["resourceType"], r["id"], json.dumps(r).encode()) for r in resources])


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


# -- timing -------------------------------------------------------------------------------


PutMany = Callable[[sqlite3.Connection, Sequence[Resource], PatientRef], object]


Step = Callable[[int], float]  # runs chunk i of a workload; returns the seconds it took


def write_steps(conn: sqlite3.Connection, messages: Sequence[Message], batch: int,
                put_many: PutMany) -> tuple[int, Step]:
    """Chunk i = one transaction of ``batch`` messages (as the group committer batches)."""
    def step(i: int) -> float:
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for resources, ref in messages[i * batch : (i + 1) * batch]:
            put_many(conn, resources, ref)
        conn.execute("COMMIT")
        return time.perf_counter() - start

    return -(-len(messages) // batch), step


def read_steps(keys: Sequence[tuple[str, str]], chunk: int,
               read: Callable[[str, str], object]) -> tuple[int, Step]:
    def step(i: int) -> float:
        start = time.perf_counter()
        for rtype, rid in keys[i * chunk : (i + 1) * chunk]:
            if read(rtype, rid) is None:
                raise SystemExit(f"missing {rtype}/{rid}")
        return time.perf_counter() - start

    return -(-len(keys) // chunk), step


def interleaved(a: tuple[int, Step], b: tuple[int, Step]) -> tuple[float, float]:
    """Seconds each of two workloads took, run chunk by chunk in turns (a, b, b, a, a, b...):
    on a shared machine both see the same load, so their ratio holds even while it drifts."""
    (chunks, step_a), (_, step_b) = a, b
    spent = [0.0, 0.0]
    for i in range(chunks):
        order = ((0, step_a), (1, step_b)) if i % 2 == 0 else ((1, step_b), (0, step_a))
        for which, step in order:
            spent[which] += step(i)
    return spent[0], spent[1]


def one_round(messages: Sequence[Message], order: Sequence[tuple[str, str]],
              batch: int) -> dict[str, float]:
    """Each store on a fresh database in a temporary directory; seconds per operation."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kek_file = root / "keys" / "kek"
        generate_kek_file(kek_file)
        enc = connect(root / "enc.db")
        migrate(enc)
        store = ResourceStore(StoreKeys(lambda: load_keyring(kek_file)))
        plain = connect(root / "plain.db")
        plain.executescript(PLAIN_SCHEMA)
        check_twin(enc, plain)
        bare = connect(root / "bare.db")
        bare.execute("CREATE TABLE bare (row INTEGER PRIMARY KEY, type TEXT, id TEXT, "
                     "version INTEGER, body BLOB)")
        bare.execute("CREATE UNIQUE INDEX bare_by_identity ON bare (type, id, version)")

        def enc_put(c: sqlite3.Connection, rs: Sequence[Resource], p: PatientRef) -> object:
            return store.put_many(c, [prepare_record(r) for r in rs], patient=p)

        def plain_put(c: sqlite3.Connection, rs: Sequence[Resource], p: PatientRef) -> None:
            plain_put_many(c, [prepare_record(r) for r in rs], p)

        enc_w, plain_w = interleaved(write_steps(enc, messages, batch, enc_put),
                                     write_steps(plain, messages, batch, plain_put))
        chunks, bare_step = write_steps(bare, messages, batch, bare_put_many)
        bare_w = sum(bare_step(i) for i in range(chunks))
        enc_r, plain_r = interleaved(
            read_steps(order, 100, lambda t, i: store.read(enc, t, i)),
            read_steps(order, 100, lambda t, i: plain_read(plain, t, i)))
        for conn in (enc, plain, bare):
            conn.close()
    return {"encrypted write": enc_w, "plain write": plain_w, "bare write": bare_w,
            "encrypted read": enc_r, "plain read": plain_r}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=10, help="messages per transaction")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each on new files")
    args = parser.parse_args()
    items = workload(args.patients)
    order = [(r["resourceType"], r["id"]) for rs, _ in items for r in rs]
    random.Random(7).shuffle(order)
    seconds: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, spent in one_round(items, order, args.batch).items():
            seconds[name] = seconds.get(name, 0.0) + spent
    rate = {name: args.rounds * len(order) / spent for name, spent in seconds.items()}
    enc_w, plain_w, bare_w = rate["encrypted write"], rate["plain write"], rate["bare write"]
    enc_r, plain_r = rate["encrypted read"], rate["plain read"]
    print(f"{len(order)} resources ({args.patients} patients, a message of 5 each), "
          f"{args.batch} messages per transaction, "
          f"{args.rounds} rounds, encrypted and plaintext interleaved chunk by chunk, "
          "WAL + synchronous=FULL")
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
