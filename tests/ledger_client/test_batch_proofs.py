"""Many proofs against one tree size in one read (``MerkleLog.inclusion_proofs``,
``make_receipts``): the same bytes as one proof at a time, and checked against the RFC 9162
definitions in memory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger_client.anchorer import Anchorer
from ledger_client.checkpoint import NoteSigner
from ledger_client.errors import LogError
from ledger_client.leaf import new_salt, record_leaf
from ledger_client.log import MerkleLog
from ledger_client.merkle import inclusion_proof, leaf_hash, verify_inclusion
from ledger_client.receipt import make_receipt, make_receipts, verify_receipt
from ledger_client.testing import FakeBackend, FakeClock

from .ledger_support import FACILITY

LEAVES = [leaf_hash(i.to_bytes(4, "big")) for i in range(300)]


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> MerkleLog:
    lg = MerkleLog.open(tmp_path_factory.mktemp("batch") / "edge.db")
    lg.append(LEAVES)
    return lg


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_batch_equals_one_at_a_time_and_rfc9162(grown: MerkleLog, size: int,
                                                 data: st.DataObject) -> None:
    indexes = data.draw(st.lists(st.integers(0, size - 1), max_size=40))
    proofs = grown.inclusion_proofs(indexes, size)
    assert len(proofs) == len(indexes)
    root = grown.root(size)
    for index, proof in zip(indexes, proofs, strict=True):
        assert proof == grown.inclusion_proof(index, size)
        assert proof == inclusion_proof(index, LEAVES[:size])
        assert verify_inclusion(LEAVES[index], index, size, proof, root)


def test_every_leaf_of_a_tree_at_once(grown: MerkleLog) -> None:
    proofs = grown.inclusion_proofs(range(257), 257)
    assert proofs == [inclusion_proof(i, LEAVES[:257]) for i in range(257)]


def test_refuses_what_one_proof_refuses(grown: MerkleLog) -> None:
    with pytest.raises(LogError):
        grown.inclusion_proofs([0, 5], 301)  # beyond the log
    with pytest.raises(LogError):
        grown.inclusion_proofs([0, 5], 5)  # index 5 is not in a tree of 5
    assert grown.inclusion_proofs([], 10) == []


async def test_receipts_equal_single_receipts_and_verify(tmp_path: Path,
                                                         signer: NoteSigner) -> None:
    mlog = MerkleLog.open(tmp_path / "edge.db")
    records = [{"resourceType": "Observation", "id": f"o{i}", "valueQuantity": {"value": i}}
               for i in range(45)]
    salts = [new_salt() for _ in records]
    mlog.append([record_leaf(r, s) for r, s in zip(records, salts, strict=True)])
    clock = FakeClock()
    anchorer = Anchorer(mlog, FakeBackend(), signer, FACILITY, clock=clock, sleep=clock.sleep)
    await anchorer.tick()
    anchored = anchorer.latest_anchored()
    assert anchored is not None
    mlog.append([hashlib.sha256(b"later").digest()])  # the log grows past the checkpoint
    wanted = [3, 0, 44, 3, 17]
    batch = make_receipts(mlog, anchored, [(i, salts[i]) for i in wanted])
    assert batch == [make_receipt(mlog, anchored, i, salts[i]) for i in wanted]
    for i, receipt in zip(wanted, batch, strict=True):
        assert receipt.tree_size == 45
        assert verify_receipt(records[i], receipt, anchored.checkpoint.root_hash).ok
    with pytest.raises(LogError):
        make_receipts(mlog, anchored, [(0, salts[0]), (45, new_salt())])
    mlog.close()
