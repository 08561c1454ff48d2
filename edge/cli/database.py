"""The state database for commands that run beside the daemon (WAL lets them)."""

from __future__ import annotations

import sqlite3

from edge.cli import exits
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.storage.database import connect, database_path, migrate
from edge.storage.errors import StorageError


def open_database(settings: Settings, *, readonly: bool = False) -> sqlite3.Connection:
    """The state database; ``NOINPUT`` when there is none (a wrong config must not look like
    an empty store). A writable connection is migrated first."""
    path = database_path(settings.storage.dir)
    if not path.exists():
        raise CLIError(exits.NOINPUT, f"hie-edge: no database at {path} (has the daemon run?)")
    try:
        conn = connect(path, readonly=readonly)
        if not readonly:
            migrate(conn)
    except StorageError as exc:
        raise CLIError(exits.IOERR, f"hie-edge: {exc}") from None
    return conn
