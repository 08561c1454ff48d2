"""Shamir secret sharing of the KEK, for custodians (``hie-edge keys split`` / ``keys recover``).

The arithmetic is ``pyshamir`` (MPL-2.0), a port of HashiCorp Vault's ``shamir`` package:
byte-wise sharing over GF(2^8) with the AES polynomial x^8+x^4+x^3+x+1, random coefficients
from ``secrets``, distinct random non-zero x coordinates, each part ``y bytes | x``. Its field
operations were checked exhaustively against a reference (tests), and shares made here are
checked to lie on polynomials of degree threshold-1.

A share is one line of printable text::

    hiekek1:<KEK id>:<M>of<N>:<BASE32 part>:<check>

- ``KEK id``: which KEK the share rebuilds (16 hex digits, see :mod:`edge.crypto.keys`);
- ``MofN`` (for example ``3of5``): the threshold M and how many shares N were made;
- the part (33 bytes: 32 share bytes and the x coordinate), RFC 4648 base32 without padding;
- ``check``: the first 4 bytes of SHA-256 over the text before it, in hex. A mistyped
  character fails it (except with probability 2^-32).

Parsing ignores whitespace and case, so a share read back from paper may be typed in groups.
After combining, the rebuilt KEK's id must equal the shares' KEK id: too few shares, or a share
from another split of the same KEK, give a different key and are refused, never returned.
Fewer than M shares are refused before combining; with M-1 shares any KEK is equally likely, so
there is nothing to recover.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pyshamir  # type: ignore[import-untyped]

from edge.crypto.errors import ShareError
from edge.crypto.keys import KEK_ID_LEN, KEK_LEN, Kek

SHARE_PREFIX = "hiekek1"
MAX_SHARES = 255  # x coordinates are the non-zero elements of GF(2^8)
_PART_LEN = KEK_LEN + 1
_CHECK_LEN = 4
_KEK_ID_RE = f"[0-9a-f]{{{2 * KEK_ID_LEN}}}"
_CHECK_RE = f"[0-9a-f]{{{2 * _CHECK_LEN}}}"
_SHARE = re.compile(
    rf"(?P<prefix>[a-z0-9]+):(?P<kek_id>{_KEK_ID_RE}):(?P<m>[0-9]{{1,3}})of(?P<n>[0-9]{{1,3}}):"
    rf"(?P<part>[A-Z2-7]+):(?P<check>{_CHECK_RE})"
)


@dataclass(frozen=True, slots=True, repr=False)
class Share:
    """One parsed share. ``repr`` shows no share bytes."""

    kek_id: str
    threshold: int
    count: int
    part: bytes  # 32 y bytes followed by the x coordinate, as pyshamir makes them

    @property
    def x(self) -> int:
        return self.part[-1]

    def to_text(self) -> str:
        body = f"{SHARE_PREFIX}:{self.kek_id}:{self.threshold}of{self.count}:" + base64.b32encode(
            self.part
        ).decode("ascii").rstrip("=")
        return f"{body}:{_check(body)}"

    def __repr__(self) -> str:
        return (
            f"Share(kek_id={self.kek_id!r}, threshold={self.threshold}, count={self.count}, "
            f"x={self.x})"
        )


def _check(body: str) -> str:
    return hashlib.sha256(body.encode("ascii")).digest()[:_CHECK_LEN].hex()


def parse_share(text: str, *, position: int | None = None) -> Share:
    """Parse and verify one share's text. ``position`` (1-based) only labels error messages.
    Raises :class:`ShareError` for a malformed share or a checksum mismatch."""
    label = "share" if position is None else f"share #{position}"
    fields = "".join(text.split()).split(":")
    match = None
    if len(fields) == 5:
        # Canonical case: the base32 part in upper case, everything else in lower case.
        canonical = ":".join(f.upper() if i == 3 else f.lower() for i, f in enumerate(fields))
        match = _SHARE.fullmatch(canonical)
    if match is None:
        raise ShareError(f"{label}: not a share (expected {SHARE_PREFIX}:KEKID:MofN:PART:CHECK)")
    if match["prefix"] != SHARE_PREFIX:
        raise ShareError(f"{label}: unknown share format {match['prefix']!r}")
    body = match.string.rpartition(":")[0]
    if not hmac.compare_digest(_check(body), match["check"]):
        raise ShareError(f"{label}: checksum mismatch: the share was mistyped or damaged")
    part_text = match["part"]
    try:
        part = base64.b32decode(part_text + "=" * (-len(part_text) % 8))
    except (binascii.Error, ValueError):
        raise ShareError(f"{label}: the share part is not base32") from None
    threshold, count = int(match["m"]), int(match["n"])
    if len(part) != _PART_LEN or part[-1] == 0:
        raise ShareError(f"{label}: the share part has the wrong length")
    if not 2 <= threshold <= count <= MAX_SHARES:
        raise ShareError(f"{label}: impossible threshold {threshold} of {count}")
    return Share(match["kek_id"], threshold, count, part)


def split_kek(kek: Kek, *, shares: int, threshold: int) -> list[str]:
    """Split ``kek`` into ``shares`` text shares, any ``threshold`` of which rebuild it.
    2 <= threshold <= shares <= 255 (a threshold of 1 would make every share the KEK itself:
    export the key file instead)."""
    if not 2 <= threshold <= shares <= MAX_SHARES:
        raise ShareError(
            f"need 2 <= threshold <= shares <= {MAX_SHARES}, got threshold {threshold} of {shares}"
        )
    parts = pyshamir.split(kek._material, shares, threshold)
    return [Share(kek.kek_id, threshold, shares, bytes(p)).to_text() for p in parts]


def combine_parts(parts: Iterable[bytes]) -> bytes:
    """The secret interpolated from raw parts, without any check. Lower level than
    :func:`recover_kek`; exposed so tests can show what too few shares yield."""
    return bytes(pyshamir.combine([bytearray(p) for p in parts]))


def recover_kek(shares: Iterable[str]) -> Kek:
    """Rebuild the KEK from at least M shares of one split.

    Raises :class:`ShareError` when a share is malformed or mistyped (naming its position),
    when shares come from different KEKs or splits, when one is given twice, when fewer than
    the threshold are given, or when the rebuilt key's id does not match.
    """
    parsed = [parse_share(text, position=i) for i, text in enumerate(shares, start=1)]
    if not parsed:
        raise ShareError("no shares given")
    first = parsed[0]
    seen: dict[int, int] = {}
    for i, share in enumerate(parsed, start=1):
        if (share.kek_id, share.threshold, share.count) != (
            first.kek_id,
            first.threshold,
            first.count,
        ):
            raise ShareError(
                f"share #{i} belongs to KEK {share.kek_id} ({share.threshold} of "
                f"{share.count}), share #1 to KEK {first.kek_id} ({first.threshold} of "
                f"{first.count})"
            )
        if share.x in seen:
            raise ShareError(f"share #{i} is the same share as #{seen[share.x]}")
        seen[share.x] = i
    if len(parsed) < first.threshold:
        raise ShareError(f"KEK {first.kek_id} needs {first.threshold} shares, got {len(parsed)}")
    kek = Kek(combine_parts(s.part for s in parsed))
    if not hmac.compare_digest(kek.kek_id, first.kek_id):
        raise ShareError(
            f"the shares do not rebuild KEK {first.kek_id}: one is from another split of it, "
            "or was altered"
        )
    return kek
