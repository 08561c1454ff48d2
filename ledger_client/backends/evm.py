"""The consortium chain backend: the HieAnchor contract on an Ethereum JSON-RPC node.

Production networks are permissioned (Hyperledger Besu with QBFT, or GoQuorum), usually with
free gas; tests run anvil. Transactions are signed here with the facility's secp256k1 key
(eth_account) and sent raw, so the node never holds a key. Fees are chosen per transaction:

- the node reports a gas price of 0 (free-gas network): gasPrice 0, or maxFeePerGas 0 when
  blocks carry a base fee (Besu ``zeroBaseFee``);
- blocks carry a base fee (EIP-1559): maxFeePerGas = 2 x base fee + tip, tip from
  ``eth_maxPriorityFeePerGas``;
- otherwise (pre-London): a legacy gasPrice from ``eth_gasPrice``.

A publish waits until the transaction's block has ``confirmations`` blocks on top (itself
included). Reverts are decoded from the contract's custom errors into ``AnchorRejected``
(``not-member``, ``tree-shrank``, ...) or ``AnchorConflict``; transport trouble becomes
``BackendUnavailable`` (retriable). web3's own retries are off: the anchorer's outbox retries.

Facility ids go on chain as keccak256 of their UTF-8 text (``facility_key``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
from eth_account import Account
from eth_utils.crypto import keccak
from web3 import AsyncWeb3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    TransactionNotFound,
    Web3Exception,
    Web3RPCError,
)
from web3.providers.rpc import AsyncHTTPProvider

from ledger_client.backends.base import AnchoredCheckpoint, AnchorRef, LedgerBackend
from ledger_client.checkpoint import SignedCheckpoint
from ledger_client.errors import (
    AnchorConflict,
    AnchorRejected,
    BackendUnavailable,
    LedgerError,
)

CONTRACT_NAME = "HieAnchor"
_ERROR_REASONS = {
    "NotMember": "not-member",
    "NotAdmin": "not-admin",
    "ZeroValue": "zero-value",
    "AlreadyRegistered": "already-registered",
    "UnknownFacility": "unknown-facility",
    "TreeShrank": "tree-shrank",
    "RootConflict": "root-conflict",
}


def load_artifact(name: str = CONTRACT_NAME) -> dict[str, Any]:
    """The committed compiler output (abi, bytecode) of a contract under contracts/."""
    text = (resources.files("ledger_client.backends.evm_artifacts") / f"{name}.json").read_text()
    artifact: dict[str, Any] = json.loads(text)
    return artifact


def facility_key(facility: str) -> bytes:
    """The on-chain id of a facility: keccak256 of its id string."""
    return bytes(keccak(text=facility))


def _error_selectors(abi: list[dict[str, Any]]) -> dict[str, str]:
    out = {}
    for item in abi:
        if item.get("type") == "error":
            sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
            out["0x" + keccak(text=sig)[:4].hex()] = item["name"]
    return out


def _load_key(private_key: str | bytes | None, private_key_file: str | Path | None) -> Any:
    if private_key_file is not None:
        private_key = Path(private_key_file).read_text().strip()
    if private_key is None:
        return None
    try:
        return Account.from_key(private_key)
    except (ValueError, TypeError):
        raise LedgerError("EVM private key is not a valid secp256k1 key") from None


@dataclass(frozen=True, slots=True)
class TxResult:
    tx_hash: str
    block_number: int
    contract_address: str | None
    gas_used: int


class Chain:
    """A JSON-RPC connection plus an optional local signing account. Internal to this
    module and the admin operations; backends and CLI use ``EvmBackend``/``deploy``."""

    def __init__(self, rpc_url: str, *, private_key: str | bytes | None = None,
                 private_key_file: str | Path | None = None, confirmations: int = 1,
                 request_timeout_s: float = 10.0, poll_interval_s: float = 0.2,
                 receipt_timeout_s: float = 120.0, gas_multiplier: float = 1.25,
                 expected_chain_id: int | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if confirmations < 1:
            raise LedgerError("confirmations must be at least 1")
        self.w3 = AsyncWeb3(AsyncHTTPProvider(
            rpc_url, request_kwargs={"timeout": aiohttp.ClientTimeout(total=request_timeout_s)},
            exception_retry_configuration=None))
        self.account = _load_key(private_key, private_key_file)
        self.confirmations = confirmations
        self.poll_interval_s = poll_interval_s
        self.max_polls = max(int(receipt_timeout_s / poll_interval_s), 1)
        self.gas_multiplier = gas_multiplier
        self._sleep = sleep
        self._chain_id: int | None = None
        self._expected_chain_id = expected_chain_id
        artifact = load_artifact()
        self.abi: list[dict[str, Any]] = artifact["abi"]
        self.bytecode: str = artifact["bytecode"]
        self._selectors = _error_selectors(self.abi)

    def __repr__(self) -> str:
        who = self.account.address if self.account is not None else None
        return f"Chain(account={who!r})"

    async def aclose(self) -> None:
        await self.w3.provider.disconnect()

    @asynccontextmanager
    async def translated(self) -> AsyncIterator[None]:
        """Turn web3/aiohttp exceptions into LedgerError subclasses."""
        try:
            yield
        except LedgerError:
            raise
        except ContractCustomError as exc:
            data = exc.data if isinstance(exc.data, str) else ""
            name = self._selectors.get(data[:10], "")
            reason = _ERROR_REASONS.get(name, "reverted")
            if name == "RootConflict":
                raise AnchorConflict(int(data[10:], 16)) from None
            raise AnchorRejected(reason) from None
        except ContractLogicError:
            raise AnchorRejected("reverted") from None
        except Web3RPCError as exc:
            # Node-side refusals (nonce races, txpool full, funds): the outbox retries.
            raise BackendUnavailable(f"node refused the request: {str(exc)[:160]}") from None
        except (aiohttp.ClientError, TimeoutError, OSError, Web3Exception) as exc:
            raise BackendUnavailable(f"node unreachable: {exc.__class__.__name__}") from None

    async def chain_id(self) -> int:
        if self._chain_id is None:
            async with self.translated():
                served = int(await self.w3.eth.chain_id)
            # A facility pointed at the wrong network must not anchor there (EIP-155 ids).
            if self._expected_chain_id is not None and served != self._expected_chain_id:
                raise AnchorRejected("wrong-chain", f"node serves chain {served}, configured "
                                     f"chain is {self._expected_chain_id}")
            self._chain_id = served
        return self._chain_id

    def contract(self, address: str) -> Any:
        return self.w3.eth.contract(address=AsyncWeb3.to_checksum_address(address), abi=self.abi)

    async def fees(self) -> dict[str, int]:
        """Fee fields for the next transaction (see the module docstring)."""
        gas_price = int(await self.w3.eth.gas_price)
        block = await self.w3.eth.get_block("latest")
        base = block.get("baseFeePerGas")
        if base is None:
            return {"gasPrice": gas_price}
        if gas_price == 0:
            return {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
        try:
            tip = int(await self.w3.eth.max_priority_fee)
        except Web3RPCError:
            tip = 0  # nodes without eth_maxPriorityFeePerGas
        return {"maxFeePerGas": 2 * int(base) + tip, "maxPriorityFeePerGas": tip}

    async def transact(self, call: Any) -> TxResult:
        """Sign ``call`` (a contract function call or constructor) locally, send it and wait
        for its confirmations. A reverted transaction raises AnchorRejected."""
        if self.account is None:
            raise LedgerError("this operation needs a signing key")
        sender = self.account.address
        params: dict[str, Any] = {
            "from": sender, "chainId": await self.chain_id(),
            "nonce": await self.w3.eth.get_transaction_count(sender, "pending"),
            **await self.fees(),
        }
        # Estimating runs the call: a revert (not a member, a shrinking tree) surfaces here,
        # decoded, before any transaction is sent.
        gas = await call.estimate_gas({"from": sender})
        tx = await call.build_transaction({**params, "gas": int(gas * self.gas_multiplier)})
        signed = self.account.sign_transaction(tx)
        tx_hash = await self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = await self.wait_confirmed(tx_hash)
        if receipt["status"] != 1:
            raise AnchorRejected("reverted", f"tx {tx_hash.to_0x_hex()}")
        address = receipt.get("contractAddress")
        return TxResult(tx_hash.to_0x_hex(), int(receipt["blockNumber"]),
                        str(address) if address else None, int(receipt["gasUsed"]))

    async def wait_confirmed(self, tx_hash: Any) -> Any:
        for _ in range(self.max_polls):
            try:
                receipt = await self.w3.eth.get_transaction_receipt(tx_hash)
            except TransactionNotFound:
                receipt = None
            if receipt is not None:
                head = int(await self.w3.eth.block_number)
                # Re-read every poll: after a reorg the receipt moves or disappears.
                if head - int(receipt["blockNumber"]) + 1 >= self.confirmations:
                    return receipt
            await self._sleep(self.poll_interval_s)
        raise BackendUnavailable("transaction not confirmed in time")


class EvmBackend(LedgerBackend):
    """Anchors on a HieAnchor contract at ``contract`` through the node at ``rpc_url``.

    ``private_key``/``private_key_file``: the facility's secp256k1 key (hex), registered by
    the consortium admin; without one the backend can only read (a peer verifying).
    ``from_block``: the contract's deployment block, where event searches start.
    """

    name = "evm"

    def __init__(self, rpc_url: str, contract: str, *, private_key: str | bytes | None = None,
                 private_key_file: str | Path | None = None, confirmations: int = 1,
                 from_block: int = 0, request_timeout_s: float = 10.0,
                 poll_interval_s: float = 0.2, receipt_timeout_s: float = 120.0,
                 chain_id: int | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._chain = Chain(rpc_url, private_key=private_key, private_key_file=private_key_file,
                            confirmations=confirmations, request_timeout_s=request_timeout_s,
                            poll_interval_s=poll_interval_s, receipt_timeout_s=receipt_timeout_s,
                            expected_chain_id=chain_id, sleep=sleep)
        self._address = AsyncWeb3.to_checksum_address(contract)
        self._contract = self._chain.contract(self._address)
        self._from_block = from_block

    def __repr__(self) -> str:
        return f"EvmBackend(contract={self._address!r})"

    @property
    def account(self) -> str | None:
        acct = self._chain.account
        return None if acct is None else str(acct.address)

    async def _ref(self, fid: bytes, tree_size: int) -> AnchorRef:
        """Find the Anchored event of (facility, size) for its transaction and block."""
        topic = self._contract.events.Anchored().topic
        logs = await self._chain.w3.eth.get_logs({
            "address": self._address, "fromBlock": self._from_block, "toBlock": "latest",
            "topics": [topic, "0x" + fid.hex(), "0x" + tree_size.to_bytes(32, "big").hex()],
        })
        tx_hash = block = None
        if logs:
            tx_hash, block = logs[0]["transactionHash"].to_0x_hex(), int(logs[0]["blockNumber"])
        return AnchorRef(backend=self.name, tree_size=tree_size,
                         chain_id=await self._chain.chain_id(), contract=self._address,
                         tx_hash=tx_hash, block_number=block)

    async def publish(self, signed: SignedCheckpoint) -> AnchorRef:
        cp = signed.checkpoint
        fid = facility_key(cp.facility)
        async with self._chain.translated():
            anchored = bytes(await self._contract.functions.rootAt(fid, cp.tree_size).call())
            if anchored != bytes(32):  # already anchored: a retry after a crash or timeout
                if anchored != cp.root_hash:
                    raise AnchorConflict(cp.tree_size)
                return await self._ref(fid, cp.tree_size)
            result = await self._chain.transact(
                self._contract.functions.anchor(cp.tree_size, cp.root_hash))
            return AnchorRef(backend=self.name, tree_size=cp.tree_size,
                             chain_id=await self._chain.chain_id(), contract=self._address,
                             tx_hash=result.tx_hash, block_number=result.block_number)

    async def latest(self, facility: str) -> AnchoredCheckpoint | None:
        fid = facility_key(facility)
        async with self._chain.translated():
            size, root, at = await self._contract.functions.latest(fid).call()
            if size == 0:
                return None
            ref = await self._ref(fid, int(size))
        return AnchoredCheckpoint(facility, int(size), bytes(root), ref, int(at) * 1000)

    async def get(self, facility: str, tree_size: int) -> AnchoredCheckpoint | None:
        fid = facility_key(facility)
        async with self._chain.translated():
            root = bytes(await self._contract.functions.rootAt(fid, tree_size).call())
            if root == bytes(32):
                return None
            ref = await self._ref(fid, tree_size)
        return AnchoredCheckpoint(facility, tree_size, root, ref)

    async def is_member(self, facility: str) -> bool:
        """True when ``facility`` is registered to this backend's account."""
        async with self._chain.translated():
            account = await self._contract.functions.accountOf(facility_key(facility)).call()
        return self.account is not None and str(account) == self.account

    async def reachable(self) -> bool:
        try:
            async with self._chain.translated():
                await self._chain.w3.eth.block_number
        except LedgerError:
            return False
        return True

    async def check_chain(self) -> int:
        """The node's chain id. Raises ``AnchorRejected("wrong-chain")`` when it is not the
        configured one, ``BackendUnavailable`` when the node cannot be reached."""
        return await self._chain.chain_id()

    async def aclose(self) -> None:
        await self._chain.aclose()


# -- consortium admin operations -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deployment:
    contract: str
    tx_hash: str
    block_number: int
    chain_id: int
    admin: str


async def deploy(rpc_url: str, *, private_key: str | bytes | None = None,
                 private_key_file: str | Path | None = None, confirmations: int = 1,
                 **chain_options: Any) -> Deployment:
    """Deploy HieAnchor with the consortium admin key; the deployer becomes the admin."""
    chain = Chain(rpc_url, private_key=private_key, private_key_file=private_key_file,
                  confirmations=confirmations, **chain_options)
    try:
        async with chain.translated():
            factory = chain.w3.eth.contract(abi=chain.abi, bytecode=chain.bytecode)
            result = await chain.transact(factory.constructor())
            if result.contract_address is None:
                raise LedgerError("deployment receipt has no contract address")
            return Deployment(result.contract_address, result.tx_hash, result.block_number,
                              await chain.chain_id(), str(chain.account.address))
    finally:
        await chain.aclose()


async def add_facility(rpc_url: str, contract: str, facility: str, account: str, *,
                       private_key: str | bytes | None = None,
                       private_key_file: str | Path | None = None, confirmations: int = 1,
                       **chain_options: Any) -> str:
    """Register ``facility`` (id string) with the ``account`` allowed to anchor for it.
    Signed with the admin key. Returns the transaction hash."""
    chain = Chain(rpc_url, private_key=private_key, private_key_file=private_key_file,
                  confirmations=confirmations, **chain_options)
    try:
        async with chain.translated():
            fn = chain.contract(contract).functions.addFacility(
                facility_key(facility), AsyncWeb3.to_checksum_address(account), facility)
            return (await chain.transact(fn)).tx_hash
    finally:
        await chain.aclose()
