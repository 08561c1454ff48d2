"""Every command that opens the state database, meeting a file that is not one (a disk error,
a wrong file restored in its place) or no database at all: one line naming the problem and a
sysexits status, never "internal error" (EX_SOFTWARE), and the file left as it was."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge.cli.exits import IOERR, NOINPUT, SOFTWARE
from edge.cli.main import main
from edge.config import load_config
from edge.storage.database import connect, database_path
from edge.storage.errors import StorageError
from tests.integration.conftest import make_instance

# Every command below opens the database before anything else it does.
COMMANDS = [
    ["messages", "list"],
    ["messages", "show", "1"],
    ["messages", "replay", "1"],
    ["verify", "--all"],
    ["consent", "list", "--patient", "urn:oid:1.2|MRN1"],
    ["audit", "--patient", "urn:oid:1.2|MRN1"],
    ["erase", "--patient", "urn:oid:1.2|MRN1", "--yes"],
    ["keys", "rotate"],
]


def _instance(tmp_path: Path) -> tuple[Path, Path]:
    config = make_instance(tmp_path / "inst")
    return config, database_path(load_config(config).storage.dir)


@pytest.mark.parametrize("argv", [*COMMANDS, ["backup", "BACKUP"]], ids=" ".join)
def test_a_file_that_is_not_a_database_is_one_line_and_ioerr(
        tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = _instance(tmp_path)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(bytes(range(256)) * 32)  # 8 KiB without SQLite's header
    before = hashlib.sha256(db.read_bytes()).digest()
    argv = [str(tmp_path / "backup.db") if a == "BACKUP" else a for a in argv]
    status = main([*argv, "--config", str(config)])
    out, err = capsys.readouterr()
    assert status == IOERR, err
    assert out == ""
    assert err.count("\n") == 1 and "file is not a database" in err, err
    assert "internal error" not in err and "Traceback" not in err
    assert hashlib.sha256(db.read_bytes()).digest() == before


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_no_database_is_noinput_and_none_is_created(
        tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    config, db = _instance(tmp_path)
    status = main([*argv, "--config", str(config)])
    err = capsys.readouterr().err
    assert status == NOINPUT, err
    assert status != SOFTWARE and "no database at" in err
    assert not db.exists()  # a command must not leave an empty store behind


def test_connect_says_whether_opening_again_can_succeed(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"\x01" * 4096)
    for readonly in (False, True):
        with pytest.raises(StorageError) as raised:
            connect(garbage, readonly=readonly)
        assert raised.value.operation == "open database"
        assert not raised.value.retriable  # the file will not become a database by itself
    with pytest.raises(StorageError) as missing:
        connect(tmp_path / "no-such-dir" / "edge.db")  # the operator can create it
    assert missing.value.retriable
