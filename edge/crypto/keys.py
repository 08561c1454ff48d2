"""The key hierarchy: the key-encryption key (KEK), data keys, and their wrapping.

Hierarchy
---------
- **KEK** (32 random bytes). Never encrypts data; it only wraps data keys. Identified by its
  *KEK id*: the first 8 bytes of HMAC-SHA256(KEK, ``"hie-edge/kek-id/v1"``), as 16 hex digits.
  The id is derived from the key, so a KEK needs no metadata (a systemd credential or a bare
  file is enough), a wrapped key names the KEK it needs, a KEK file holding the wrong key is
  caught, and a KEK rebuilt from Shamir shares can be checked. A 64-bit check value of a 256-bit
  random key does not help an attacker.
- **Data keys** (32 random bytes each, AES-256-GCM), with a random 16-byte *key id* (32 hex
  digits), a *purpose* (:class:`KeyPurpose`) and an *owner*: the patient key (a blind index,
  see :mod:`edge.crypto.blind_index`) for ``patient`` keys, a free label such as ``"inbox"`` for
  the others. The ``index`` key is a data key used only as the HMAC key of the blind indexes,
  never for encryption.

Wrapping (:class:`Keyring`)
---------------------------
A data key is stored only wrapped: AES-256-GCM under the KEK, with a random 96-bit nonce and an
AAD that binds the key id, purpose and owner. Layout of ``WrappedKey.blob`` (69 bytes)::

    0x01 | KEK id (8) | nonce (12) | AES-GCM(KEK, data key) (32) | tag (16)

AES-GCM rather than AES key wrap (RFC 3394/5649): key wrap has no associated data, so binding a
key to its owner would need a second mechanism, and a swapped ``owner`` column (patient A's key
reassigned to patient B) would go unnoticed. The nonce-reuse limit of GCM (2^32 random nonces
per key, NIST SP 800-38D section 8.3) is far away: a KEK wraps one blob per data key, plus one
per key on each rotation.

Key files and the keys directory
--------------------------------
The current KEK comes from the systemd credential ``kek`` when ``$CREDENTIALS_DIRECTORY/kek``
exists (``LoadCredential=``/``LoadCredentialEncrypted=``; systemd makes it readable by the
service only, so its mode is not checked), else from ``[keys].kek_file``. Older KEK versions,
which wrapped keys may still need, live beside the KEK file::

    <keys dir>/kek                 the current KEK (file mode 0400 or 0600)
    <keys dir>/kek.<KEK id>        an earlier KEK, kept until no wrapped key needs it

A KEK file is refused when group or others have any access to it (mode & 0o077). Its content is
either exactly 32 raw bytes, or one line of standard base64 (RFC 4648 section 4, with padding)
that decodes to 32 bytes, surrounding whitespace allowed: ``openssl rand -base64 32`` makes one.
:func:`generate_kek_file` writes the base64 form with mode 0400 and never overwrites a KEK.

Rotation (file-held KEK): :func:`rotate_kek_file` copies the current KEK to ``kek.<id>``, then
atomically replaces ``kek`` with a new one; the daemon swaps in ``keyring.rotated(new)`` (or
reloads with :func:`load_keyring`) and re-wraps stored keys with :meth:`Keyring.rewrap` while it
runs; when none needs the old KEK, :func:`retire_kek` deletes its file. A crash at any step
leaves every needed KEK on disk. With a KEK from a systemd credential the daemon cannot replace
the credential: the operator installs a new credential and archives the old one as
``kek.<id>`` (:func:`archive_kek`). Shamir shares of an old KEK do not recover the new one:
split again after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import stat
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge.crypto.errors import CryptoError, IntegrityError, KeyFileError, UnknownKeyError
from edge.uuid7 import uuid7

KEK_LEN = 32
DATA_KEY_LEN = 32
KEY_ID_LEN = 16  # bytes; 32 hex digits
KEK_ID_LEN = 8  # bytes; 16 hex digits
NONCE_LEN = 12

KEK_FILENAME = "kek"
CREDENTIAL_NAME = "kek"
ARCHIVE_PREFIX = "kek."

WRAP_FORMAT_V1 = 0x01
_WRAP_FORMAT_V1_BYTE = bytes([WRAP_FORMAT_V1])
_WRAP_HEADER_LEN = 1 + KEK_ID_LEN
WRAPPED_LEN = _WRAP_HEADER_LEN + NONCE_LEN + DATA_KEY_LEN + 16

_KEK_ID_LABEL = b"hie-edge/kek-id/v1"
_WRAP_AAD_DOMAIN = b"hie-edge/wrap/v1\x00"
_MAX_KEY_FILE = 4096
_U32 = struct.Struct(">I")
_HEX = frozenset("0123456789abcdef")


class KeyPurpose(StrEnum):
    """What a data key protects. Part of the wrapping AAD: a key cannot change purpose."""

    PATIENT = "patient"  # one per patient: resources, history, salts, re-keyed raw messages
    INBOX = "inbox"  # raw messages before the patient is known
    SYSTEM = "system"  # store-wide rows that belong to no patient (audit details, dead letters)
    INDEX = "index"  # HMAC key of the blind indexes; never encrypts


def _check_hex_id(value: str, n_bytes: int, what: str) -> bytes:
    if len(value) != 2 * n_bytes or not _HEX.issuperset(value):
        raise CryptoError(f"{what} must be {2 * n_bytes} lowercase hex digits")
    return bytes.fromhex(value)


class Kek:
    """A key-encryption key. ``repr`` and ``str`` show only the KEK id."""

    __slots__ = ("_aead", "_material", "kek_id", "kek_id_bytes")

    def __init__(self, material: bytes) -> None:
        if len(material) != KEK_LEN:
            raise CryptoError(f"a KEK is {KEK_LEN} bytes, got {len(material)}")
        self._material = bytes(material)
        self._aead = AESGCM(self._material)
        self.kek_id_bytes = hmac.digest(self._material, _KEK_ID_LABEL, "sha256")[:KEK_ID_LEN]
        self.kek_id = self.kek_id_bytes.hex()

    @classmethod
    def generate(cls) -> Kek:
        return cls(secrets.token_bytes(KEK_LEN))

    def to_text(self) -> str:
        """The KEK as the documented text form: one base64 line, newline-terminated. This is
        secret material: write it only to a protected file."""
        return base64.b64encode(self._material).decode("ascii") + "\n"

    def __repr__(self) -> str:
        return f"Kek(kek_id={self.kek_id!r})"

    __str__ = __repr__


class DataKey:
    """A data key (AES-256-GCM, or the HMAC key of the blind indexes for purpose ``index``).
    ``repr`` and ``str`` show only the key id and purpose."""

    __slots__ = ("_aead", "_material", "key_id", "key_id_bytes", "owner", "purpose")

    def __init__(self, key_id: str, purpose: KeyPurpose, owner: str, material: bytes) -> None:
        if len(material) != DATA_KEY_LEN:
            raise CryptoError(f"a data key is {DATA_KEY_LEN} bytes, got {len(material)}")
        if not owner:
            raise CryptoError(f"data key {key_id}: owner must not be empty")
        self.key_id_bytes = _check_hex_id(key_id, KEY_ID_LEN, "a data key id")
        self.key_id = key_id
        self.purpose = KeyPurpose(purpose)
        self.owner = owner
        self._material = bytes(material)
        # One AESGCM object per key, built once: seal/open stay a single call on the hot path.
        self._aead: AESGCM | None = (
            None if self.purpose is KeyPurpose.INDEX else AESGCM(self._material)
        )

    @classmethod
    def generate(cls, purpose: KeyPurpose, owner: str) -> DataKey:
        """A new random key with a new time-ordered key id (a version 7 UUID's 16 bytes:
        :mod:`edge.uuid7` says why; here it makes a new key's entry in ``data_keys``'
        primary-key index an append instead of a write at a random page)."""
        return cls(uuid7().hex, purpose, owner, os.urandom(DATA_KEY_LEN))

    def __repr__(self) -> str:
        return f"DataKey(key_id={self.key_id!r}, purpose={self.purpose.value!r})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class WrappedKey:
    """A data key as stored: its id, purpose and owner in clear (they are columns), the key
    itself in ``blob`` (see the module docstring for the layout). All four are needed to
    unwrap; changing any of them makes unwrapping fail."""

    key_id: str
    purpose: KeyPurpose
    owner: str
    blob: bytes

    def __post_init__(self) -> None:
        # Accept the purpose as read from a TEXT column.
        object.__setattr__(self, "purpose", KeyPurpose(self.purpose))

    @property
    def kek_id(self) -> str:
        """The KEK this key is wrapped under (from the blob's header)."""
        if len(self.blob) != WRAPPED_LEN or self.blob[0] != WRAP_FORMAT_V1:
            raise IntegrityError(
                f"wrapped data key {self.key_id}: malformed blob", key_id=self.key_id
            )
        return self.blob[1:_WRAP_HEADER_LEN].hex()

    def __repr__(self) -> str:
        return f"WrappedKey(key_id={self.key_id!r}, purpose={self.purpose.value!r})"


def _wrap_aad(header: bytes, key_id: str, purpose: str, owner: str) -> bytes:
    parts = [_WRAP_AAD_DOMAIN, header]
    for text in (key_id, purpose, owner):
        raw = text.encode("utf-8")
        parts.append(_U32.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


class Keyring:
    """The current KEK and the earlier KEK versions still needed to unwrap stored keys.

    Immutable: rotation builds a new keyring (:meth:`rotated`), which the daemon swaps in with
    one assignment, so readers never see a half-updated keyring.
    """

    __slots__ = ("_current", "_keks")

    def __init__(self, current: Kek, previous: Iterable[Kek] = ()) -> None:
        self._current = current
        keks = {current.kek_id: current}
        for kek in previous:
            keks.setdefault(kek.kek_id, kek)
        self._keks = keks

    @property
    def current(self) -> Kek:
        return self._current

    @property
    def kek_ids(self) -> tuple[str, ...]:
        """Ids of all KEKs held, the current one first."""
        return tuple(self._keks)

    def kek(self, kek_id: str) -> Kek:
        try:
            return self._keks[kek_id]
        except KeyError:
            raise UnknownKeyError(
                f"KEK {kek_id} is not in the keyring: restore its file as kek.{kek_id} in the "
                "keys directory",
                key_id=kek_id,
            ) from None

    def wrap(self, key: DataKey) -> WrappedKey:
        """Wrap ``key`` under the current KEK."""
        return WrappedKey(key.key_id, key.purpose, key.owner, self.wrap_blob(key))

    def wrap_blob(self, key: DataKey) -> bytes:
        """The ``blob`` of :meth:`wrap` alone (a new key's row, written by its caller)."""
        kek = self._current
        header = _WRAP_FORMAT_V1_BYTE + kek.kek_id_bytes
        nonce = os.urandom(NONCE_LEN)
        aad = _wrap_aad(header, key.key_id, key.purpose.value, key.owner)
        return header + nonce + kek._aead.encrypt(nonce, key._material, aad)

    def unwrap(self, wrapped: WrappedKey) -> DataKey:
        """The data key inside ``wrapped``.

        Raises :class:`UnknownKeyError` when its KEK is not held, :class:`IntegrityError` when
        the blob, key id, purpose or owner were altered (or the blob is not ours).
        """
        kek = self.kek(wrapped.kek_id)  # validates the blob's length and format
        blob = wrapped.blob
        header = blob[:_WRAP_HEADER_LEN]
        nonce = blob[_WRAP_HEADER_LEN : _WRAP_HEADER_LEN + NONCE_LEN]
        aad = _wrap_aad(header, wrapped.key_id, wrapped.purpose.value, wrapped.owner)
        try:
            material = kek._aead.decrypt(nonce, blob[_WRAP_HEADER_LEN + NONCE_LEN :], aad)
        except InvalidTag:
            raise IntegrityError(
                f"wrapped data key {wrapped.key_id} does not open under KEK {kek.kek_id}: the "
                "blob, key id, purpose or owner was altered",
                key_id=wrapped.key_id,
            ) from None
        return DataKey(wrapped.key_id, wrapped.purpose, wrapped.owner, material)

    def needs_rewrap(self, wrapped: WrappedKey) -> bool:
        """Whether ``wrapped`` is under a KEK other than the current one."""
        return wrapped.kek_id != self._current.kek_id

    def rewrap(self, wrapped: WrappedKey) -> WrappedKey:
        """``wrapped`` re-wrapped under the current KEK (authenticated on the way); returned
        unchanged when it already is."""
        if not self.needs_rewrap(wrapped):
            return wrapped
        return self.wrap(self.unwrap(wrapped))

    def rotated(self, new_current: Kek) -> Keyring:
        """A keyring whose current KEK is ``new_current``, keeping every KEK held now."""
        return Keyring(new_current, self._keks.values())

    def without(self, kek_id: str) -> Keyring:
        """A keyring that no longer holds ``kek_id`` (after no wrapped key needs it)."""
        if kek_id == self._current.kek_id:
            raise CryptoError(f"KEK {kek_id} is the current KEK and cannot be retired")
        return Keyring(self._current, (k for i, k in self._keks.items() if i != kek_id))

    def __repr__(self) -> str:
        return f"Keyring(current={self._current.kek_id!r}, kek_ids={list(self._keks)!r})"


# --- key files ---------------------------------------------------------------------------


def parse_kek(data: bytes, path: Path | str) -> Kek:
    """A KEK from a key file's content: 32 raw bytes, or one base64 line of 32 bytes.
    ``path`` is used only in the error message."""
    if len(data) == KEK_LEN:
        return Kek(data)
    text = data.strip()
    problem = (
        f"{len(data)} bytes: expected {KEK_LEN} raw bytes or one base64 line encoding {KEK_LEN} "
        "bytes"
    )
    if not text or any(c in text for c in b" \t\r\n\v\f"):
        raise KeyFileError(path, problem)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(path, problem) from None
    if len(raw) != KEK_LEN:
        raise KeyFileError(path, problem)
    return Kek(raw)


def _access_problem(mode: int) -> str | None:
    loose = mode & 0o077
    if not loose:
        return None
    what = []
    if loose & 0o044:
        what.append("readable")
    if loose & 0o022:
        what.append("writable")
    if loose & 0o011:
        what.append("executable")
    return f"mode {stat.S_IMODE(mode):04o}: {' and '.join(what)} by group/others (chmod 0400 it)"


def read_kek_file(path: Path | str, *, check_mode: bool = True) -> Kek:
    """Read a KEK file. With ``check_mode`` (the default), refuse a file that group or others
    have any access to. Raises :class:`KeyFileError` naming the path and the problem."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the daemon.
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(path, "not found") from None
    except PermissionError:
        raise KeyFileError(path, "permission denied") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot open: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # on the open file: no window between check and read
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(path, "not a regular file")
        if check_mode and (problem := _access_problem(st.st_mode)):
            raise KeyFileError(path, problem)
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, _MAX_KEY_FILE + 1 - size):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_KEY_FILE:
                raise KeyFileError(path, f"larger than {_MAX_KEY_FILE} bytes")
    except OSError as exc:
        raise KeyFileError(path, f"cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    return parse_kek(b"".join(chunks), path)


def credential_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """``$CREDENTIALS_DIRECTORY/kek`` when the variable is set and the file exists."""
    env = os.environ if environ is None else environ
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    candidate = Path(directory) / CREDENTIAL_NAME
    return candidate if os.path.lexists(candidate) else None


def load_current_kek(
    kek_file: Path | str | None, *, environ: Mapping[str, str] | None = None
) -> tuple[Kek, Path]:
    """The current KEK and the path it was read from: the systemd credential when present,
    else ``kek_file`` (mode-checked)."""
    cred = credential_path(environ)
    if cred is not None:
        return read_kek_file(cred, check_mode=False), cred
    if kek_file is None:
        raise KeyFileError(
            "[keys].kek_file", "not configured, and no systemd credential 'kek' is present"
        )
    return read_kek_file(kek_file), Path(kek_file)


def archive_path(keys_dir: Path | str, kek_id: str) -> Path:
    return Path(keys_dir) / f"{ARCHIVE_PREFIX}{kek_id}"


def read_archived_keks(keys_dir: Path | str) -> list[Kek]:
    """Every ``kek.<KEK id>`` file in ``keys_dir`` (mode-checked; each must hold the KEK its
    name says). Files whose suffix is not a KEK id (temporary files) are ignored."""
    directory = Path(keys_dir)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise KeyFileError(directory, f"cannot list: {exc.strerror}") from None
    keks = []
    for name in names:
        suffix = name.removeprefix(ARCHIVE_PREFIX)
        if suffix == name or len(suffix) != 2 * KEK_ID_LEN or not _HEX.issuperset(suffix):
            continue
        kek = read_kek_file(directory / name)
        if kek.kek_id != suffix:
            raise KeyFileError(directory / name, f"holds KEK {kek.kek_id}, not {suffix}")
        keks.append(kek)
    return keks


def load_keyring(
    kek_file: Path | str | None, *, environ: Mapping[str, str] | None = None
) -> Keyring:
    """The keyring: the current KEK (:func:`load_current_kek`) plus the archived versions
    beside ``kek_file``."""
    current, _ = load_current_kek(kek_file, environ=environ)
    previous = read_archived_keks(Path(kek_file).parent) if kek_file is not None else []
    return Keyring(current, previous)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_kek_file(path: Path | str, kek: Kek, *, replace: bool = False) -> None:
    """Write ``kek`` (base64 text form) to ``path`` with mode 0400, atomically: readers see the
    old file or the complete new one, never a partial one. Without ``replace`` an existing file
    is never overwritten (losing a KEK loses every record): :class:`KeyFileError`. The parent
    directory is created with mode 0700 when missing."""
    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o400)
        try:
            try:
                os.write(fd, kek.to_text().encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace:
                os.replace(tmp, path)
            else:
                # link() fails if the target exists, unlike rename(): no race with another init.
                os.link(tmp, path)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        _fsync_dir(path.parent)
    except FileExistsError:
        raise KeyFileError(path, "already exists; refusing to overwrite a KEK") from None
    except OSError as exc:
        raise KeyFileError(path, f"cannot write: {exc.strerror}") from None


def generate_kek_file(path: Path | str) -> Kek:
    """Create a new random KEK at ``path`` (mode 0400; never overwrites). For ``hie-edge init``."""
    kek = Kek.generate()
    write_kek_file(path, kek)
    return kek


def archive_kek(keys_dir: Path | str, kek: Kek) -> Path:
    """Keep ``kek`` as ``kek.<KEK id>`` in ``keys_dir`` (idempotent). Returns the path."""
    target = archive_path(keys_dir, kek.kek_id)
    if os.path.lexists(target):
        if read_kek_file(target).kek_id != kek.kek_id:
            raise KeyFileError(target, f"exists and does not hold KEK {kek.kek_id}")
        return target
    write_kek_file(target, kek)
    return target


def rotate_kek_file(kek_file: Path | str) -> tuple[Kek, Kek]:
    """Make a new current KEK at ``kek_file``; the old one is archived beside it first.
    Returns ``(new, old)``. Stored keys stay wrapped under ``old`` until re-wrapped."""
    kek_file = Path(kek_file)
    old = read_kek_file(kek_file)
    archive_kek(kek_file.parent, old)
    new = Kek.generate()
    write_kek_file(kek_file, new, replace=True)
    return new, old


def retire_kek(keys_dir: Path | str, kek_id: str) -> None:
    """Delete the archived KEK ``kek.<kek_id>``. Call only once no wrapped key needs it
    (``Keyring.needs_rewrap`` false for all): after this, keys still under it are lost."""
    _check_hex_id(kek_id, KEK_ID_LEN, "a KEK id")
    target = archive_path(keys_dir, kek_id)
    try:
        target.unlink()
        _fsync_dir(target.parent)
    except FileNotFoundError:
        raise UnknownKeyError(f"no archived KEK {kek_id}", key_id=kek_id) from None
    except OSError as exc:
        raise KeyFileError(target, f"cannot delete: {exc.strerror}") from None
