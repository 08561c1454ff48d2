"""RFC 9162 (Certificate Transparency v2) Merkle tree hashing, proofs and their verification.

Everything here is pure: hashes in, hashes out. Trees are given as their leaf hashes
(``leaf_hash(entry)``), because the log stores leaf hashes, never entries.

Proof *generation* is split in two so the SQLite log can reuse it: ``inclusion_ranges`` and
``consistency_ranges`` say which subtrees (leaf ranges ``[start, end)``) a proof is made of,
following the recursive definitions of RFC 9162 2.1.3.1 and 2.1.4.1; a caller then hashes
those ranges from whatever it has (a list in memory, perfect-subtree hashes in a table).
Every range produced this way starts at a multiple of the largest power of two not above its
length, so ``perfect_nodes`` can cover it with O(log n) stored perfect subtrees.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from ledger_client.errors import ProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
#: MTH({}) = SHA-256() (RFC 9162 2.1.1): the root of the empty tree.
EMPTY_ROOT = hashlib.sha256(b"").digest()

Range = tuple[int, int]
#: A perfect subtree: (level, index) covers leaves [index << level, (index + 1) << level).
Node = tuple[int, int]

_sha256 = hashlib.sha256


def leaf_hash(entry: bytes) -> bytes:
    """MTH({d0}) = SHA-256(0x00 || d0) (RFC 9162 2.1.1)."""
    return _sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right) (RFC 9162 2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1) (RFC 9162 2.1.1)."""
    if n < 2:
        raise ValueError("split_point needs n > 1")
    return 1 << ((n - 1).bit_length() - 1)


# --- which subtrees make up a proof (RFC 9162 2.1.3.1, 2.1.4.1) --------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges whose subtree hashes form PATH(index, D[size]), leaf side first."""
    if not 0 <= index < size:
        raise ValueError("index outside the tree")
    out: list[Range] = []
    start, n, m = 0, size, index
    # PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) when m < k, else
    # PATH(m - k, D[k:n]) : MTH(D[0:k]). The recursion is walked top-down, so the
    # siblings come out root side first and are reversed at the end.
    while n > 1:
        k = split_point(n)
        if m < k:
            out.append((start + k, start + n))
            n = k
        else:
            out.append((start, start + k))
            start, n, m = start + k, n - k, m - k
    out.reverse()
    return out


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose subtree hashes form PROOF(old_size, D[new_size]).

    Defined for 0 < old_size <= new_size; equal sizes give the empty proof.
    """
    if not 0 < old_size <= new_size:
        raise ValueError("consistency needs 0 < old_size <= new_size")
    out: list[Range] = []
    start, n, m, complete = 0, new_size, old_size, True
    # SUBPROOF(m, D[n], b) (RFC 9162 2.1.4.1), walked top-down like inclusion_ranges.
    while m != n:
        k = split_point(n)
        if m <= k:
            out.append((start + k, start + n))
            n = k
        else:
            out.append((start, start + k))
            start, n, m, complete = start + k, n - k, m - k, False
    if not complete:
        # m == n with b false: the old tree's subtree hash itself is part of the proof.
        out.append((start, start + n))
    out.reverse()
    return out


def perfect_nodes(start: int, end: int) -> list[Node]:
    """The perfect subtrees that MTH(D[start:end]) is built from, left to right."""
    nodes: list[Node] = []
    while start < end:
        n = end - start
        level = n.bit_length() - 1  # the largest power of two not above n
        if start & ((1 << level) - 1):
            raise ValueError("range is not aligned the way RFC 9162 splits a tree")
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def hash_range(start: int, end: int, node: Callable[[Node], bytes]) -> bytes:
    """MTH(D[start:end]) from the hashes of its perfect subtrees (``node`` looks one up).

    The perfect subtrees of a range decrease in size left to right, so the root is the
    right fold: h0 . (h1 . (h2 ...)).
    """
    if start == end:
        return EMPTY_ROOT
    nodes = perfect_nodes(start, end)
    acc = node(nodes[-1])
    for n in reversed(nodes[:-1]):
        acc = node_hash(node(n), acc)
    return acc


# --- in-memory trees ---------------------------------------------------------------------


def mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """The Merkle Tree Hash of a list of leaf hashes, straight from RFC 9162 2.1.1."""
    n = len(leaf_hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaf_hashes[0]
    k = split_point(n)
    return node_hash(mth(leaf_hashes[:k]), mth(leaf_hashes[k:]))


def _range_hash_in_memory(leaf_hashes: Sequence[bytes]) -> Callable[[Range], bytes]:
    return lambda r: mth(leaf_hashes[r[0]:r[1]])


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) for the tree of ``leaf_hashes`` (RFC 9162 2.1.3.1)."""
    return [*map(_range_hash_in_memory(leaf_hashes), inclusion_ranges(index, len(leaf_hashes)))]


def consistency_proof(old_size: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(old_size, D[n]) for the tree of ``leaf_hashes`` (RFC 9162 2.1.4.1)."""
    rh = _range_hash_in_memory(leaf_hashes)
    return [rh(r) for r in consistency_ranges(old_size, len(leaf_hashes))]


# --- verification (RFC 9162 2.1.3.2, 2.1.4.2) -------------------------------------------


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise ProofError(f"hash of {len(h)} bytes, expected {HASH_SIZE}")


def root_from_inclusion_proof(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index`` in a tree of ``size``
    (RFC 9162 2.1.3.2, steps 1-4). Raises ProofError when the proof cannot be valid for
    this index and size (wrong length, malformed hash)."""
    _check_hashes(leaf, *proof)
    if not 0 <= index < size:
        raise ProofError("leaf index outside the tree")
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                # The path goes up a right edge where no sibling exists: skip levels.
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof too short")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """True when ``proof`` shows ``leaf`` at ``index`` in the tree of ``size`` with ``root``."""
    try:
        return root_from_inclusion_proof(leaf, index, size, proof) == root
    except ProofError:
        return False


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """True when ``proof`` shows the tree (old_size, old_root) is a prefix of the tree
    (new_size, new_root) (RFC 9162 2.1.4.2). Any tree is consistent with the empty one."""
    if old_size < 0 or new_size < old_size:
        return False
    if any(len(h) != HASH_SIZE for h in (old_root, new_root, *proof)):
        return False
    if old_size == 0:
        return not proof
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    path = list(proof)
    # Step 2: when old_size is a power of two the old root is itself a node of the proof.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    # Step 4: skip the levels where the old tree's right edge is a complete left child.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
