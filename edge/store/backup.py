"""Online backup and restore of the state database.

The database holds only ciphertext, wrapped keys, blind indexes and PHI-free metadata, so a
copy of it is "ciphertext only"; the KEK is never in it (keys are backed up separately: Shamir
shares, ``hie-edge keys split``, or a copy of the keys directory kept apart).

Backup is ``VACUUM INTO`` (https://www.sqlite.org/lang_vacuum.html#vacuuminto): it reads one
consistent snapshot inside a read transaction, so it runs next to the daemon's writer (WAL
lets readers and one writer proceed together) and sees every committed transaction up to its
start and nothing after. It writes only live pages: content deleted before the backup (an
erased patient) is not carried into it, even from free pages. The output is a self-contained
rollback-journal database file.

Both directions write atomically: the copy is made in a private (0700) temporary directory
beside the target, made 0600, fsynced, then hard-linked into place (``link`` fails when the
target exists, so an existing file is never replaced, even by a concurrent writer), and the
directory is fsynced.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from edge.errors import Fault
from edge.storage.database import database_path
from edge.store.errors import StoreError

BACKUP_MODE = 0o600


class BackupError(StoreError):
    """A backup or restore could not be made. The message names the path and the problem."""

    fault: Fault = "environment"

    def __init__(self, path: Path | str, problem: str, *, fault: Fault = "environment") -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem
        self.fault = fault


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_atomically(source: sqlite3.Connection, target: Path) -> int:
    """``VACUUM INTO`` a private temporary file, then link it to ``target``. Returns bytes."""
    parent = target.parent
    if not parent.is_dir():
        raise BackupError(parent, "no such directory", fault="config")
    if os.path.lexists(target):
        raise BackupError(target, "already exists; refusing to overwrite", fault="config")
    tmpdir = Path(tempfile.mkdtemp(prefix=".hie-edge-copy-", dir=parent))  # mode 0700
    tmp = tmpdir / "copy.db"
    try:
        try:
            source.execute("VACUUM INTO ?", (str(tmp),))
        except sqlite3.Error as exc:
            raise BackupError(target, f"cannot copy the database: {exc}") from None
        os.chmod(tmp, BACKUP_MODE)
        _fsync_path(tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise BackupError(target, "already exists; refusing to overwrite",
                              fault="config") from None
        _fsync_path(parent, directory=True)
        return tmp.stat().st_size
    except OSError as exc:
        raise BackupError(target, f"cannot write: {exc.strerror}") from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def backup_database(conn: sqlite3.Connection, target: Path) -> int:
    """Write a consistent copy of the database ``conn`` is open on to ``target`` (mode 0600,
    never overwriting). ``conn`` must not be inside a transaction. Returns the size in bytes."""
    if conn.in_transaction:
        raise BackupError(target, "backup must run outside a transaction", fault="internal")
    return _copy_atomically(conn, Path(target).absolute())


def restore_database(source: Path, storage_dir: Path) -> Path:
    """Copy the backup ``source`` to the database path of ``storage_dir``, which must not hold
    a database (nor its WAL). The backup must pass SQLite's ``integrity_check`` and carry a
    migration table. Returns the new database's path. Migrating it and verifying its rows with
    the keys is the caller's next step (:func:`edge.store.verify.verify_store`)."""
    source = Path(source).absolute()
    target = database_path(Path(storage_dir)).absolute()
    for path in (target, Path(f"{target}-wal"), Path(f"{target}-journal")):
        if os.path.lexists(path):
            raise BackupError(path, "already exists; restore only into an empty storage "
                              "directory", fault="config")
    if not source.is_file():
        raise BackupError(source, "no such file", fault="config")
    try:
        src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(source, f"cannot open: {exc}", fault="config") from None
    try:
        try:
            (result,) = src.execute("PRAGMA integrity_check").fetchone()
            has_schema = src.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'schema_migrations'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(source, f"not a database: {exc}", fault="config") from None
        if result != "ok":
            raise BackupError(source, "fails SQLite's integrity check", fault="config")
        if not has_schema:
            raise BackupError(source, "not a hie-edge database (no schema_migrations)",
                              fault="config")
        with contextlib.suppress(FileExistsError):
            target.parent.mkdir(mode=0o700, parents=True)
        _copy_atomically(src, target)
    finally:
        src.close()
    return target
