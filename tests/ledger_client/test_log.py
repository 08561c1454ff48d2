"""The SQLite Merkle log: agrees with the in-memory RFC 9162 tree, survives a restart, and
writes inside a caller's transaction without committing it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_client import merkle
from ledger_client.errors import LogError
from ledger_client.log import MerkleLog


def leaves(n: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(start, start + n)]


@pytest.fixture
def log(tmp_path: Path) -> MerkleLog:
    lg = MerkleLog.open(tmp_path / "edge.db")
    yield lg  # type: ignore[misc]
    lg.close()


def test_empty_log(log: MerkleLog) -> None:
    assert log.size == 0
    assert log.root() == merkle.EMPTY_ROOT
    assert log.consistency_proof(0, 0) == []
    with pytest.raises(LogError):
        log.inclusion_proof(0, 0)
    with pytest.raises(LogError):
        log.leaf(0)


@settings(max_examples=25, deadline=None)
@given(batches=st.lists(st.integers(1, 70), min_size=1, max_size=6), data=st.data())
def test_log_matches_in_memory_tree(tmp_path_factory: pytest.TempPathFactory,
                                    batches: list[int], data: st.DataObject) -> None:
    lg = MerkleLog.open(tmp_path_factory.mktemp("log") / "edge.db")
    all_leaves: list[bytes] = []
    for b in batches:
        new = leaves(b, len(all_leaves))
        assert lg.append(new) == len(all_leaves)
        all_leaves += new
    n = len(all_leaves)
    assert lg.size == n
    size = data.draw(st.integers(1, n))
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    assert lg.root(size) == merkle.mth(all_leaves[:size])
    assert lg.inclusion_proof(index, size) == merkle.inclusion_proof(index, all_leaves[:size])
    assert lg.consistency_proof(old, size) == merkle.consistency_proof(old, all_leaves[:size])
    assert lg.leaf(index) == all_leaves[index]
    lg.close()


def test_survives_restart_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "edge.db"
    first = MerkleLog.open(path)
    first.append(leaves(13))
    root13 = first.root()
    first.close()
    again = MerkleLog.open(path)
    assert again.size == 13 and again.root() == root13
    assert again.append(leaves(8, 13)) == 13
    assert again.root() == merkle.mth(leaves(21))
    assert merkle.verify_consistency(13, 21, root13, again.root(), again.consistency_proof(13))
    again.close()


def test_append_joins_the_callers_transaction(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    lg = MerkleLog(conn)
    lg.append(leaves(5))
    conn.execute("BEGIN")
    assert lg.append(leaves(3, 5)) == 5
    assert lg.size == 8
    conn.execute("ROLLBACK")  # the store's write failed: the leaves go with it
    assert lg.size == 5
    # No stale frontier survives the rollback: the next append builds the right tree.
    assert lg.append(leaves(4, 100)) == 5
    assert lg.root() == merkle.mth(leaves(5) + leaves(4, 100))
    conn.close()


def test_a_failed_batch_leaves_nothing(log: MerkleLog) -> None:
    log.append(leaves(3))
    with pytest.raises(LogError):
        log.append([*leaves(2, 3), b"short"])
    assert log.size == 3


def test_refuses_sizes_and_indexes_outside_the_log(log: MerkleLog) -> None:
    log.append(leaves(4))
    with pytest.raises(LogError):
        log.root(5)
    with pytest.raises(LogError):
        log.inclusion_proof(4, 4)
    with pytest.raises(LogError):
        log.consistency_proof(3, 5)
    with pytest.raises(LogError):
        log.consistency_proof(4, 3)
    assert [i for i, _ in log.leaves(1, 3)] == [1, 2]


def test_damaged_storage_is_reported(log: MerkleLog) -> None:
    log.append(leaves(6))
    # Drop the stored subtree over leaves 4..5 (level 1, index 2).
    log.connection.execute("DELETE FROM ledger_nodes WHERE id = ?", ((1 << 48) | 2,))
    with pytest.raises(LogError, match="damaged"):
        log.root(6)
