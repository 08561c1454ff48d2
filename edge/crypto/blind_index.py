"""Blind indexes: keyed hashes that let the store find rows by identifier or demographics
without a plaintext identifier, name or birth date in any column.

Each index value is HMAC-SHA256 under the index key (a :class:`~edge.crypto.keys.DataKey` of
purpose ``index``, never used for anything else) over::

    "hie-edge/blind-index/v1" 0x00 | kind | 0x00 | for each field: 32-bit length + UTF-8

The *kind* separates domains: the same text indexed as a family name and as a given name gives
unrelated values, and ``patient-key`` values (the owner of a patient's data key) cannot be
joined with ``identifier`` values. Equality of inputs after normalization is all an index
reveals; lookups normalize the query the same way.

Values are ``bytes`` (for BLOB columns: half the size of hex, and indexable). Search terms
(``identifier``, ``family``, ``given``, ``birthdate``, ``gender``: :meth:`BlindIndexer.term`)
are the HMAC truncated to its first 16 bytes (``TERM_LEN``), as NIST SP 800-107 Rev. 1
section 5.3.3 allows: 128 bits leave an accidental collision among a billion stored values at
about 2^-68 and forging a value without the key at 2^-128, while the index rows, one random
b-tree entry each, take half the space and the pages a commit writes shrink with them (a
search that matched a collision is still refused: reads re-derive the terms from the record).
``patient-key`` values stay the full 32 bytes: they are the owner of each patient's data key,
bound into its wrapping, which only the KEK could redo. ``message`` fingerprints stay 32
bytes too.

Normalization, and why:

- **identifier** ``(system, value)``: surrounding whitespace trimmed, Unicode NFC, case kept.
  FHIR token search matches an Identifier's value exactly: identifiers are case-sensitive, and
  an MRN ``ab12`` is not ``AB12`` in every system. The system is the FHIR ``Identifier.system``
  URI as given (possibly empty when the sender's authority is unknown); mapping v2 assigning
  authorities to URIs happens before indexing.
- **family**, **given**: for matching, names that a person would call the same should collide:
  Unicode NFKD, case folded, combining marks (diacritics) removed, dashes and whitespace turned
  into single spaces, other punctuation and symbols dropped (``O'Brien`` = ``OBRIEN``,
  ``Müller-Lüdenscheidt`` = ``muller ludenscheidt``). Letters without a decomposition (``ø``,
  ``ł``) stay as they are. One call indexes one name: the caller decides whether to index each
  given name separately.
- **birthdate**: a FHIR ``date`` (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``), or a
  :class:`datetime.date`; a partial date indexes as itself, so it does not match a full one.
- **gender**: a FHIR AdministrativeGender code (``male``, ``female``, ``other``, ``unknown``),
  trimmed and lowercased; anything else (such as a v2 ``M``) is refused rather than silently
  indexed under a value nothing will ever look up.
- **patient-key**: the patient's primary identifier, normalized as an identifier, in its own
  domain: the owner of the patient's data key, used by ``erase --patient SYSTEM|VALUE``.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import struct
import unicodedata
from enum import StrEnum

from edge.crypto.errors import CryptoError, IndexInputError
from edge.crypto.keys import DataKey, KeyPurpose

DIGEST_LEN = 32
TERM_LEN = 16  # search terms: the HMAC's first 128 bits (see the module docstring)
_DOMAIN = b"hie-edge/blind-index/v1\x00"
_U32 = struct.Struct(">I")
_FHIR_DATE = re.compile(r"[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
GENDERS = frozenset({"male", "female", "other", "unknown"})


class IndexKind(StrEnum):
    IDENTIFIER = "identifier"
    FAMILY = "family"
    GIVEN = "given"
    BIRTHDATE = "birthdate"
    GENDER = "gender"
    PATIENT_KEY = "patient-key"
    MESSAGE = "message"  # a raw message's bytes: inbox duplicate detection


# What every input of a kind starts with: the domain label, the kind, a separator.
_KIND_PREFIXES = {kind: _DOMAIN + kind.value.encode("ascii") + b"\x00" for kind in IndexKind}


def normalize_identifier(
    system: str, value: str, kind: str = IndexKind.IDENTIFIER
) -> tuple[str, str]:
    """``(system, value)`` trimmed and NFC-normalized, case kept. The value must not be empty."""
    system = unicodedata.normalize("NFC", system.strip())
    value = unicodedata.normalize("NFC", value.strip())
    if not value:
        raise IndexInputError(kind, "identifier value is empty")
    return system, value


def normalize_name(name: str, kind: str = IndexKind.FAMILY) -> str:
    """A name folded for matching (see the module docstring). Must not end up empty."""
    folded = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", name).casefold())
    out = []
    for ch in folded:
        if unicodedata.combining(ch):
            continue
        category = unicodedata.category(ch)
        if ch.isspace() or category == "Pd":
            out.append(" ")
        elif category[0] in "LN":
            out.append(ch)
        # other punctuation, symbols and control characters are dropped
    result = " ".join("".join(out).split())
    if not result:
        raise IndexInputError(kind, "name is empty after normalization")
    return result


def normalize_birthdate(value: datetime.date | str) -> str:
    """A FHIR date string: ``YYYY``, ``YYYY-MM`` or a valid ``YYYY-MM-DD``."""
    kind = IndexKind.BIRTHDATE
    if isinstance(value, datetime.datetime):
        # A dateTime's calendar day depends on a time zone; the normalizer must decide it.
        raise IndexInputError(kind, "a datetime is not a date")
    if isinstance(value, datetime.date):
        return value.isoformat()
    text = value.strip()
    if not _FHIR_DATE.fullmatch(text):
        raise IndexInputError(kind, "not a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    if len(text) == 10:
        try:
            datetime.date.fromisoformat(text)
        except ValueError:
            raise IndexInputError(kind, "not a calendar date") from None
    return text


def normalize_gender(code: str) -> str:
    """A FHIR AdministrativeGender code, lowercased."""
    text = code.strip().lower()
    if text not in GENDERS:
        raise IndexInputError(
            IndexKind.GENDER, "not an AdministrativeGender code (male|female|other|unknown)"
        )
    return text


def parse_identifier_token(token: str) -> tuple[str, str]:
    """Split a FHIR token ``SYSTEM|VALUE`` at its first unescaped ``|`` and undo the search
    escapes ``\\|``, ``\\,``, ``\\$``, ``\\\\`` (FHIR R4 search, "Escaping Search Parameters").
    ``|VALUE`` means an empty system. Raises :class:`IndexInputError` without a ``|``."""
    fields: list[list[str]] = [[]]
    chars = iter(token)
    for ch in chars:
        if ch == "\\":
            fields[-1].append(next(chars, "\\"))
        elif ch == "|" and len(fields) == 1:
            fields.append([])
        else:
            fields[-1].append(ch)
    if len(fields) != 2:
        raise IndexInputError(IndexKind.IDENTIFIER, "expected SYSTEM|VALUE")
    system, value = ("".join(f) for f in fields)
    return system, value


# HMAC (RFC 2104) pads for SHA-256's 64-byte block.
_BLOCK = 64
_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class BlindIndexer:
    """Computes blind index values under one index key. ``repr`` shows only the key id."""

    __slots__ = ("_kinds", "_outer", "key_id")

    def __init__(self, key: DataKey) -> None:
        if key.purpose is not KeyPurpose.INDEX:
            raise CryptoError(
                f"key {key.key_id} has purpose {key.purpose.value}; blind indexes need an index key"
            )
        # HMAC-SHA256 (RFC 2104) with its keyed states computed once: the outer one, and the
        # inner one per kind with the kind's prefix already absorbed. A value then costs two
        # state copies and two short hashes (0.8 µs) instead of a one-shot hmac.digest, which
        # sets the key up again on every call (1.7 µs). The key (32 bytes) is shorter than
        # the block, so it is zero-padded, never hashed first.
        padded = key._material.ljust(_BLOCK, b"\x00")
        inner = hashlib.sha256(padded.translate(_IPAD))
        self._outer = hashlib.sha256(padded.translate(_OPAD))
        self._kinds = {}
        for kind, prefix in _KIND_PREFIXES.items():
            state = inner.copy()
            state.update(prefix)
            self._kinds[kind] = state
        self.key_id = key.key_id

    def _digest(self, kind: IndexKind, fields: tuple[str, ...]) -> bytes:
        """The full HMAC-SHA256 of normalized fields under ``kind``."""
        inner = self._kinds[kind].copy()
        for field in fields:
            raw = field.encode("utf-8")
            inner.update(_U32.pack(len(raw)) + raw)
        return self._finish(inner)

    def _finish(self, inner: hashlib._Hash) -> bytes:
        """HMAC's outer hash over the inner digest (RFC 2104)."""
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def term(self, kind: IndexKind, fields: tuple[str, ...]) -> bytes:
        """The search term (``TERM_LEN`` bytes) of fields already normalized for ``kind``
        (the store prepares them off the writer: :func:`edge.store.prepared.index_terms`).
        Not for ``patient-key`` values, which are full digests (:meth:`patient_key`)."""
        return self._digest(kind, fields)[:TERM_LEN]

    def identifier(self, system: str, value: str) -> bytes:
        return self.term(IndexKind.IDENTIFIER, normalize_identifier(system, value))

    def patient_key(self, system: str, value: str) -> bytes:
        """The full 32-byte value (see the module docstring)."""
        normalized = normalize_identifier(system, value, IndexKind.PATIENT_KEY)
        return self._digest(IndexKind.PATIENT_KEY, normalized)

    def family(self, name: str) -> bytes:
        return self.term(IndexKind.FAMILY, (normalize_name(name, IndexKind.FAMILY),))

    def given(self, name: str) -> bytes:
        return self.term(IndexKind.GIVEN, (normalize_name(name, IndexKind.GIVEN),))

    def birthdate(self, value: datetime.date | str) -> bytes:
        return self.term(IndexKind.BIRTHDATE, (normalize_birthdate(value),))

    def gender(self, code: str) -> bytes:
        return self.term(IndexKind.GENDER, (normalize_gender(code),))

    def fingerprint(self, data: bytes) -> bytes:
        """Keyed hash of raw bytes (inbox duplicate detection): equal bytes, equal digest,
        and nothing to test a guessed message against without the index key."""
        inner = self._kinds[IndexKind.MESSAGE].copy()
        inner.update(data)
        return self._finish(inner)

    def __repr__(self) -> str:
        return f"BlindIndexer(key_id={self.key_id!r})"
