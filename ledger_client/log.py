"""An append-only RFC 9162 Merkle log persisted in SQLite.

Storage: one table, ``ledger_nodes``, holding every *perfect* subtree hash of the tree the
moment it completes, leaves included (a leaf is the perfect subtree of level 0). Row id
``(level << 48) | index`` names the subtree covering leaves ``[index << level,
(index + 1) << level)``. A subtree, once complete, never changes in an append-only log, so
rows are only ever inserted; a tree of n leaves has fewer than 2n rows.

Appending a leaf costs one leaf row plus one row per subtree it completes (on average one),
hashed from the in-flight "frontier" (the left siblings still waiting for a right one);
nothing is recomputed. The root and every proof for any past size are built from the perfect
subtrees that ``merkle.perfect_nodes`` names: O(log n) rows, fetched in one query.

The log never commits a caller's transaction: when the connection is already inside one,
``append`` writes inside it (so the store can write a record and its leaf atomically) and the
caller commits; otherwise ``append`` wraps the batch in its own ``BEGIN IMMEDIATE`` .. ``COMMIT``.
One writer per database: two ``MerkleLog`` objects must not append to the same file at once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ledger_client.errors import LogError
from ledger_client.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Node,
    Range,
    consistency_ranges,
    hash_range,
    inclusion_ranges,
    node_hash,
    perfect_nodes,
)

_LEVEL_SHIFT = 48
#: The largest log this layout can hold (2**48 leaves).
MAX_SIZE = 1 << _LEVEL_SHIFT
_FETCH_CHUNK = 500  # stays below SQLite's default limit of host parameters per statement

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_nodes (
    id   INTEGER PRIMARY KEY,  -- (level << 48) | index of a perfect subtree
    hash BLOB NOT NULL         -- its RFC 9162 hash (level 0: the leaf hash)
)
"""


def _node_id(node: Node) -> int:
    return (node[0] << _LEVEL_SHIFT) | node[1]


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the log's table when missing (idempotent)."""
    conn.execute(SCHEMA)


class MerkleLog:
    """The facility's append-only log of record leaves.

    Construct it on an open connection (shared with the store or not), or with
    ``MerkleLog.open(path)`` for a connection of its own in WAL mode.
    """

    def __init__(self, conn: sqlite3.Connection, *, _owns: bool = False) -> None:
        self._conn = conn
        self._owns = _owns
        self._lock = threading.Lock()
        ensure_schema(conn)

    @classmethod
    def open(cls, path: str | Path) -> MerkleLog:
        """A log on its own connection to ``path`` (WAL, synchronous=FULL, autocommit)."""
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return cls(conn, _owns=True)

    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def close(self) -> None:
        """Close the connection if the log opened it itself."""
        if self._owns:
            self._conn.close()

    def __repr__(self) -> str:
        return f"MerkleLog(size={self.size})"

    # -- reading ---------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """The number of leaves committed (or written in the current transaction)."""
        row = self._conn.execute(
            "SELECT max(id) FROM ledger_nodes WHERE id < ?", (MAX_SIZE,)
        ).fetchone()
        return 0 if row[0] is None else int(row[0]) + 1

    def _fetch(self, nodes: Sequence[Node]) -> dict[Node, bytes]:
        wanted = {_node_id(n): n for n in nodes}
        ids = list(wanted)
        found: dict[Node, bytes] = {}
        for i in range(0, len(ids), _FETCH_CHUNK):
            chunk = ids[i:i + _FETCH_CHUNK]
            marks = ",".join("?" * len(chunk))
            # The statement text only ever holds "?" marks; values are bound.
            sql = f"SELECT id, hash FROM ledger_nodes WHERE id IN ({marks})"  # noqa: S608
            for node_id, h in self._conn.execute(sql, chunk):
                found[wanted[node_id]] = bytes(h)
        if len(found) != len(wanted):
            missing = sorted(set(wanted.values()) - set(found))[:3]
            raise LogError(f"log storage lacks subtree(s) (level, index) {missing}: damaged")
        return found

    def _hash_ranges(self, ranges: Sequence[Range]) -> list[bytes]:
        plans = [perfect_nodes(a, b) for a, b in ranges]
        hashes = self._fetch([n for plan in plans for n in plan])
        return [hash_range(a, b, hashes.__getitem__) for a, b in ranges]

    def _check_size(self, size: int) -> int:
        current = self.size
        if not 0 <= size <= current:
            raise LogError(f"tree size {size} outside the log (size {current})")
        return current

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        if size is None:
            size = self.size
        else:
            self._check_size(size)
        if size == 0:
            return EMPTY_ROOT
        return self._hash_ranges([(0, size)])[0]

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < MAX_SIZE:
            raise LogError(f"leaf index {index} outside the log")
        row = self._conn.execute("SELECT hash FROM ledger_nodes WHERE id = ?", (index,)).fetchone()
        if row is None:
            raise LogError(f"leaf index {index} outside the log")
        return bytes(row[0])

    def leaves(self, start: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(index, leaf hash) for leaves [start, end), in order."""
        stop = min(self.size, MAX_SIZE if end is None else end)
        for idx, h in self._conn.execute(
            "SELECT id, hash FROM ledger_nodes WHERE id >= ? AND id < ? ORDER BY id",
            (max(start, 0), stop),
        ):
            yield int(idx), bytes(h)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 2.1.3.1)."""
        if size is None:
            size = self.size
        else:
            self._check_size(size)
        if not 0 <= index < size:
            raise LogError(f"leaf index {index} outside a tree of size {size}")
        return self._hash_ranges(inclusion_ranges(index, size))

    def inclusion_proofs(self, indexes: Sequence[int], size: int) -> list[list[bytes]]:
        """``inclusion_proof(i, size)`` for each ``i`` in ``indexes``, in that order, built
        from one read of the stored subtrees: many leaves of one tree share most of their
        audit path (every path ends in the same few subtrees near the root), so each stored
        subtree is read once, and each range hash is computed once, however many proofs
        name it. Raises LogError like ``inclusion_proof`` for a size or index outside the
        log (before any proof is built)."""
        self._check_size(size)
        for index in indexes:
            if not 0 <= index < size:
                raise LogError(f"leaf index {index} outside a tree of size {size}")
        plans = [inclusion_ranges(index, size) for index in indexes]
        wanted = {r for plan in plans for r in plan}
        hashes = self._fetch(list({n for a, b in wanted for n in perfect_nodes(a, b)}))
        range_hash = {r: hash_range(r[0], r[1], hashes.__getitem__) for r in wanted}
        return [[range_hash[r] for r in plan] for plan in plans]

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[new_size]) (RFC 9162 2.1.4.1); empty when old_size is 0."""
        if new_size is None:
            new_size = self.size
        else:
            self._check_size(new_size)
        if not 0 <= old_size <= new_size:
            raise LogError(f"no consistency proof from size {old_size} to {new_size}")
        if old_size == 0:
            return []
        return self._hash_ranges(consistency_ranges(old_size, new_size))

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[None]:
        if self._conn.in_transaction:
            yield  # the caller's transaction: it commits or rolls back
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _frontier(self, size: int) -> list[bytes]:
        """frontier[level] = the complete subtree at ``level`` still waiting for a right
        sibling: the node (level, (size >> level) - 1) for each bit set in ``size``."""
        nodes = [(lv, (size >> lv) - 1) for lv in range(size.bit_length()) if size >> lv & 1]
        found = self._fetch(nodes)
        frontier = [b""] * (_LEVEL_SHIFT + 1)
        for node, h in found.items():
            frontier[node[0]] = h
        return frontier

    def append(self, leaf_hashes: Sequence[bytes]) -> int:
        """Append a batch of leaf hashes; return the index of the first one.

        The batch is written atomically (all or none). Indexes are consecutive, so leaf
        ``leaf_hashes[i]`` has index ``first + i``.
        """
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise LogError(f"leaf hash of {len(h)} bytes, expected {HASH_SIZE}")
        with self._lock, self._write():
            # The size and frontier are read inside the write transaction, never cached:
            # a rolled-back transaction of the caller's must leave no stale state here.
            first = self.size
            if first + len(leaf_hashes) > MAX_SIZE:
                raise LogError("log is full")
            frontier = self._frontier(first)
            rows: list[tuple[int, bytes]] = []
            add = rows.append
            shift = _LEVEL_SHIFT
            n = first
            for h in leaf_hashes:
                add((n, h))
                level, idx, acc = 0, n, h
                # Each odd index completes its parent with the left sibling in the frontier.
                while idx & 1:
                    acc = node_hash(frontier[level], acc)
                    level += 1
                    idx >>= 1
                    add(((level << shift) | idx, acc))
                frontier[level] = acc
                n += 1
            self._conn.executemany("INSERT INTO ledger_nodes (id, hash) VALUES (?, ?)", rows)
        return first
