from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.crypto.envelope import (
    AAD,
    HEADER_LEN,
    OVERHEAD,
    binds,
    open_,
    peek_key_id,
    reseal,
    seal,
)
from edge.crypto.errors import CryptoError, IntegrityError
from edge.crypto.keys import DataKey, KeyPurpose
from edge.errors import EdgeError

PAYLOAD = b'{"resourceType":"Patient","name":[{"family":"Zzyzx"}]}'
CTX = AAD("resources", "Patient/abc", 3)


@pytest.fixture
def key() -> DataKey:
    return DataKey.generate(KeyPurpose.PATIENT, "owner-1")


@pytest.mark.parametrize("size", [0, 1, 15, 16, 17, 1000, 70_000])
def test_round_trip(key: DataKey, size: int) -> None:
    plaintext = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = seal(key, plaintext, CTX)
    assert open_(key, blob, CTX) == plaintext


def test_layout_is_versioned_and_names_the_key(key: DataKey) -> None:
    blob = seal(key, PAYLOAD, CTX)
    assert len(blob) == len(PAYLOAD) + OVERHEAD
    assert blob[0] == 1
    assert blob[1:HEADER_LEN] == bytes.fromhex(key.key_id)
    assert peek_key_id(blob) == key.key_id
    assert PAYLOAD not in blob


@pytest.mark.parametrize(
    "other",
    [
        AAD("inbox", "Patient/abc", 3),  # another table
        AAD("resources", "Patient/abd", 3),  # another row (swap)
        AAD("resources", "Patient/abc", 2),  # another version (replay)
        AAD("resources", "Patient/abc", 4),
        AAD("resourcesPatient/abc", "", 3),  # same characters, other field split
    ],
)
def test_open_with_other_context_fails_and_names_the_row(key: DataKey, other: AAD) -> None:
    blob = seal(key, PAYLOAD, CTX)
    with pytest.raises(IntegrityError) as info:
        open_(key, blob, other)
    err = info.value
    assert (err.table, err.row_id, err.version) == (other.table, other.row_id, other.version)
    assert other.describe() in str(err)
    assert b"Zzyzx" not in str(err).encode() and "Zzyzx" not in repr(err)


def test_open_with_another_key_fails(key: DataKey) -> None:
    other = DataKey.generate(KeyPurpose.PATIENT, "owner-1")
    blob = seal(key, PAYLOAD, CTX)
    with pytest.raises(IntegrityError, match="sealed under key"):
        open_(other, blob, CTX)


def test_header_rewritten_to_another_key_id_fails(key: DataKey) -> None:
    # Same material under another id: only the AAD binding of the header can catch this.
    material = key._material
    twin = DataKey(bytes(16).hex(), KeyPurpose.PATIENT, "owner-1", material)
    blob = seal(key, PAYLOAD, CTX)
    forged = blob[:1] + twin.key_id_bytes + blob[HEADER_LEN:]
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(twin, forged, CTX)


def test_every_flipped_byte_is_detected(key: DataKey) -> None:
    blob = seal(key, b"short payload", CTX)
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            tampered = bytearray(blob)
            tampered[i] ^= bit
            with pytest.raises(IntegrityError):
                open_(key, bytes(tampered), CTX)


@pytest.mark.parametrize("cut", [0, 1, HEADER_LEN, OVERHEAD - 1])
def test_truncated_blob_is_refused(key: DataKey, cut: int) -> None:
    blob = seal(key, b"", CTX)[:cut]
    with pytest.raises(IntegrityError, match="shorter"):
        open_(key, blob, CTX)
    with pytest.raises(IntegrityError):
        peek_key_id(blob)


def test_truncated_tail_of_a_longer_blob_is_refused(key: DataKey) -> None:
    blob = seal(key, PAYLOAD, CTX)
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(key, blob[:-1], CTX)
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(key, blob + b"\x00", CTX)


def test_unknown_format_is_refused(key: DataKey) -> None:
    blob = bytes([3]) + seal(key, PAYLOAD, CTX)[1:]
    with pytest.raises(IntegrityError, match="unknown ciphertext format 3"):
        open_(key, blob, CTX)


LEAF = bytes(range(32))


def test_format_2_binds_the_bound_value(key: DataKey) -> None:
    blob = seal(key, PAYLOAD, CTX, bound=LEAF)
    assert blob[0] == 2 and binds(blob) and len(blob) == len(PAYLOAD) + OVERHEAD
    assert open_(key, blob, CTX, bound=LEAF) == PAYLOAD
    for other in (LEAF[:-1] + b"\xff", LEAF[:31], LEAF + b"\x00", b""):
        with pytest.raises(IntegrityError, match="failed authentication"):
            open_(key, blob, CTX, bound=other)
    with pytest.raises(IntegrityError, match="without its bound value"):
        open_(key, blob, CTX)
    # The context still counts, and the bound value cannot stand in for part of it.
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(key, blob, AAD("resources", "Patient/abc", 4), bound=LEAF)


def test_formats_cannot_be_swapped(key: DataKey) -> None:
    one, two = seal(key, PAYLOAD, CTX), seal(key, PAYLOAD, CTX, bound=LEAF)
    assert not binds(one)
    # Format 1 ignores a bound value (binds() says so); relabelled blobs open as neither.
    assert open_(key, one, CTX, bound=LEAF) == PAYLOAD
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(key, bytes([2]) + one[1:], CTX, bound=b"")
    with pytest.raises(IntegrityError, match="failed authentication"):
        open_(key, bytes([1]) + two[1:], CTX)


def test_nonces_are_unique(key: DataKey) -> None:
    blobs = [seal(key, PAYLOAD, CTX) for _ in range(2000)]
    nonces = {b[HEADER_LEN : HEADER_LEN + 12] for b in blobs}
    assert len(nonces) == len(blobs)
    assert len(set(blobs)) == len(blobs)


def test_index_key_does_not_encrypt() -> None:
    index_key = DataKey.generate(KeyPurpose.INDEX, "index")
    with pytest.raises(CryptoError, match="not for encryption"):
        seal(index_key, PAYLOAD, CTX)
    with pytest.raises(CryptoError, match="not for encryption"):
        open_(index_key, b"\x01" + bytes(60), CTX)


def test_reseal_moves_a_message_from_inbox_key_to_patient_key(key: DataKey) -> None:
    inbox = DataKey.generate(KeyPurpose.INBOX, "inbox")
    raw_ctx = AAD("inbox", "42", 0)
    new_ctx = AAD("raw_messages", "42", 0)
    blob = seal(inbox, b"MSH|^~\\&|...", raw_ctx)
    moved = reseal(inbox, key, blob, raw_ctx, new_ctx)
    assert peek_key_id(moved) == key.key_id
    assert open_(key, moved, new_ctx) == b"MSH|^~\\&|..."
    with pytest.raises(IntegrityError):
        open_(key, moved, raw_ctx)


@pytest.mark.parametrize("aad", [AAD("t", "r", -1), AAD("t", "r", 2**64), AAD("t" * 65536, "r", 0)])
def test_aad_out_of_range(aad: AAD) -> None:
    with pytest.raises(CryptoError, match="AAD out of range"):
        aad.encode()


def test_error_hierarchy_and_fault() -> None:
    assert issubclass(IntegrityError, CryptoError)
    assert issubclass(CryptoError, EdgeError)
    assert IntegrityError("x").fault == "environment"
    assert IntegrityError("x").retriable is False


def test_key_repr_shows_only_id(key: DataKey) -> None:
    text = repr(key) + str(key)
    assert key.key_id in text
    assert key._material.hex() not in text
    assert "owner-1" not in text


texts = st.text(max_size=40)
aads = st.builds(AAD, texts, texts, st.integers(0, 2**64 - 1))


@given(aads, aads)
def test_aad_encoding_is_injective(a: AAD, b: AAD) -> None:
    assert (a.encode() == b.encode()) == (a == b)


@given(plaintext=st.binary(max_size=2000), aad=aads, other=aads)
def test_seal_open_property(plaintext: bytes, aad: AAD, other: AAD) -> None:
    key = DataKey.generate(KeyPurpose.PATIENT, "p")
    blob = seal(key, plaintext, aad)
    assert open_(key, blob, aad) == plaintext
    if other != aad:
        with pytest.raises(IntegrityError):
            open_(key, blob, other)
