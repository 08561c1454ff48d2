"""The state database for commands that run beside the daemon (WAL lets them)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from edge.cli import exits
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.storage.database import connect, database_path, migrate
from edge.storage.errors import StorageError, storage_error


def open_database(settings: Settings, *, readonly: bool = False) -> sqlite3.Connection:
    """The state database; ``NOINPUT`` when there is none (a wrong config must not look like
    an empty store, and a command must not create one). A writable connection is migrated
    first. ``IOERR`` when it cannot be opened (a file that is not a database included)."""
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


@contextmanager
def database_for(settings: Settings, command: str, *,
                 readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """:func:`open_database` for one command's work, closed after it. SQLite failing during
    the work (locked past the busy timeout by a long writer, disk I/O, a damaged page) is the
    command's one ``IOERR`` line, not an internal error."""
    conn = open_database(settings, readonly=readonly)
    try:
        yield conn
    except sqlite3.Error as exc:
        raise CLIError(exits.IOERR,
                       f"hie-edge {command}: {storage_error(exc, 'database')}") from None
    finally:
        conn.close()
