"""Opening the state database and bringing its schema up to date.

One file, ``<storage.dir>/edge.db``, in WAL mode with ``synchronous=FULL``: a commit is on
disk when ``COMMIT`` returns (https://www.sqlite.org/pragma.html#pragma_synchronous), which
is what lets an ACK promise durability. Schema changes are registered migrations, applied in
order and recorded in ``schema_migrations``; a database newer than this code is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlite_utils

from edge.storage.errors import StorageError, storage_error

DB_FILENAME = "edge.db"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


_MIGRATIONS: dict[int, Migration] = {}


def migration(version: int, name: str) -> Callable[[Callable[[sqlite_utils.Database], None]],
                                                 Callable[[sqlite_utils.Database], None]]:
    """Register a schema migration. Versions are global and never reused or edited once
    released: a change to a shipped table is a new migration."""

    def register(
        func: Callable[[sqlite_utils.Database], None],
    ) -> Callable[[sqlite_utils.Database], None]:
        if version in _MIGRATIONS:
            raise RuntimeError(f"migration {version} registered twice")
        _MIGRATIONS[version] = Migration(version, name, func)
        return func

    return register


def database_path(storage_dir: Path) -> Path:
    return storage_dir / DB_FILENAME


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every user of the state database needs."""
    try:
        if readonly:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                   isolation_level=None)
        else:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # Deleted rows (erasure, retention) are overwritten, not left in free pages.
        conn.execute("PRAGMA secure_delete = ON")
        if readonly:
            # Reads the file's header, as journal_mode does for a writer: a file that is not
            # a database fails here, at open, not at a caller's first query.
            conn.execute("PRAGMA schema_version")
    except sqlite3.Error as exc:
        # Not a database: not retriable; cannot open (permissions, a missing directory,
        # locked): retriable once the operator has fixed it.
        raise storage_error(exc, "open database") from None
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    db = sqlite_utils.Database(conn)
    if not db["schema_migrations"].exists():
        return 0
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: sqlite3.Connection) -> list[int]:
    """Apply every registered migration not yet applied, each in its own transaction.
    Returns the versions applied."""
    _load_schema_modules()
    db = sqlite_utils.Database(conn)
    if not db["schema_migrations"].exists():
        db.table("schema_migrations").create({"version": int, "name": str, "applied_at": str},
                                       pk="version")
    # Set-based, not "above the highest": a migration registered with a lower number than
    # one already applied (two changes made side by side) is applied all the same.
    done = {int(v) for (v,) in conn.execute("SELECT version FROM schema_migrations")}
    current = max(done, default=0)
    known = max(_MIGRATIONS, default=0)
    if current > known:
        raise StorageError("open database",
                           f"schema version {current} is newer than this release knows ({known})",
                           retriable=False)
    applied = []
    for version in sorted(v for v in _MIGRATIONS if v not in done):
        step = _MIGRATIONS[version]
        try:
            conn.execute("BEGIN IMMEDIATE")
            step.apply(db)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) "
                "VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                (version, step.name),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise StorageError(f"migration {version} ({step.name})", str(exc),
                               retriable=False) from None
        applied.append(version)
    return applied


def _load_schema_modules() -> None:
    # Each stage registers its own tables; importing them here keeps one list of modules
    # whose schema the database must hold.
    import edge.fhirapi.schema
    import edge.inbox.schema
    import edge.peer.schema
    import edge.store.schema  # noqa: F401
