"""Ledger benchmark: leaves/s appended to the SQLite Merkle log with proofs built, against a
baseline in the same run, and gas per record on anvil at batch sizes 100, 1,000 and 10,000.

Targets (issue 6): at least 100,000 leaves/s; at most 20 gas per record at 10,000 per batch.
Run: .venv/bin/python bench/ledger.py   (needs `npm ci` for anvil)
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _figures import record
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from ledger_client import merkle
from ledger_client.backends.evm import EvmBackend, add_facility, deploy
from ledger_client.checkpoint import (
    Checkpoint,
    NoteSigner,
    origin_for,
    sign_checkpoint,
)
from ledger_client.devnode import AnvilNode
from ledger_client.log import MerkleLog

N_LEAVES = 100_000
BATCH = 1_000  # leaves per append (one transaction), like grouped intake commits
PROOF_SAMPLE = 1_000
FACILITY = "bench-hospital"


def bench_append(workdir: Path) -> None:
    entries = [i.to_bytes(8, "big") * 4 for i in range(N_LEAVES)]
    leaves = [merkle.leaf_hash(e) for e in entries]

    # Baseline: hashing the same leaves with plain hashlib into an in-memory list.
    t0 = time.perf_counter()
    baseline: list[bytes] = []
    for e in entries:
        baseline.append(hashlib.sha256(b"\x00" + e).digest())
    base_s = time.perf_counter() - t0

    log = MerkleLog.open(workdir / "bench.db")
    t0 = time.perf_counter()
    for i in range(0, N_LEAVES, BATCH):
        log.append(leaves[i:i + BATCH])
    append_s = time.perf_counter() - t0
    size = log.size
    step = N_LEAVES // PROOF_SAMPLE
    t1 = time.perf_counter()
    root = log.root(size)
    proofs = [(i, log.inclusion_proof(i, size)) for i in range(0, N_LEAVES, step)]
    proof_s = time.perf_counter() - t1
    assert all(merkle.verify_inclusion(leaves[i], i, size, p, root) for i, p in proofs)
    log.close()

    rate = N_LEAVES / (append_s + proof_s)
    print(f"leaves appended with proofs built: {rate:,.0f} leaves/s "
          f"(append {append_s:.3f} s for {N_LEAVES:,} in batches of {BATCH:,}; "
          f"{PROOF_SAMPLE:,} inclusion proofs {proof_s * 1000:.0f} ms)")
    print(f"baseline hashlib SHA-256 into a list: {N_LEAVES / base_s:,.0f} leaves/s")
    print(f"ratio log / baseline: {base_s / (append_s + proof_s):.3f}")
    print(f"target >= 100,000 leaves/s: {'met' if rate >= 100_000 else 'NOT met'}")
    record("ledger", "leaves appended with proofs built", rate, "leaves/s",
           baseline="hashlib SHA-256 into a list", baseline_value=N_LEAVES / base_s)


async def bench_gas(workdir: Path) -> None:
    node = AnvilNode(workdir, args=("--accounts", "1"))
    node.start()
    try:
        admin, facility = Account.create(), Account.create()
        for acct in (admin, facility):
            node.rpc("anvil_setBalance", acct.address, hex(10**20))
        dep = await deploy(node.url, private_key=admin.key.to_0x_hex())
        await add_facility(node.url, dep.contract, FACILITY, facility.address,
                           private_key=admin.key.to_0x_hex())
        backend = EvmBackend(node.url, dep.contract, private_key=facility.key.to_0x_hex())
        signer = NoteSigner(origin_for(FACILITY), Ed25519PrivateKey.generate())
        size = 0

        async def anchor(batch: int) -> int:
            nonlocal size
            size += batch
            root = hashlib.sha256(size.to_bytes(8, "big")).digest()
            ref = await backend.publish(sign_checkpoint(Checkpoint(FACILITY, size, root, 0),
                                                        signer))
            return int(node.rpc("eth_getTransactionReceipt", ref.tx_hash)["gasUsed"], 16)

        first = await anchor(1)  # the facility's first anchor also fills its head slots
        print(f"gas of a facility's first anchor: {first:,}")
        for batch in (100, 1_000, 10_000):
            gas = await anchor(batch)
            per = gas / batch
            verdict = "met" if per <= 20 else "NOT met"
            note = f" (target <= 20: {verdict})" if batch == 10_000 else ""
            print(f"batch {batch:>6,}: {gas:,} gas per anchor, {per:,.1f} gas per record{note}")
            record("ledger", f"gas per record, batch {batch:,}", per, "gas",
                   baseline="first anchor (gas per anchor)", baseline_value=first,
                   higher_is_better=False)
        await backend.aclose()
    finally:
        node.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bench_append(Path(tmp))
        asyncio.run(bench_gas(Path(tmp)))


if __name__ == "__main__":
    main()
