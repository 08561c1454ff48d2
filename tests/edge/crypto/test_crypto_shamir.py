from __future__ import annotations

import base64
import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyshamir import _utils  # type: ignore[import-untyped]

from edge.crypto.errors import ShareError
from edge.crypto.keys import DataKey, Kek, KeyPurpose, Keyring
from edge.crypto.shamir import (
    SHARE_PREFIX,
    Share,
    combine_parts,
    parse_share,
    recover_kek,
    split_kek,
)

# --- an independent GF(2^8) reference (AES polynomial), to check the dependency -----------


def gf_mul(a: int, b: int) -> int:
    result = 0
    while b:
        if b & 1:
            result ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11B
        b >>= 1
    return result


def gf_inv(a: int) -> int:
    return next(b for b in range(1, 256) if gf_mul(a, b) == 1)


def lagrange_at(points: list[tuple[int, int]], x: int) -> int:
    total = 0
    for i, (xi, yi) in enumerate(points):
        term = yi
        for j, (xj, _) in enumerate(points):
            if i != j:
                term = gf_mul(term, gf_mul(x ^ xj, gf_inv(xi ^ xj)))
        total ^= term
    return total


def test_pyshamir_field_arithmetic_matches_reference() -> None:
    for a in range(256):
        for b in range(256):
            assert _utils.mul(a, b) == gf_mul(a, b)
    for a in range(1, 256):
        assert _utils.mul(a, _utils.inverse(a)) == 1


def test_shares_lie_on_a_polynomial_of_degree_threshold_minus_one() -> None:
    kek = Kek.generate()
    shares = [parse_share(s) for s in split_kek(kek, shares=6, threshold=3)]
    for byte in (0, 17, 31):
        points = [(s.x, s.part[byte]) for s in shares]
        base = points[:3]
        assert lagrange_at(base, 0) == kek._material[byte]
        for x, y in points[3:]:
            assert lagrange_at(base, x) == y


# --- split / recover -------------------------------------------------------------------


@pytest.mark.parametrize(("m", "n"), [(2, 2), (2, 3), (3, 5), (5, 5), (4, 7)])
def test_any_m_of_n_recover(m: int, n: int) -> None:
    kek = Kek.generate()
    shares = split_kek(kek, shares=n, threshold=m)
    assert len(shares) == n and len(set(shares)) == n
    for subset in itertools.combinations(shares, m):
        for ordering in (subset, subset[::-1]):
            recovered = recover_kek(ordering)
            assert recovered._material == kek._material
    # more than M also works
    assert recover_kek(shares).kek_id == kek.kek_id


def test_recovered_kek_unwraps_what_the_original_wrapped() -> None:
    kek = Kek.generate()
    wrapped = Keyring(kek).wrap(DataKey.generate(KeyPurpose.PATIENT, "pk"))
    recovered = recover_kek(split_kek(kek, shares=3, threshold=2)[1:])
    assert Keyring(recovered).unwrap(wrapped).key_id == wrapped.key_id


@pytest.mark.parametrize(("m", "n"), [(2, 3), (3, 5), (5, 5)])
def test_m_minus_one_shares_are_refused(m: int, n: int) -> None:
    kek = Kek.generate()
    shares = split_kek(kek, shares=n, threshold=m)
    with pytest.raises(ShareError, match=f"needs {m} shares, got {m - 1}"):
        recover_kek(shares[: m - 1])


@pytest.mark.parametrize(("m", "n"), [(3, 5), (4, 4)])
def test_m_minus_one_parts_interpolate_to_a_wrong_kek_that_the_id_exposes(m: int, n: int) -> None:
    kek = Kek.generate()
    parts = [parse_share(s).part for s in split_kek(kek, shares=n, threshold=m)]
    for subset in itertools.combinations(parts, m - 1):
        assert Kek(combine_parts(subset)).kek_id != kek.kek_id


def test_no_shares() -> None:
    with pytest.raises(ShareError, match="no shares"):
        recover_kek([])


@pytest.mark.parametrize(("m", "n"), [(1, 3), (0, 3), (4, 3), (2, 256), (2, 1)])
def test_bad_parameters(m: int, n: int) -> None:
    with pytest.raises(ShareError, match="threshold"):
        split_kek(Kek.generate(), shares=n, threshold=m)


# --- the text form ---------------------------------------------------------------------


def test_share_text_form() -> None:
    kek = Kek.generate()
    text = split_kek(kek, shares=5, threshold=3)[0]
    prefix, kek_id, mn, part, check = text.split(":")
    assert (prefix, kek_id, mn) == (SHARE_PREFIX, kek.kek_id, "3of5")
    assert len(base64.b32decode(part + "===")) == 33
    assert check == hashlib.sha256(text.rpartition(":")[0].encode()).digest()[:4].hex()
    assert text.isascii() and text.isprintable()
    share = parse_share(text)
    assert share.to_text() == text
    assert (share.kek_id, share.threshold, share.count) == (kek.kek_id, 3, 5)
    assert part not in repr(share) and share.part.hex() not in repr(share)


def test_typed_back_with_spaces_and_other_case() -> None:
    kek = Kek.generate()
    shares = split_kek(kek, shares=3, threshold=2)
    retyped = []
    for text in shares[:2]:
        lowered = text.lower() if text is shares[0] else text.upper()
        retyped.append(" ".join(lowered[i : i + 5] for i in range(0, len(lowered), 5)) + "\n")
    assert recover_kek(retyped).kek_id == kek.kek_id


def test_every_single_character_typo_is_detected() -> None:
    text = split_kek(Kek.generate(), shares=2, threshold=2)[0]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdef0123456789:"
    rng = random.Random(1234)
    for i, ch in enumerate(text):
        replacement = rng.choice([c for c in alphabet if c.lower() != ch.lower()])
        typo = text[:i] + replacement + text[i + 1 :]
        with pytest.raises(ShareError):
            parse_share(typo)


def test_corrupted_share_is_reported_by_position() -> None:
    shares = split_kek(Kek.generate(), shares=3, threshold=2)
    bad = shares[1][:30] + ("A" if shares[1][30] != "A" else "B") + shares[1][31:]
    with pytest.raises(ShareError, match=r"share #2: checksum mismatch"):
        recover_kek([shares[0], bad])


def test_altered_share_with_valid_checksum_is_caught_by_the_kek_id() -> None:
    kek = Kek.generate()
    shares = split_kek(kek, shares=3, threshold=2)
    share = parse_share(shares[1])
    part = bytearray(share.part)
    part[0] ^= 0x55
    forged = Share(share.kek_id, share.threshold, share.count, bytes(part)).to_text()
    with pytest.raises(ShareError, match="do not rebuild"):
        recover_kek([shares[0], forged])


def test_shares_of_two_splits_of_the_same_kek_do_not_mix() -> None:
    kek = Kek.generate()
    a = split_kek(kek, shares=3, threshold=2)
    b = split_kek(kek, shares=3, threshold=2)
    mixed = [a[0], next(s for s in b if parse_share(s).x != parse_share(a[0]).x)]
    with pytest.raises(ShareError, match="do not rebuild"):
        recover_kek(mixed)


def test_shares_of_other_keks_or_splits_are_refused() -> None:
    a = split_kek(Kek.generate(), shares=3, threshold=2)
    b = split_kek(Kek.generate(), shares=3, threshold=2)
    with pytest.raises(ShareError, match="share #2 belongs to KEK"):
        recover_kek([a[0], b[1]])
    kek = Kek.generate()
    c = split_kek(kek, shares=3, threshold=2)
    d = split_kek(kek, shares=4, threshold=2)
    with pytest.raises(ShareError, match=r"\(2 of 4\)"):
        recover_kek([c[0], d[1]])


def test_duplicate_share_is_refused() -> None:
    shares = split_kek(Kek.generate(), shares=3, threshold=2)
    with pytest.raises(ShareError, match="share #2 is the same share as #1"):
        recover_kek([shares[0], " " + shares[0]])


@pytest.mark.parametrize(
    "text",
    ["", "hello", "hiekek1:zz:2of3:AAAA:00000000", "hiekek2:" + "0" * 16 + ":2of3:AAAA:00000000"],
)
def test_malformed_shares(text: str) -> None:
    with pytest.raises(ShareError):
        parse_share(text)


@settings(max_examples=25, deadline=None)
@given(
    material=st.binary(min_size=32, max_size=32),
    mn=st.tuples(st.integers(2, 6), st.integers(0, 3)).map(lambda t: (t[0], t[0] + t[1])),
    data=st.data(),
)
def test_split_recover_property(material: bytes, mn: tuple[int, int], data: st.DataObject) -> None:
    m, n = mn
    kek = Kek(material)
    shares = split_kek(kek, shares=n, threshold=m)
    chosen = data.draw(st.permutations(shares)).__getitem__(slice(0, data.draw(st.integers(m, n))))
    assert recover_kek(chosen)._material == material
    with pytest.raises(ShareError):
        recover_kek(chosen[: m - 1])
