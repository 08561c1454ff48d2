"""RFC 9162 hashing and proofs, checked against the Certificate Transparency test vectors.

Vectors: the 8-leaf reference tree of RFC 6962 / RFC 9162 as published with the
Certificate Transparency reference code, taken from transparency-dev/merkle
(``proof/verify_test.go``: ``leaves``, ``roots``, ``inclusionProofs``, ``consistencyProofs``;
``rfc6962/rfc6962_test.go``: the hasher vectors). Indexes there are 1-based for
inclusion proofs (``leaf`` = index + 1); here they are converted to 0-based.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger_client import merkle
from ledger_client.errors import ProofError


def h(s: str) -> bytes:
    return bytes.fromhex(s)


# The entries d0..d7 of the reference tree.
LEAVES = [h(""), h("00"), h("10"), h("2021"), h("3031"), h("40414243"),
          h("5051525354555657"), h("606162636465666768696a6b6c6d6e6f")]
# ROOTS[i] = MTH of the first i + 1 entries.
ROOTS = [h(x) for x in (
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
# (0-based leaf index, tree size, audit path)
INCLUSION = [
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
# (old size, new size, consistency proof)
CONSISTENCY = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
LEAF_HASHES = [merkle.leaf_hash(d) for d in LEAVES]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def test_hasher_vectors() -> None:
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert merkle.leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert merkle.leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
    assert merkle.node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb")


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_reference_tree(size: int) -> None:
    assert merkle.mth(LEAF_HASHES[:size]) == ROOTS[size - 1]
    assert merkle.hash_range(0, size, lambda n: merkle.mth(
        LEAF_HASHES[n[1] << n[0]:(n[1] + 1) << n[0]])) == ROOTS[size - 1]


def test_empty_tree_root() -> None:
    assert merkle.mth([]) == merkle.EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, path: list[bytes]) -> None:
    assert merkle.inclusion_proof(index, LEAF_HASHES[:size]) == path
    root = ROOTS[size - 1]
    leaf = LEAF_HASHES[index]
    assert merkle.verify_inclusion(leaf, index, size, path, root)
    # The corruptions the reference verifier must refuse.
    bad: list[tuple[int, int, bytes, list[bytes], bytes]] = [
        (index - 1, size, leaf, path, root), (index + 1, size, leaf, path, root),
        (index ^ 2, size, leaf, path, root), (index, size * 2, leaf, path, root),
        (index, size // 2, leaf, path, root), (index, size, merkle.leaf_hash(b"x"), path, root),
        (index, size, leaf, path, merkle.EMPTY_ROOT), (index, size, leaf, path, SOME_HASH),
        (index, size, leaf, [*path, b""], root), (index, size, leaf, [*path, root], root),
        (index, size, leaf, [b"", *path], root), (index, size, leaf, [root, *path], root),
    ]
    for i in range(len(path)):
        flipped = [*path]
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        bad.append((index, size, leaf, flipped, root))
    if path:
        bad.append((index, size, leaf, path[:-1], root))
    if len(path) > 1:
        bad.append((index, size, leaf, [path[0], SOME_HASH, *path[1:]], root))
    for i, n, lf, p, r in bad:
        assert not merkle.verify_inclusion(lf, i, n, p, r), (i, n)


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, proof: list[bytes]) -> None:
    assert merkle.consistency_proof(old, LEAF_HASHES[:new]) == proof
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert merkle.verify_consistency(old, new, r1, r2, proof)
    if not proof:
        return
    bad: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (old - 1, new, r1, r2, proof), (old + 1, new, r1, r2, proof),
        (old ^ 2, new, r1, r2, proof), (old, new * 2, r1, r2, proof),
        (old, new // 2, r1, r2, proof), (old, new, SOME_HASH, r2, proof),
        (old, new, r1, SOME_HASH, proof), (old, new, r2, r1, proof), (old, new, r1, r2, []),
        (old, new, r1, r2, [*proof, b""]), (old, new, r1, r2, [*proof, r1]),
        (old, new, r1, r2, [*proof, r2]), (old, new, r1, r2, [b"", *proof]),
        (old, new, r1, r2, [r1, *proof]), (old, new, r1, r2, [r2, *proof]),
        (old, new, r1, r2, [proof[0], *proof]), (old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = [*proof]
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((old, new, r1, r2, flipped))
    for args in bad:
        assert not merkle.verify_consistency(*args), args[:2]


def test_consistency_edge_cases() -> None:
    r = ROOTS[0]
    assert merkle.verify_consistency(0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])
    assert merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, ROOTS[4], [])
    assert not merkle.verify_consistency(0, 5, merkle.EMPTY_ROOT, ROOTS[4], [r])
    assert not merkle.verify_consistency(1, 1, r, ROOTS[1], [])  # same size, other root
    assert not merkle.verify_consistency(2, 1, ROOTS[1], r, [])  # time travel
    assert not merkle.verify_consistency(1, 2, r, ROOTS[1], [])  # empty proof


def test_single_entry_and_bad_hash_sizes() -> None:
    leaf = merkle.leaf_hash(b"data")
    assert merkle.verify_inclusion(leaf, 0, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 1, [], b"")
    assert not merkle.verify_inclusion(b"", 0, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, 0, 0, [], leaf)
    assert not merkle.verify_inclusion(leaf, 1, 1, [], leaf)
    with pytest.raises(ProofError):
        merkle.root_from_inclusion_proof(leaf, 0, 2, [b"short"])


def test_second_preimage_resistance() -> None:
    a, b = merkle.leaf_hash(b"Hello"), merkle.leaf_hash(b"World")
    assert merkle.node_hash(a, b) != merkle.leaf_hash(a + b)
    assert merkle.node_hash(a, b) != merkle.node_hash(b, a)
    assert merkle.node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()


def _tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    n, i = case
    leaves = _tree(n)
    proof = merkle.inclusion_proof(i, leaves)
    assert len(proof) <= n.bit_length()
    assert merkle.verify_inclusion(leaves[i], i, n, proof, merkle.mth(leaves))


@given(st.integers(2, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n - 1))),
       st.data())
def test_every_consistency_proof_verifies_and_any_flip_fails(
    case: tuple[int, int], data: st.DataObject
) -> None:
    n, m = case
    leaves = _tree(n)
    proof = merkle.consistency_proof(m, leaves)
    r1, r2 = merkle.mth(leaves[:m]), merkle.mth(leaves)
    assert merkle.verify_consistency(m, n, r1, r2, proof)
    # Any altered byte of the proof or of either root fails.
    target = data.draw(st.integers(0, len(proof) + 1))
    pos = data.draw(st.integers(0, 31))
    bit = 1 << data.draw(st.integers(0, 7))
    items = [*proof, r1, r2]
    t = items[target]
    items[target] = t[:pos] + bytes([t[pos] ^ bit]) + t[pos + 1:]
    *bad_proof, b1, b2 = items
    assert not merkle.verify_consistency(m, n, b1, b2, bad_proof)


@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.integers(0, 31), st.integers(0, 7), st.data())
def test_any_altered_byte_fails_inclusion(
    case: tuple[int, int], pos: int, bit: int, data: st.DataObject
) -> None:
    n, i = case
    leaves = _tree(n)
    proof = merkle.inclusion_proof(i, leaves)
    items = [leaves[i], merkle.mth(leaves), *proof]
    target = data.draw(st.integers(0, len(items) - 1))
    items[target] = items[target][:pos] + bytes([items[target][pos] ^ (1 << bit)]) \
        + items[target][pos + 1:]
    leaf, root, *bad = items
    assert not merkle.verify_inclusion(leaf, i, n, bad, root)


def test_ranges_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_ranges(3, 3)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(0, 3)
    with pytest.raises(ValueError):
        merkle.consistency_ranges(4, 3)
    with pytest.raises(ValueError):
        merkle.perfect_nodes(1, 3)  # [1, 3) is not a subtree RFC 9162 ever splits off
