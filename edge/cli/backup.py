"""``hie-edge backup FILE`` and ``hie-edge restore FILE`` (see :mod:`edge.store.backup`).

``backup`` runs next to the daemon. ``restore`` refuses while the daemon runs or when the
storage directory already holds a database, then opens every sealed row with the configured
keys and lists the rows that fail (exit 65 when any does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sqlite3
import sys
from pathlib import Path

from edge.cli import exits
from edge.cli.database import open_database
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.crypto.errors import KeyFileError, UnknownKeyError
from edge.crypto.keys import load_keyring
from edge.storage.database import connect, migrate
from edge.storage.errors import StorageError
from edge.store.backup import BackupError, backup_database, restore_database
from edge.store.keys import StoreKeys
from edge.store.verify import verify_store


def daemon_pid(storage_dir: Path) -> int | None:
    """The pid of a daemon running on ``storage_dir``, from its runtime file, when that
    process is alive."""
    from edge.daemon.app import RUNTIME_FILE  # the daemon's modules load only when needed

    try:
        info = json.loads((storage_dir / RUNTIME_FILE).read_text(encoding="utf-8"))
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid  # alive, owned by another user
    return pid


def run_backup(args: argparse.Namespace, settings: Settings) -> int:
    conn = open_database(settings)
    try:
        size = backup_database(conn, args.file)
    except BackupError as exc:
        status = exits.CANTCREAT if exc.fault == "config" else exits.IOERR
        raise CLIError(status, f"hie-edge backup: {exc}") from None
    finally:
        conn.close()
    print(f"backup written to {args.file} ({size} bytes, mode 0600). It holds ciphertext and "
          "wrapped keys only: keep the KEK apart (`hie-edge keys split`).")
    return exits.OK


def run_restore(args: argparse.Namespace, settings: Settings) -> int:
    storage_dir = settings.storage.dir
    pid = daemon_pid(storage_dir)
    if pid is not None:
        raise CLIError(exits.TEMPFAIL,
                       f"hie-edge restore: the daemon (pid {pid}) is running on {storage_dir}; "
                       "stop it first")
    source: Path = args.file
    try:
        target = restore_database(source, storage_dir)
    except BackupError as exc:
        if exc.path == source.absolute():
            status = exits.NOINPUT if not source.exists() else exits.DATAERR
        else:
            status = exits.CANTCREAT
        raise CLIError(status, f"hie-edge restore: {exc}") from None
    try:
        conn = connect(target)
        try:
            migrate(conn)
            keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
            report = verify_store(conn, keys)
        finally:
            conn.close()
    except (KeyFileError, UnknownKeyError) as exc:
        raise CLIError(exits.CONFIG, f"hie-edge restore: restored to {target}, but cannot "
                       f"verify: {exc}") from None
    except (StorageError, sqlite3.Error) as exc:
        raise CLIError(exits.IOERR, f"hie-edge restore: {exc}") from None
    if args.json:
        json.dump({"database": str(target), "checked": report.checked,
                   "failures": [dataclasses.asdict(f) for f in report.failures]},
                  sys.stdout, indent=2)
        print()
    else:
        print(f"restored to {target}; verified "
              + ", ".join(f"{n} {table}" for table, n in report.checked.items()))
        for failure in report.failures:
            print(f"FAILED {failure.table} {failure.row}: {failure.problem}")
    if not report.ok:
        print(f"hie-edge restore: {len(report.failures)} rows failed verification",
              file=sys.stderr)
        return exits.DATAERR
    return exits.OK
