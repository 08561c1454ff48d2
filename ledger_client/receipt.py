"""Receipts: what travels with a record version served to a peer, so the peer can check it.

A receipt says: this record version is leaf ``leaf_index`` of ``facility``'s log; here is its
salt and its audit path to the tree of ``tree_size`` leaves; that tree's root was anchored
there (``anchor``). The peer recomputes the leaf from the record it received, walks the path
to a root, and compares that root with the root it reads itself from the ledger for
(facility, tree_size), never with the one in the receipt. The JSON form is in docs/ledger.md.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger_client.anchorer import LocalAnchor
from ledger_client.backends.base import AnchorRef, LedgerBackend
from ledger_client.errors import LedgerError, ProofError, ReceiptError
from ledger_client.leaf import SALT_SIZE, LeafError, record_leaf
from ledger_client.log import MerkleLog
from ledger_client.merkle import HASH_SIZE, root_from_inclusion_proof, verify_consistency

RECEIPT_VERSION = 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, what: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise ReceiptError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptError(f"{what} is not valid base64") from None
    if len(raw) != size:
        raise ReceiptError(f"{what} must be {size} bytes")
    return raw


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that one record version is in an anchored tree. ``checkpoint`` is the signed
    checkpoint note of ``tree_size`` (verifiable with the facility's published key)."""

    facility: str
    leaf_index: int
    tree_size: int
    audit_path: tuple[bytes, ...]
    salt: bytes
    root_hash: bytes
    anchor: AnchorRef
    checkpoint: str | None = None

    def __repr__(self) -> str:  # the salt is as secret as the record: never shown
        return (f"Receipt(facility={self.facility!r}, leaf_index={self.leaf_index}, "
                f"tree_size={self.tree_size}, anchor={self.anchor.backend!r})")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": RECEIPT_VERSION,
            "facility": self.facility,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [_b64(h) for h in self.audit_path],
            "salt": _b64(self.salt),
            "root_hash": _b64(self.root_hash),
            "anchor": self.anchor.to_json(),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        if not isinstance(data, Mapping):
            raise ReceiptError("receipt must be a JSON object")
        if data.get("version") != RECEIPT_VERSION:
            raise ReceiptError("unsupported receipt version")
        known = {"version", "facility", "leaf_index", "tree_size", "audit_path", "salt",
                 "root_hash", "anchor", "checkpoint"}
        if set(data) - known:
            raise ReceiptError(f"receipt has unknown fields: {sorted(set(data) - known)}")
        facility, index, size = data.get("facility"), data.get("leaf_index"), data.get("tree_size")
        if not isinstance(facility, str) or not facility:
            raise ReceiptError("receipt.facility must be a non-empty string")
        for name, value in (("leaf_index", index), ("tree_size", size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ReceiptError(f"receipt.{name} must be a non-negative integer")
        path = data.get("audit_path")
        if not isinstance(path, list):
            raise ReceiptError("receipt.audit_path must be a list")
        checkpoint = data.get("checkpoint")
        if checkpoint is not None and not isinstance(checkpoint, str):
            raise ReceiptError("receipt.checkpoint must be a string")
        assert isinstance(index, int) and isinstance(size, int)  # checked above
        return cls(
            facility=facility, leaf_index=index, tree_size=size,
            audit_path=tuple(_unb64(h, "receipt.audit_path[]", HASH_SIZE) for h in path),
            salt=_unb64(data.get("salt"), "receipt.salt", SALT_SIZE),
            root_hash=_unb64(data.get("root_hash"), "receipt.root_hash", HASH_SIZE),
            anchor=AnchorRef.from_json(data.get("anchor")),
            checkpoint=checkpoint,
        )


def make_receipt(merkle_log: MerkleLog, anchored: LocalAnchor, leaf_index: int,
                 salt: bytes) -> Receipt:
    """The receipt of leaf ``leaf_index`` against an anchored checkpoint (normally
    ``Anchorer.latest_anchored()``). Raises LogError when the leaf is not in that tree yet."""
    cp = anchored.checkpoint
    return Receipt(
        facility=cp.facility, leaf_index=leaf_index, tree_size=cp.tree_size,
        audit_path=tuple(merkle_log.inclusion_proof(leaf_index, cp.tree_size)),
        salt=bytes(salt), root_hash=cp.root_hash, anchor=anchored.anchor,
        checkpoint=anchored.note)


def make_receipts(merkle_log: MerkleLog, anchored: LocalAnchor,
                  leaves: Sequence[tuple[int, bytes]]) -> list[Receipt]:
    """``make_receipt`` for each ``(leaf_index, salt)`` in ``leaves``, in order, against one
    anchored checkpoint: the audit paths come from one read of the log
    (:meth:`MerkleLog.inclusion_proofs`), so a page of records costs one query, not one per
    record. Raises LogError when any leaf is not in that tree (then no receipt is made)."""
    cp = anchored.checkpoint
    paths = merkle_log.inclusion_proofs([index for index, _ in leaves], cp.tree_size)
    return [Receipt(facility=cp.facility, leaf_index=index, tree_size=cp.tree_size,
                    audit_path=tuple(path), salt=bytes(salt), root_hash=cp.root_hash,
                    anchor=anchored.anchor, checkpoint=anchored.note)
            for (index, salt), path in zip(leaves, paths, strict=True)]


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    """The outcome of checking a record against its receipt. ``problems`` names each
    failure (``leaf``: the record has no canonical form; ``proof``: the path does not fit
    the index and size; ``receipt-root``: the path does not lead to the receipt's root;
    ``anchored-root``: it does not lead to the anchored root; ``not-anchored``: the ledger
    has no root for that size)."""

    ok: bool
    leaf_hash: bytes | None
    problems: tuple[str, ...]


def verify_receipt(resource_json: Mapping[str, Any] | str | bytes, receipt: Receipt,
                   anchored_root: bytes | None) -> ReceiptCheck:
    """Recompute the leaf from the record and check it is in the anchored tree.

    ``anchored_root`` is the root the verifier obtained itself from the ledger for
    (receipt.facility, receipt.tree_size); None when the ledger has none.
    """
    problems: list[str] = []
    try:
        leaf = record_leaf(resource_json, receipt.salt)
    except LeafError:
        return ReceiptCheck(False, None, ("leaf",))
    try:
        root = root_from_inclusion_proof(leaf, receipt.leaf_index, receipt.tree_size,
                                         receipt.audit_path)
    except ProofError:
        return ReceiptCheck(False, leaf, ("proof",))
    if root != receipt.root_hash:
        problems.append("receipt-root")
    if anchored_root is None:
        problems.append("not-anchored")
    elif root != anchored_root:
        problems.append("anchored-root")
    return ReceiptCheck(not problems, leaf, tuple(problems))


async def check_receipt(resource_json: Mapping[str, Any] | str | bytes, receipt: Receipt,
                        backend: LedgerBackend) -> ReceiptCheck:
    """``verify_receipt`` with the anchored root read from ``backend``. Raises
    BackendUnavailable when the ledger cannot be asked."""
    anchored = await backend.get(receipt.facility, receipt.tree_size)
    return verify_receipt(resource_json, receipt, anchored.root_hash if anchored else None)


def verify_anchor_chain(anchors: Sequence[tuple[int, bytes]],
                        merkle_log: MerkleLog) -> list[tuple[int, str]]:
    """Check a facility's own log against its anchored (tree_size, root) pairs, oldest
    first: each anchored root must equal the log's root at that size, and each anchor must
    be consistent with the next (RFC 9162 2.1.4). Returns (tree_size, problem) for each
    mismatch: ``root`` (the log no longer has that root: rewritten or truncated) or
    ``consistency``."""
    problems: list[tuple[int, str]] = []
    size_now = merkle_log.size
    previous: tuple[int, bytes] | None = None
    for size, root in sorted(anchors):
        try:
            ok = size <= size_now and merkle_log.root(size) == root
        except LedgerError:
            ok = False
        if not ok:
            problems.append((size, "root"))
        if previous is not None and size <= size_now:
            old_size, old_root = previous
            try:
                proof = merkle_log.consistency_proof(old_size, size)
            except LedgerError:
                proof = []
            if not verify_consistency(old_size, size, old_root, root, proof):
                problems.append((size, "consistency"))
        previous = (size, root)
    return problems
