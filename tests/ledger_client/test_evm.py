"""The EVM backend against a real Ethereum node (anvil from npm, started per test).

Accounts are fresh keys funded through anvil's RPC (or left empty on the free-gas network),
never anvil's well-known dev keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from ledger_client.anchorer import Anchorer, AnchorPolicy
from ledger_client.backends.evm import EvmBackend, add_facility, deploy, facility_key
from ledger_client.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from ledger_client.devnode import AnvilNode
from ledger_client.errors import AnchorConflict, AnchorRejected, BackendUnavailable
from ledger_client.leaf import new_salt, record_leaf
from ledger_client.log import MerkleLog
from ledger_client.receipt import check_receipt, make_receipt
from ledger_client.testing import FakeClock

from .ledger_support import FACILITY


def new_key(node: AnvilNode | None) -> tuple[str, str]:
    acct = Account.create()
    if node is not None:
        node.rpc("anvil_setBalance", acct.address, hex(10**20))
    return acct.key.to_0x_hex(), acct.address


def start_node(tmp_path: Path, *args: str) -> AnvilNode:
    node = AnvilNode(tmp_path, args=("--accounts", "1", *args),
                     state_file=tmp_path / "anvil-state.json")
    node.start()
    return node


@pytest.fixture
def anvil(tmp_path: Path) -> Iterator[AnvilNode]:
    node = start_node(tmp_path)
    yield node
    node.stop()


async def consortium(node: AnvilNode, funded: bool = True) -> tuple[str, str, str]:
    """Deploy, register FACILITY; return (contract, facility key, admin key)."""
    admin_key, _ = new_key(node if funded else None)
    fac_key, fac_addr = new_key(node if funded else None)
    dep = await deploy(node.url, private_key=admin_key)
    await add_facility(node.url, dep.contract, FACILITY, fac_addr, private_key=admin_key)
    return dep.contract, fac_key, admin_key


def signed(signer: NoteSigner, size: int, root: bytes) -> object:
    return sign_checkpoint(Checkpoint(FACILITY, size, root, 1_000 * size), signer)


async def test_deploy_register_anchor_read_back_and_refusals(
        anvil: AnvilNode, signer: NoteSigner) -> None:
    contract, fac_key, _ = await consortium(anvil)
    backend = EvmBackend(anvil.url, contract, private_key=fac_key)
    assert await backend.reachable() and await backend.is_member(FACILITY)
    assert await backend.latest(FACILITY) is None
    ref = await backend.publish(signed(signer, 10, b"\x0a" * 32))  # type: ignore[arg-type]
    assert (ref.backend, ref.tree_size, ref.chain_id, ref.contract) == ("evm", 10, 31337, contract)
    assert ref.tx_hash is not None and ref.block_number is not None
    latest = await backend.latest(FACILITY)
    assert latest is not None and (latest.tree_size, latest.root_hash) == (10, b"\x0a" * 32)
    assert latest.anchor == ref
    got = await backend.get(FACILITY, 10)
    assert got is not None and got.anchor.tx_hash == ref.tx_hash
    assert await backend.get(FACILITY, 9) is None

    # Republishing the same checkpoint sends nothing and returns the same anchor.
    head = anvil.rpc("eth_blockNumber")
    assert await backend.publish(signed(signer, 10, b"\x0a" * 32)) == ref  # type: ignore[arg-type]
    assert anvil.rpc("eth_blockNumber") == head
    with pytest.raises(AnchorConflict):
        await backend.publish(signed(signer, 10, b"\x0b" * 32))  # type: ignore[arg-type]
    with pytest.raises(AnchorRejected, match="tree-shrank"):
        await backend.publish(signed(signer, 5, b"\x05" * 32))  # type: ignore[arg-type]
    assert anvil.rpc("eth_blockNumber") == head  # refusals surface before any transaction

    # An account the admin never registered cannot anchor, for any facility id.
    outsider_key, outsider = new_key(anvil)
    intruder = EvmBackend(anvil.url, contract, private_key=outsider_key)
    with pytest.raises(AnchorRejected, match="not-member"):
        await intruder.publish(signed(signer, 11, b"\x0c" * 32))  # type: ignore[arg-type]
    assert not await intruder.is_member(FACILITY)
    # Only the admin registers facilities.
    with pytest.raises(AnchorRejected, match="not-admin"):
        await add_facility(anvil.url, contract, "rogue", outsider, private_key=fac_key)
    latest = await backend.latest(FACILITY)
    assert latest is not None and latest.tree_size == 10
    for b in (backend, intruder):
        await b.aclose()


@pytest.mark.parametrize(("args", "funded", "tx_type"), [
    # Free gas (like Besu with min-gas-price=0 and zeroBaseFee), accounts never funded.
    (("--gas-price", "0", "--base-fee", "0", "--disable-min-priority-fee"), False, "0x2"),
    (("--hardfork", "berlin"), True, "0x0"),  # no EIP-1559: legacy gas price
])
async def test_other_fee_models(tmp_path: Path, signer: NoteSigner, args: tuple[str, ...],
                                funded: bool, tx_type: str) -> None:
    node = start_node(tmp_path, *args)
    try:
        contract, fac_key, _ = await consortium(node, funded=funded)
        backend = EvmBackend(node.url, contract, private_key=fac_key)
        ref = await backend.publish(signed(signer, 3, b"\x03" * 32))  # type: ignore[arg-type]
        tx = node.rpc("eth_getTransactionByHash", ref.tx_hash)
        assert tx["type"] == tx_type
        if not funded:
            assert int(tx["gasPrice"], 16) == 0
        got = await backend.get(FACILITY, 3)
        assert got is not None and got.root_hash == b"\x03" * 32
        await backend.aclose()
    finally:
        node.stop()


async def test_waits_for_confirmations(anvil: AnvilNode, signer: NoteSigner) -> None:
    contract, fac_key, _ = await consortium(anvil)
    mined: list[int] = []

    async def mine_instead_of_waiting(_: float) -> None:
        anvil.rpc("evm_mine")
        mined.append(1)

    backend = EvmBackend(anvil.url, contract, private_key=fac_key, confirmations=3,
                         sleep=mine_instead_of_waiting)
    ref = await backend.publish(signed(signer, 4, b"\x04" * 32))  # type: ignore[arg-type]
    assert len(mined) == 2  # automine made block N; it returned once N+2 existed
    assert int(anvil.rpc("eth_blockNumber"), 16) == (ref.block_number or 0) + 2
    await backend.aclose()


async def test_node_down_then_restarted_anchorer_catches_up(
        tmp_path: Path, anvil: AnvilNode, signer: NoteSigner) -> None:
    contract, fac_key, _ = await consortium(anvil)
    backend = EvmBackend(anvil.url, contract, private_key=fac_key, request_timeout_s=2)
    mlog = MerkleLog.open(tmp_path / "edge.db")
    clock = FakeClock()
    anchorer = Anchorer(mlog, backend, signer, FACILITY, db=tmp_path / "edge.db",
                        policy=AnchorPolicy(interval_s=10, backoff_initial_s=1), clock=clock,
                        sleep=clock.sleep)
    records = [{"resourceType": "Patient", "id": f"p{i}"} for i in range(50)]
    salts = [new_salt() for _ in records]
    leaves = [record_leaf(r, s) for r, s in zip(records, salts, strict=True)]
    mlog.append(leaves[:20])
    await anchorer.tick()
    assert anchorer.status().last_anchored_size == 20

    anvil.stop()  # the chain node goes away for a while
    for i in (20, 30, 40):  # intake goes on
        mlog.append(leaves[i:i + 10])
        clock.advance(10)
        await anchorer.tick()
    st = anchorer.status()
    assert (st.log_size, st.last_anchored_size, st.backend_reachable) == (50, 20, False)
    assert st.leaves_pending == 30 and st.checkpoints_pending == 1
    with pytest.raises(BackendUnavailable):
        await backend.latest(FACILITY)

    anvil.start()  # same port, same chain (state dumped on stop, loaded on start)
    clock.advance(60)
    await anchorer.tick()
    st = anchorer.status()
    assert (st.last_anchored_size, st.leaves_pending, st.backend_reachable) == (50, 0, True)
    on_chain = await backend.latest(FACILITY)
    assert on_chain is not None and on_chain.root_hash == mlog.root(50)
    # Every record verifies against the root read back from the chain.
    latest = anchorer.latest_anchored()
    assert latest is not None
    results = await asyncio.gather(*(
        check_receipt(records[i], make_receipt(mlog, latest, i, salts[i]), backend)
        for i in (0, 19, 20, 49)))
    assert all(r.ok for r in results)
    assert bytes(await backend._contract.functions.rootAt(
        facility_key(FACILITY), 20).call()) == mlog.root(20)
    mlog.close()
    await backend.aclose()
