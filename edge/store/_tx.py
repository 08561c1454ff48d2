"""One write transaction helper shared by the store's functions."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_transaction(conn: sqlite3.Connection, *, savepoint: bool = True) -> Iterator[None]:
    """Run the block atomically. Inside an open transaction (a group-commit operation) it is a
    SAVEPOINT (or nothing, with ``savepoint=False``, for blocks that check everything before
    their first write and rely on the caller's own savepoint, as the group committer gives each
    operation), so the caller's transaction decides when it commits; otherwise it is a
    ``BEGIN IMMEDIATE`` transaction, which takes the write lock up front: a deferred
    transaction that reads first and writes later can fail with SQLITE_BUSY_SNAPSHOT in WAL
    mode when another connection committed in between (https://www.sqlite.org/wal.html)."""
    if conn.in_transaction and not savepoint:
        yield
        return
    if conn.in_transaction:
        conn.execute("SAVEPOINT store_tx")
        try:
            yield
        except BaseException:
            conn.execute("ROLLBACK TO store_tx")
            conn.execute("RELEASE store_tx")
            raise
        conn.execute("RELEASE store_tx")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def read_snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block's reads in one snapshot (a deferred transaction), unless the caller already
    holds a transaction."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if _in_transaction(conn):  # a read-only block can only have ended it by a fatal error
            conn.execute("COMMIT")


def _in_transaction(conn: sqlite3.Connection) -> bool:
    # A function, so the type checker does not carry the narrowing from before BEGIN over.
    return conn.in_transaction
