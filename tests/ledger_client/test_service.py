"""The daemon's entry point, on the embedded backend: ingest -> anchored -> verified."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.anchorer import AnchorPolicy
from ledger_client.leaf import new_salt, record_leaf
from ledger_client.receipt import check_receipt, make_receipt, verify_anchor_chain
from ledger_client.service import open_ledger

from .ledger_support import FACILITY


async def test_open_ledger_local_end_to_end(tmp_path: Path) -> None:
    key = tmp_path / "ledger.pem"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ledger = open_ledger(tmp_path / "edge.db", FACILITY, key,
                         policy=AnchorPolicy(interval_s=3600, max_pending_leaves=10))
    task = asyncio.create_task(ledger.anchorer.run())
    records = [{"resourceType": "Encounter", "id": f"e{i}"} for i in range(12)]
    salts = [new_salt() for _ in records]
    ledger.log.append([record_leaf(r, s) for r, s in zip(records, salts, strict=True)])
    ledger.anchorer.notify(ledger.log.size)  # 12 waiting >= 10: anchors now, not in an hour
    for _ in range(1000):
        if ledger.anchorer.status().last_anchored_size == 12:
            break
        await asyncio.sleep(0)
    assert ledger.anchorer.status().last_anchored_size == 12
    latest = ledger.anchorer.latest_anchored()
    assert latest is not None
    for i in range(12):
        result = await check_receipt(records[i], make_receipt(ledger.log, latest, i, salts[i]),
                                     ledger.backend)
        assert result.ok
    anchors = [(a.checkpoint.tree_size, a.checkpoint.root_hash) for a in ledger.anchorer.anchored()]
    assert verify_anchor_chain(anchors, ledger.log) == []
    assert (tmp_path / "checkpoints.notes").read_text().startswith(f"hie-edge/{FACILITY}\n12\n")
    ledger.anchorer.stop()
    await task
    await ledger.aclose()
