from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from edge.crypto.envelope import AAD, open_, seal
from edge.crypto.errors import CryptoError, IntegrityError, KeyFileError, UnknownKeyError
from edge.crypto.keys import (
    WRAPPED_LEN,
    DataKey,
    Kek,
    KeyPurpose,
    Keyring,
    WrappedKey,
    archive_kek,
    archive_path,
    generate_kek_file,
    load_current_kek,
    load_keyring,
    parse_kek,
    read_kek_file,
    retire_kek,
    rotate_kek_file,
    write_kek_file,
)

MATERIAL = bytes(range(32))


def write(path: Path, data: bytes, mode: int) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def make_key(purpose: KeyPurpose = KeyPurpose.PATIENT, owner: str = "pk-1") -> DataKey:
    return DataKey.generate(purpose, owner)


# --- KEK -------------------------------------------------------------------------------


def test_kek_id_is_derived_from_the_key() -> None:
    a, b = Kek(MATERIAL), Kek(MATERIAL)
    assert a.kek_id == b.kek_id
    assert len(a.kek_id) == 16 and int(a.kek_id, 16) >= 0
    assert Kek(bytes(32)).kek_id != a.kek_id
    assert Kek.generate().kek_id != Kek.generate().kek_id


def test_kek_repr_hides_material() -> None:
    kek = Kek(MATERIAL)
    text = repr(kek) + str(kek) + repr(Keyring(kek))
    assert kek.kek_id in text
    assert MATERIAL.hex() not in text
    assert base64.b64encode(MATERIAL).decode() not in text


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_kek_length(size: int) -> None:
    with pytest.raises(CryptoError, match="32 bytes"):
        Kek(bytes(size))


@pytest.mark.parametrize(
    "content",
    [
        MATERIAL,
        base64.b64encode(MATERIAL),
        base64.b64encode(MATERIAL) + b"\n",
        b"  " + base64.b64encode(MATERIAL) + b"\r\n\n",
    ],
)
def test_parse_kek_accepts_raw_and_base64(content: bytes) -> None:
    assert parse_kek(content, "p").kek_id == Kek(MATERIAL).kek_id


@pytest.mark.parametrize(
    "content",
    [
        b"",
        MATERIAL[:31],
        MATERIAL + b"\n",  # raw bytes plus a newline is neither form
        base64.b64encode(MATERIAL[:31]),
        base64.b64encode(MATERIAL + b"x"),
        base64.b64encode(MATERIAL)[:-1],  # bad padding
        base64.b64encode(MATERIAL)[:20] + b"\n" + base64.b64encode(MATERIAL)[20:],
        base64.urlsafe_b64encode(b"\xff" * 32),  # not the standard alphabet
        "é".encode() * 22,
    ],
)
def test_parse_kek_refuses_other_content_without_echoing_it(content: bytes) -> None:
    with pytest.raises(KeyFileError) as info:
        parse_kek(content, "/etc/hie-edge/kek")
    message = str(info.value)
    assert "/etc/hie-edge/kek" in message
    assert f"{len(content)} bytes" in message
    assert base64.b64encode(MATERIAL).decode()[:12] not in message
    assert info.value.fault == "config"


# --- KEK files -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o400, 0o600])
def test_read_kek_file_accepts_owner_only_modes(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "kek", base64.b64encode(MATERIAL) + b"\n", mode)
    assert read_kek_file(path).kek_id == Kek(MATERIAL).kek_id


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (0o440, "readable"),
        (0o444, "readable"),
        (0o404, "readable"),
        (0o644, "readable"),
        (0o620, "writable"),
        (0o402, "writable"),
        (0o410, "executable"),
    ],
)
def test_read_kek_file_refuses_group_or_other_access(tmp_path: Path, mode: int, what: str) -> None:
    path = write(tmp_path / "kek", MATERIAL, mode)
    with pytest.raises(KeyFileError) as info:
        read_kek_file(path)
    message = str(info.value)
    assert str(path) in message
    assert f"mode {mode:04o}" in message
    assert f"{what} by group/others" in message
    assert info.value.path == path
    assert info.value.fault == "config"


def test_read_kek_file_missing(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not found"):
        read_kek_file(tmp_path / "nope")


def test_read_kek_file_refuses_directory_and_fifo(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="not a regular file"):
        read_kek_file(tmp_path / "d")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(KeyFileError, match="not a regular file"):  # and does not block
        read_kek_file(fifo)


def test_read_kek_file_refuses_huge_file(tmp_path: Path) -> None:
    path = write(tmp_path / "kek", b"A" * 10_000, 0o400)
    with pytest.raises(KeyFileError, match="larger than"):
        read_kek_file(path)


def test_read_kek_file_wrong_length(tmp_path: Path) -> None:
    path = write(tmp_path / "kek", MATERIAL[:16], 0o400)
    with pytest.raises(KeyFileError, match="16 bytes: expected 32"):
        read_kek_file(path)


# --- credential precedence -------------------------------------------------------------


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    return write(keys / "kek", base64.b64encode(MATERIAL) + b"\n", 0o400)


def test_credential_takes_precedence(
    tmp_path: Path, kek_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    other = os.urandom(32)
    # systemd owns the credential's permissions: its mode is not checked.
    write(creds / "kek", other, 0o440)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    kek, source = load_current_kek(kek_file)
    assert kek.kek_id == Kek(other).kek_id
    assert source == creds / "kek"
    assert load_keyring(kek_file).current.kek_id == Kek(other).kek_id
    assert load_current_kek(None)[0].kek_id == Kek(other).kek_id


def test_credential_directory_without_kek_falls_back_to_file(
    tmp_path: Path, kek_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "empty"))
    kek, source = load_current_kek(kek_file)
    assert (kek.kek_id, source) == (Kek(MATERIAL).kek_id, kek_file)


def test_file_used_without_credentials(kek_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert load_current_kek(kek_file)[0].kek_id == Kek(MATERIAL).kek_id
    assert load_current_kek(kek_file, environ={})[0].kek_id == Kek(MATERIAL).kek_id


def test_bad_credential_is_an_error_not_a_fallback(tmp_path: Path, kek_file: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write(creds / "kek", b"short", 0o400)
    with pytest.raises(KeyFileError, match="creds/kek"):
        load_current_kek(kek_file, environ={"CREDENTIALS_DIRECTORY": str(creds)})


def test_no_kek_anywhere() -> None:
    with pytest.raises(KeyFileError, match=r"\[keys\]\.kek_file"):
        load_current_kek(None, environ={})


# --- writing KEK files -----------------------------------------------------------------


def test_generate_kek_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "keys" / "kek"
    kek = generate_kek_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    content = path.read_bytes()
    assert content.endswith(b"\n") and content.count(b"\n") == 1
    assert read_kek_file(path).kek_id == kek.kek_id
    assert sorted(os.listdir(path.parent)) == ["kek"]  # no temporary file left behind


def test_generate_never_overwrites(kek_file: Path) -> None:
    before = kek_file.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        generate_kek_file(kek_file)
    assert kek_file.read_bytes() == before
    assert sorted(os.listdir(kek_file.parent)) == ["kek"]


def test_write_with_replace(kek_file: Path) -> None:
    new = Kek.generate()
    write_kek_file(kek_file, new, replace=True)
    assert read_kek_file(kek_file).kek_id == new.kek_id
    assert stat.S_IMODE(kek_file.stat().st_mode) == 0o400


# --- data keys and wrapping ------------------------------------------------------------


def test_data_key_validation() -> None:
    with pytest.raises(CryptoError, match="32 lowercase hex"):
        DataKey("ABC", KeyPurpose.PATIENT, "o", MATERIAL)
    with pytest.raises(CryptoError, match="owner"):
        DataKey("0" * 32, KeyPurpose.PATIENT, "", MATERIAL)
    with pytest.raises(CryptoError, match="32 bytes"):
        DataKey("0" * 32, KeyPurpose.PATIENT, "o", MATERIAL[:16])


def test_wrap_unwrap_round_trip() -> None:
    ring = Keyring(Kek.generate())
    key = make_key()
    wrapped = ring.wrap(key)
    assert len(wrapped.blob) == WRAPPED_LEN
    assert wrapped.kek_id == ring.current.kek_id
    assert key._material not in wrapped.blob
    assert (wrapped.key_id, wrapped.purpose, wrapped.owner) == (key.key_id, key.purpose, "pk-1")
    unwrapped = ring.unwrap(wrapped)
    assert (unwrapped.key_id, unwrapped.purpose, unwrapped.owner) == (
        key.key_id,
        key.purpose,
        "pk-1",
    )
    ctx = AAD("resources", "Patient/1", 1)
    assert open_(unwrapped, seal(key, b"data", ctx), ctx) == b"data"


def test_wrapped_key_from_stored_columns() -> None:
    ring = Keyring(Kek.generate())
    wrapped = ring.wrap(make_key(KeyPurpose.INBOX, "inbox"))
    stored = WrappedKey(wrapped.key_id, "inbox", "inbox", bytes(wrapped.blob))  # type: ignore[arg-type]
    assert stored.purpose is KeyPurpose.INBOX
    assert ring.unwrap(stored).purpose is KeyPurpose.INBOX
    assert "inbox" in repr(stored) and wrapped.blob.hex() not in repr(stored)


@pytest.mark.parametrize("field", ["key_id", "purpose", "owner"])
def test_unwrap_refuses_altered_columns(field: str) -> None:
    ring = Keyring(Kek.generate())
    wrapped = ring.wrap(make_key())
    changes = {"key_id": "f" * 32, "purpose": KeyPurpose.INBOX, "owner": "pk-2"}
    values = {
        "key_id": wrapped.key_id,
        "purpose": wrapped.purpose,
        "owner": wrapped.owner,
        "blob": wrapped.blob,
    }
    values[field] = changes[field]
    with pytest.raises(IntegrityError, match="does not open") as info:
        ring.unwrap(WrappedKey(**values))  # type: ignore[arg-type]
    assert info.value.key_id == values["key_id"]


def test_unwrap_detects_every_flipped_byte() -> None:
    ring = Keyring(Kek.generate())
    wrapped = ring.wrap(make_key())
    for i in range(len(wrapped.blob)):
        blob = bytearray(wrapped.blob)
        blob[i] ^= 0x01
        forged = WrappedKey(wrapped.key_id, wrapped.purpose, wrapped.owner, bytes(blob))
        with pytest.raises((IntegrityError, UnknownKeyError)):
            ring.unwrap(forged)


def test_unwrap_malformed_blob() -> None:
    ring = Keyring(Kek.generate())
    wrapped = ring.wrap(make_key())
    short = WrappedKey(wrapped.key_id, wrapped.purpose, wrapped.owner, wrapped.blob[:-1])
    with pytest.raises(IntegrityError, match="malformed"):
        ring.unwrap(short)


def test_unknown_kek() -> None:
    wrapped = Keyring(Kek.generate()).wrap(make_key())
    other = Keyring(Kek.generate())
    with pytest.raises(UnknownKeyError) as info:
        other.unwrap(wrapped)
    assert info.value.key_id == wrapped.kek_id
    assert info.value.fault == "config"
    assert f"kek.{wrapped.kek_id}" in str(info.value)


# --- rotation --------------------------------------------------------------------------


def test_rotation_rewraps_and_old_wraps_still_open_until_rewrapped() -> None:
    old_kek, new_kek = Kek.generate(), Kek.generate()
    ring = Keyring(old_kek)
    keys = [make_key(owner=f"pk-{i}") for i in range(5)]
    stored = [ring.wrap(k) for k in keys]

    rotated = ring.rotated(new_kek)
    assert rotated.current is new_kek
    assert rotated.kek_ids == (new_kek.kek_id, old_kek.kek_id)
    assert all(rotated.needs_rewrap(w) for w in stored)
    # Not yet re-wrapped: still readable through the old KEK.
    assert [rotated.unwrap(w).key_id for w in stored] == [k.key_id for k in keys]

    rewrapped = [rotated.rewrap(w) for w in stored]
    assert all(w.kek_id == new_kek.kek_id for w in rewrapped)
    assert not any(rotated.needs_rewrap(w) for w in rewrapped)
    assert rotated.rewrap(rewrapped[0]) is rewrapped[0]

    retired = rotated.without(old_kek.kek_id)
    ctx = AAD("t", "r", 0)
    for key, w in zip(keys, rewrapped, strict=True):
        assert open_(retired.unwrap(w), seal(key, b"x", ctx), ctx) == b"x"
    with pytest.raises(UnknownKeyError):
        retired.unwrap(stored[0])
    with pytest.raises(CryptoError, match="current KEK"):
        retired.without(new_kek.kek_id)


def test_rotate_kek_file_on_disk(kek_file: Path) -> None:
    keys_dir = kek_file.parent
    ring = load_keyring(kek_file, environ={})
    wrapped = ring.wrap(make_key())

    new, old = rotate_kek_file(kek_file)
    assert old.kek_id == Kek(MATERIAL).kek_id
    assert read_kek_file(kek_file).kek_id == new.kek_id
    archived = archive_path(keys_dir, old.kek_id)
    assert stat.S_IMODE(archived.stat().st_mode) == 0o400
    assert read_kek_file(archived).kek_id == old.kek_id

    reloaded = load_keyring(kek_file, environ={})
    assert reloaded.current.kek_id == new.kek_id
    assert set(reloaded.kek_ids) == {new.kek_id, old.kek_id}
    rewrapped = reloaded.rewrap(wrapped)

    newer, _ = rotate_kek_file(kek_file)
    assert len(load_keyring(kek_file, environ={}).kek_ids) == 3

    retire_kek(keys_dir, old.kek_id)
    after = load_keyring(kek_file, environ={})
    assert set(after.kek_ids) == {newer.kek_id, new.kek_id}
    assert after.unwrap(rewrapped).key_id == wrapped.key_id
    with pytest.raises(UnknownKeyError):
        after.unwrap(wrapped)
    with pytest.raises(UnknownKeyError):
        retire_kek(keys_dir, old.kek_id)


def test_archive_is_idempotent_and_checked(kek_file: Path) -> None:
    kek = Kek(MATERIAL)
    path = archive_kek(kek_file.parent, kek)
    assert archive_kek(kek_file.parent, kek) == path
    # A file named for one KEK but holding another is refused.
    named = Kek.generate()
    write(archive_path(kek_file.parent, named.kek_id), MATERIAL, 0o400)
    with pytest.raises(KeyFileError, match=f"holds KEK {kek.kek_id}, not {named.kek_id}"):
        load_keyring(kek_file, environ={})
    with pytest.raises(KeyFileError, match=f"does not hold KEK {named.kek_id}"):
        archive_kek(kek_file.parent, named)


def test_archived_kek_with_loose_mode_is_refused(kek_file: Path) -> None:
    old = Kek.generate()
    path = archive_kek(kek_file.parent, old)
    path.chmod(0o444)
    with pytest.raises(KeyFileError, match="readable by group/others"):
        load_keyring(kek_file, environ={})


def test_unrelated_files_in_keys_dir_are_ignored(kek_file: Path) -> None:
    write(kek_file.parent / "kek.bak", b"junk", 0o644)
    write(kek_file.parent / ".kek.tmp-0123456789abcdef", b"junk", 0o400)
    assert load_keyring(kek_file, environ={}).kek_ids == (Kek(MATERIAL).kek_id,)


def test_new_key_ids_sort_in_creation_order_and_stay_unique(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The id is a version 7 UUID: it starts with the creation time (ms), so a new key's
    # primary-key entry is an append; keys made within one millisecond still differ.
    clock = iter([1_700_000_000_000_000_000 + n * 1_000_000 for n in (0, 0, 1, 250, 99_999)])
    monkeypatch.setattr("edge.uuid7.time.time_ns", lambda: next(clock))
    ids = [DataKey.generate(KeyPurpose.PATIENT, f"owner-{n}").key_id for n in range(5)]
    assert len(set(ids)) == 5
    assert ids[0][:12] == ids[1][:12] == format(1_700_000_000_000, "012x")
    assert ids[2:] == sorted(ids[2:]) and max(ids[:2]) < ids[2]
    assert all(len(key_id) == 32 and key_id[12] == "7" for key_id in ids)  # version 7
