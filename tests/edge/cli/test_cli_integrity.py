"""``hie-edge consent list`` and ``hie-edge audit --patient`` meeting a stored row that fails
verification (a flipped ciphertext byte in the real database file): exit 65 (EX_DATAERR) with
one line on stderr locating the row, no traceback, none of the records listed, no PHI, and
nothing written (the command's own AuditEvent is not stored for a listing it did not give)."""

from __future__ import annotations

import argparse
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.cli.exits import DATAERR
from edge.cli.main import main
from edge.config import load_config
from edge.crypto.errors import IntegrityError
from edge.crypto.keys import load_keyring
from edge.peer.audit import Actor
from edge.peer.consent import ConsentSpec, grant
from edge.storage.database import connect, database_path, migrate
from edge.store.keys import PatientRef, StoreKeys
from edge.store.resources import ResourceStore
from tests.edge.peer.support import SYSTEM, patient
from tests.integration.conftest import make_instance

REF = PatientRef(SYSTEM, "MRN1")
PHI = ("pat-1", "MRN1", "Quxfam", "Zorb", "1970-01-01")


@dataclass
class Instance:
    config: Path
    db: Path


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    """An instance (``init``) whose database holds a patient, a Consent and its AuditEvent."""
    config = make_instance(tmp_path / "inst")
    settings = load_config(config)
    db = database_path(settings.storage.dir)
    db.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db)
    try:
        migrate(conn)
        store = ResourceStore(StoreKeys(lambda: load_keyring(settings.keys.kek_file)))
        store.put(conn, patient(), patient=REF)
        with conn:
            grant(conn, store, REF, ConsentSpec(facilities=("there",)),
                  actor=Actor("local", "here", "local/op"), facility="here",
                  now=datetime.now(UTC))
    finally:
        conn.close()
    return Instance(config, db)


def flip(db: Path, rtype: str) -> tuple[int, str]:
    """One ciphertext byte of the newest ``rtype`` row flipped; its row and key id."""
    conn = sqlite3.connect(db)
    try:
        row, key_id, body = conn.execute(
            "SELECT row, key_id, body FROM resources WHERE type = ? ORDER BY row DESC "
            "LIMIT 1", (rtype,)).fetchone()
        with conn:
            conn.execute("UPDATE resources SET body = ? WHERE row = ?",
                         (body[:40] + bytes([body[40] ^ 1]) + body[41:], row))
        return int(row), str(key_id)
    finally:
        conn.close()


def rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM resources").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize(("argv", "tampered"), [
    (["consent", "list"], "Consent"),
    (["consent", "list", "--json"], "Consent"),
    (["audit"], "AuditEvent"),
    (["audit", "--json"], "AuditEvent"),
    (["consent", "list"], "Patient"),  # the patient itself, read first
])
def test_a_tampered_row_exits_65_with_one_line(instance: Instance, argv: list[str],
                                               tampered: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    row, key_id = flip(instance.db, tampered)
    before = rows(instance.db)
    status = main([*argv, "--patient", f"{SYSTEM}|MRN1", "--config", str(instance.config)])
    out, err = capsys.readouterr()
    assert status == DATAERR, err
    assert out == ""  # nothing listed
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"row {row}" in err and key_id in err and "failed verification" in err
    assert "hie-edge verify" in err
    assert not any(p in err for p in PHI)
    assert rows(instance.db) == before  # no admin-read AuditEvent for it


def test_any_command_meeting_a_damaged_row_exits_65_without_the_logical_id(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # A command without a handler of its own (e.g. keys rotate unwrapping a tampered key
    # row): main's mapping, not the EX_UNAVAILABLE of other environment faults.
    def damaged(args: argparse.Namespace) -> int:
        raise IntegrityError("resources Patient/MRN-123456 v2 (row 7): authentication failed",
                             table="resources", row_id="Patient/MRN-123456", version=2,
                             key_id="ab" * 16, row=7, problem="authentication failed")

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=damaged)
    monkeypatch.setattr("edge.cli.main.build_parser", lambda: parser)
    assert main([]) == DATAERR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "row 7" in err and "authentication failed" in err
    assert "MRN-123456" not in err and "type Patient" in err
