"""Receipts end to end on the local backend: ingest, anchor, serve, verify; and tampering
(a changed record, a removed leaf, a rewritten log) is caught."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger_client.anchorer import Anchorer
from ledger_client.backends.local import LocalBackend
from ledger_client.checkpoint import NoteSigner, open_checkpoint
from ledger_client.errors import ReceiptError
from ledger_client.leaf import new_salt, record_leaf
from ledger_client.log import MerkleLog
from ledger_client.receipt import (
    Receipt,
    check_receipt,
    make_receipt,
    verify_anchor_chain,
    verify_receipt,
)
from ledger_client.testing import FakeClock

from .ledger_support import FACILITY


def records(n: int) -> list[dict[str, object]]:
    return [{"resourceType": "Observation", "id": f"obs-{i}", "status": "final",
             "valueQuantity": {"value": i / 4, "unit": "mmol/L"}} for i in range(n)]


@pytest.fixture
async def anchored(tmp_path: Path, mlog: MerkleLog, signer: NoteSigner):
    backend = LocalBackend(tmp_path / "edge.db", tmp_path / "checkpoints.notes")
    clock = FakeClock()
    anchorer = Anchorer(mlog, backend, signer, FACILITY, db=tmp_path / "edge.db", clock=clock,
                        sleep=clock.sleep)
    recs = records(37)
    salts = [new_salt() for _ in recs]
    mlog.append([record_leaf(r, s) for r, s in zip(recs, salts, strict=True)])
    await anchorer.tick()
    yield backend, anchorer, recs, salts
    await backend.aclose()


async def test_every_record_verifies_through_its_receipt(anchored, mlog: MerkleLog,
                                                         signer: NoteSigner) -> None:
    backend, anchorer, recs, salts = anchored
    latest = anchorer.latest_anchored()
    assert latest is not None and latest.checkpoint.tree_size == 37
    for i, (rec, salt) in enumerate(zip(recs, salts, strict=True)):
        receipt = make_receipt(mlog, latest, i, salt)
        # It travels as JSON.
        wire = json.loads(json.dumps(receipt.to_json()))
        back = Receipt.from_json(wire)
        assert back == receipt
        result = await check_receipt(json.dumps(rec), back, backend)
        assert result.ok, result.problems
    assert open_checkpoint(receipt.checkpoint or "", signer.verifier).tree_size == 37
    assert "salt" not in repr(receipt) and salts[-1].hex() not in repr(receipt)


async def test_changed_record_or_wrong_salt_fails(anchored, mlog: MerkleLog) -> None:
    backend, anchorer, recs, salts = anchored
    receipt = make_receipt(mlog, anchorer.latest_anchored(), 5, salts[5])
    changed = {**recs[5], "status": "amended"}
    result = await check_receipt(changed, receipt, backend)
    assert not result.ok and "anchored-root" in result.problems
    other_salt = make_receipt(mlog, anchorer.latest_anchored(), 5, new_salt())
    assert not (await check_receipt(recs[5], other_salt, backend)).ok
    # A receipt pointing at a size never anchored is refused too.
    moved = Receipt.from_json({**receipt.to_json(), "tree_size": 36})
    assert "not-anchored" in (await check_receipt(recs[5], moved, backend)).problems


async def test_a_lying_receipt_root_does_not_help(anchored, mlog: MerkleLog) -> None:
    _, anchorer, recs, salts = anchored
    receipt = make_receipt(mlog, anchorer.latest_anchored(), 3, salts[3])
    forged = Receipt.from_json({**receipt.to_json(), "audit_path": []})
    # Even when the receipt's own root is made to match, the anchored root decides.
    result = verify_receipt(recs[3], forged, receipt.root_hash)
    assert not result.ok and result.problems == ("proof",)


async def test_removed_leaf_or_rewritten_log_is_caught(anchored, tmp_path: Path) -> None:
    _, anchorer, recs, salts = anchored
    anchors = [(a.checkpoint.tree_size, a.checkpoint.root_hash) for a in anchorer.anchored()]
    # A second log rebuilt without record 7 (the leaf removed, the rest re-appended).
    rewritten = MerkleLog.open(tmp_path / "rewritten.db")
    leaves = [record_leaf(r, s) for r, s in zip(recs, salts, strict=True)]
    rewritten.append(leaves[:7] + leaves[8:] + [leaves[0]])
    assert verify_anchor_chain(anchors, rewritten) == [(37, "root")]
    rewritten.close()


async def test_consistency_between_anchors(anchored, mlog: MerkleLog) -> None:
    first = (37, mlog.root(37))
    mlog.append([record_leaf(records(1)[0], new_salt())] * 3)
    second = (40, mlog.root(40))
    assert verify_anchor_chain([first, second], mlog) == []
    forked = (40, b"\x00" * 32)
    assert verify_anchor_chain([first, forked], mlog) == [(40, "root"), (40, "consistency")]


@pytest.mark.parametrize("mutate", [
    lambda d: d.pop("salt"),
    lambda d: d.update(version=2),
    lambda d: d.update(leaf_index=-1),
    lambda d: d.update(audit_path=["nothex"]),
    lambda d: d.update(extra=1),
    lambda d: d["anchor"].update(tree_size="9"),
])
def test_malformed_receipts_are_refused(mutate) -> None:
    good = {"version": 1, "facility": FACILITY, "leaf_index": 1, "tree_size": 2,
            "audit_path": ["A" * 43 + "="], "salt": "A" * 43 + "=", "root_hash": "A" * 43 + "=",
            "anchor": {"backend": "local", "tree_size": 2}, "checkpoint": None}
    Receipt.from_json(json.loads(json.dumps(good)))
    mutate(good)
    with pytest.raises(ReceiptError):
        Receipt.from_json(good)
