"""Sealing stored payloads with AES-256-GCM under a data key.

Ciphertext layout, formats 1 and 2 (45 bytes of overhead)::

    format (1) | key id (16) | nonce (12) | AES-GCM ciphertext (len(plaintext)) | tag (16)

The first byte is the format version: a later format gets a new number and this module keeps
opening the old ones, so stored rows never need rewriting for a format change. The key id says
which data key opens the row (:func:`peek_key_id`), so a store can look it up before opening.

The GCM associated data is the 17-byte header (format, key id) followed by the canonical
encoding of the row's context (:class:`AAD`: table, row id, version). A ciphertext therefore
opens only under its own key, in its own table, at its own row and version: a row copied to
another row, an old version replayed in place of the current one, or a header naming another
key all fail authentication.

Format 2 (``seal(..., bound=value)``) appends one more value to the associated data after the
context: a value stored in clear beside the ciphertext that must not change independently of
it (the store binds a resource version's ledger leaf hash, so a read need not hash the record
again to know the column is the one written with it). The context's encoding is
self-delimiting, so the bound value is simply the rest of the associated data, and the format
byte in the header keeps the two formats' associated data apart. A format-2 blob opens only
with its bound value (:func:`open_` with ``bound=``); :func:`binds` says which blobs cover
one, so a reader still checks the value itself for format-1 rows.

Nonces are 96 random bits from ``os.urandom``. NIST SP 800-38D section 8.3 bounds random-nonce
use to 2^32 encryptions per key; per-patient keys are nowhere near it, and the inbox key should
be replaced (a new inbox data key) long before it (about 4 billion raw messages).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from cryptography.exceptions import InvalidTag

from edge.crypto.errors import CryptoError, IntegrityError
from edge.crypto.keys import KEY_ID_LEN, NONCE_LEN, DataKey

FORMAT_V1 = 0x01
FORMAT_V2 = 0x02  # format 1 with a bound value after the context in the associated data
TAG_LEN = 16
HEADER_LEN = 1 + KEY_ID_LEN
OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN
_BODY = HEADER_LEN + NONCE_LEN  # where the ciphertext starts

_FORMAT_V1_BYTE = bytes([FORMAT_V1])
_FORMAT_V2_BYTE = bytes([FORMAT_V2])
_FORMATS = frozenset({FORMAT_V1, FORMAT_V2})
_AAD_DOMAIN = b"hie-edge/aad/v1\x00"
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# Domain, table length and table of each table seen: the same bytes for every row of a table.
_TABLE_PREFIXES: dict[str, bytes] = {}


class AAD(NamedTuple):
    """The context a ciphertext is bound to. ``table`` is the store's table name, ``row_id``
    the row's stable identity (for example ``"Patient/abc"`` or ``str(rowid)``), ``version``
    the record version (0 when the table has none). The key id is bound separately, from the
    key that seals.

    The encoding is injective: a domain label, then the table (16-bit length + UTF-8), the row
    id (32-bit length + UTF-8) and the version (unsigned 64-bit), all big-endian. Two different
    contexts never encode to the same bytes.
    """

    # A NamedTuple rather than a frozen dataclass: one is made per row sealed or opened, and
    # it costs half as much to build (0.16 µs against 0.3) while staying immutable.

    table: str
    row_id: str
    version: int

    def encode(self) -> bytes:
        prefix = _TABLE_PREFIXES.get(self.table)
        if prefix is None:
            table = self.table.encode("utf-8")
            if len(table) > 0xFFFF:
                raise CryptoError(f"AAD out of range: table {len(table)} bytes (max 65535)")
            prefix = _TABLE_PREFIXES[self.table] = _AAD_DOMAIN + _U16.pack(len(table)) + table
        row = self.row_id.encode("utf-8")
        try:
            return prefix + _U32.pack(len(row)) + row + _U64.pack(self.version)
        except struct.error:
            raise CryptoError("AAD out of range: row id over 4 GiB or version not 0..2^64-1"
                              ) from None

    def describe(self) -> str:
        """For error messages: ``table 'x' row 'y' version n``."""
        return f"table {self.table!r} row {self.row_id!r} version {self.version}"


def seal(key: DataKey, plaintext: bytes, aad: AAD, *, bound: bytes | None = None) -> bytes:
    """Encrypt ``plaintext`` under ``key``, bound to ``aad``. Returns the format-1 blob, or
    with ``bound`` the format-2 blob whose authentication also covers ``bound``."""
    aead = key._aead
    if aead is None:
        raise CryptoError(f"key {key.key_id} has purpose {key.purpose.value}: not for encryption")
    nonce = os.urandom(NONCE_LEN)
    if bound is None:
        header = _FORMAT_V1_BYTE + key.key_id_bytes
        return header + nonce + aead.encrypt(nonce, plaintext, header + aad.encode())
    header = _FORMAT_V2_BYTE + key.key_id_bytes
    return header + nonce + aead.encrypt(nonce, plaintext, header + aad.encode() + bound)


def binds(blob: bytes) -> bool:
    """Whether ``blob``'s format authenticates a bound value (format 2): :func:`open_` then
    verified the ``bound`` it was given. Not authenticated by itself, and needs none: a blob
    whose format byte was changed no longer opens."""
    return blob[:1] == _FORMAT_V2_BYTE


def peek_key_id(blob: bytes, aad: AAD | None = None) -> str:
    """The id of the data key that sealed ``blob``. Not authenticated: use it only to choose
    the key to open with (:func:`open_` then authenticates it). ``aad`` only names the row in
    the error raised for a malformed blob."""
    _check_shape(blob, aad)
    return blob[1:HEADER_LEN].hex()


def _check_shape(blob: bytes, aad: AAD | None) -> None:
    if len(blob) >= OVERHEAD and blob[0] in _FORMATS:
        return
    if len(blob) < OVERHEAD:
        problem = f"{len(blob)} bytes, shorter than any sealed value"
    else:
        problem = f"unknown ciphertext format {blob[0]}"
    if aad is None:
        raise IntegrityError(f"ciphertext: {problem}")
    raise IntegrityError(
        f"{aad.describe()}: {problem}", table=aad.table, row_id=aad.row_id, version=aad.version
    )


def open_(key: DataKey, blob: bytes, aad: AAD, *, bound: bytes | None = None) -> bytes:
    """Decrypt a blob made by :func:`seal` with the same key and AAD (and, for a format-2
    blob, the same ``bound`` value; a format-1 blob does not cover ``bound`` and it is not
    looked at: see :func:`binds`).

    Raises :class:`IntegrityError` (naming table, row and version, never content) when the blob
    is malformed, was sealed under another key, or fails authentication: a flipped byte
    anywhere, a row swapped from elsewhere, an old version replayed, a bound value changed or
    missing. Never returns unverified data.
    """
    aead = key._aead
    if aead is None:
        raise CryptoError(f"key {key.key_id} has purpose {key.purpose.value}: not for encryption")
    if len(blob) < OVERHEAD or blob[0] not in _FORMATS:
        _check_shape(blob, aad)  # raises, naming the problem
    if blob[1:HEADER_LEN] != key.key_id_bytes:
        raise _refused(aad, key, f"sealed under key {blob[1:HEADER_LEN].hex()}, "
                                 f"not {key.key_id}")
    if blob[0] == FORMAT_V1:
        associated = blob[:HEADER_LEN] + aad.encode()
    elif bound is None:
        raise _refused(aad, key, "format-2 ciphertext opened without its bound value")
    else:
        associated = blob[:HEADER_LEN] + aad.encode() + bound
    try:
        return aead.decrypt(blob[HEADER_LEN:_BODY], blob[_BODY:], associated)
    except InvalidTag:
        raise _refused(aad, key, f"ciphertext failed authentication under key {key.key_id} "
                                 "(tampered, swapped or replayed)") from None


def _refused(aad: AAD, key: DataKey, problem: str) -> IntegrityError:
    return IntegrityError(f"{aad.describe()}: {problem}", table=aad.table, row_id=aad.row_id,
                          version=aad.version, key_id=key.key_id)


def reseal(old_key: DataKey, new_key: DataKey, blob: bytes, old_aad: AAD, new_aad: AAD) -> bytes:
    """Open ``blob`` and seal its plaintext under ``new_key``/``new_aad`` (for example a raw
    message moved from the inbox key to the patient's key once the patient is known)."""
    return seal(new_key, open_(old_key, blob, old_aad), new_aad)
