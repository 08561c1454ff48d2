"""Signed checkpoints: C2SP tlog-checkpoint text in a C2SP signed-note, signed with Ed25519.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text::

    hie-edge/general-hospital          <- origin: "hie-edge/" + facility id
    1024                               <- tree size, decimal, no leading zeros
    3q2+7w...=                         <- base64 of the RFC 9162 root hash
    timestamp 1718000000123            <- extension line: Unix time in milliseconds

followed (c2sp.org/signed-note) by a blank line and one line per signature::

    — hie-edge/general-hospital <base64(key ID (4 bytes, big-endian) || Ed25519 signature)>

The key name is the origin (tlog-checkpoint: "SHOULD match the origin line") and the key ID
is SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (signed-note, Ed25519). The
signature covers the note text including its final newline. The timestamp is an extension
line, which tlog-checkpoint allows but does not recommend; we need the anchoring time in the
signed statement, and verifiers that do not know the line ignore it.

A facility publishes its verifier key in the signed-note "vkey" form
``<name>+<hex key ID>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from ledger_client.errors import CheckpointError
from ledger_client.merkle import HASH_SIZE

ORIGIN_PREFIX = "hie-edge/"
SIG_DASH = "\u2014 "  # em dash and a space start every signature line (signed-note)
_ED25519 = b"\x01"  # signed-note signature type byte for Ed25519
_TIMESTAMP = "timestamp "
_MAX_SIGNATURES = 16  # signed-note: verifiers MUST accept at least 16


def origin_for(facility: str) -> str:
    """The checkpoint origin (and key name) of a facility's log."""
    if not facility or any(c.isspace() or c == "+" for c in facility):
        raise CheckpointError("facility id must be non-empty, without spaces or '+'")
    return ORIGIN_PREFIX + facility


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise CheckpointError(f"{what} is not valid base64") from None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A facility's tree head at one size."""

    facility: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int

    @property
    def origin(self) -> str:
        return origin_for(self.facility)

    def note_text(self) -> str:
        """The checkpoint body (tlog-checkpoint), ending in a newline."""
        if self.tree_size < 0 or len(self.root_hash) != HASH_SIZE:
            raise CheckpointError("checkpoint needs a size >= 0 and a 32-byte root")
        return (f"{self.origin}\n{self.tree_size}\n{_b64(self.root_hash)}\n"
                f"{_TIMESTAMP}{self.timestamp_ms}\n")

    @classmethod
    def from_text(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body (no signatures). Refuses anything not in our format."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3 or any(not line for line in lines):
            raise CheckpointError("checkpoint needs origin, size and root lines, none empty")
        origin, size_s, root_s, *ext = lines
        if not origin.startswith(ORIGIN_PREFIX):
            raise CheckpointError("checkpoint origin is not a hie-edge facility log")
        if not size_s.isascii() or not size_s.isdigit() or (size_s != "0" and size_s[0] == "0"):
            raise CheckpointError("checkpoint tree size is not a canonical decimal")
        root = _unb64(root_s, "checkpoint root")
        if len(root) != HASH_SIZE:
            raise CheckpointError("checkpoint root is not 32 bytes")
        stamps = [e[len(_TIMESTAMP):] for e in ext if e.startswith(_TIMESTAMP)]
        if len(stamps) != 1 or not stamps[0].isascii() or not stamps[0].isdigit():
            raise CheckpointError("checkpoint needs exactly one 'timestamp <ms>' line")
        facility = origin[len(ORIGIN_PREFIX):]
        origin_for(facility)  # same rules as when signing
        return cls(facility, int(size_s), root, int(stamps[0]))


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A checkpoint and its complete signed note (what backends store and publish)."""

    checkpoint: Checkpoint
    note: str


def key_id(name: str, public_key: bytes) -> bytes:
    """signed-note key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public_key).digest()[:4]


class NoteVerifier:
    """An Ed25519 signed-note verifier key for one key name."""

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        self.name = name
        self.public_key = public_key
        self.raw = public_key.public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
        self.key_id = key_id(name, self.raw)

    def __repr__(self) -> str:
        return f"NoteVerifier({self.name!r}, key_id={self.key_id.hex()})"

    def vkey(self) -> str:
        """``<name>+<hex key ID>+<base64(0x01 || public key)>``, the form peers configure."""
        return f"{self.name}+{self.key_id.hex()}+{_b64(_ED25519 + self.raw)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        parts = vkey.strip().split("+", 2)  # the base64 key itself may contain '+'
        if len(parts) != 3:
            raise CheckpointError("verifier key is not name+keyid+key")
        name, kid, key = parts
        raw = _unb64(key, "verifier key")
        if len(raw) != 33 or raw[:1] != _ED25519:
            raise CheckpointError("verifier key is not an Ed25519 key")
        verifier = cls(name, Ed25519PublicKey.from_public_bytes(raw[1:]))
        if verifier.key_id.hex() != kid.lower():
            raise CheckpointError("verifier key ID does not match its key")
        return verifier

    def verify(self, text: str, signature: bytes) -> bool:
        try:
            self.public_key.verify(signature, text.encode("utf-8"))
        except InvalidSignature:
            return False
        return True


class NoteSigner:
    """An Ed25519 signed-note signer. Its repr never shows the private key."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = NoteVerifier(name, private_key.public_key())
        self.name = name

    def __repr__(self) -> str:
        return f"NoteSigner({self.name!r}, key_id={self.verifier.key_id.hex()})"

    @classmethod
    def from_pem(cls, name: str, pem: bytes, password: bytes | None = None) -> NoteSigner:
        try:
            key = serialization.load_pem_private_key(pem, password=password)
        except (ValueError, TypeError):
            raise CheckpointError("signing key is not a readable PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise CheckpointError("signing key is not an Ed25519 key")
        return cls(name, key)

    @classmethod
    def for_facility(cls, facility: str, pem_file: str | Path) -> NoteSigner:
        """The signer of a facility's checkpoints, from its Ed25519 PEM key file."""
        return cls.from_pem(origin_for(facility), Path(pem_file).read_bytes())

    def signature_line(self, text: str) -> str:
        sig = self._key.sign(text.encode("utf-8"))
        return f"{SIG_DASH}{self.name} {_b64(self.verifier.key_id + sig)}\n"


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> SignedCheckpoint:
    """Sign ``checkpoint`` as a signed note. The signer's name must be the origin."""
    if signer.name != checkpoint.origin:
        raise CheckpointError("signer name does not match the checkpoint origin")
    text = checkpoint.note_text()
    return SignedCheckpoint(checkpoint, text + "\n" + signer.signature_line(text))


def split_note(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """A signed note's text and its signatures as (key name, key ID, signature)."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("signed note contains control characters")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise CheckpointError("signed note has no signature block")
    text, block = note[:cut + 1], note[cut + 2:]
    sigs: list[tuple[str, bytes, bytes]] = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIG_DASH):
            raise CheckpointError("malformed signature line")
        name, _, b64sig = line[len(SIG_DASH):].partition(" ")
        raw = _unb64(b64sig, "signature")
        if not name or len(raw) < 5:
            raise CheckpointError("malformed signature line")
        sigs.append((name, raw[:4], raw[4:]))
    if len(sigs) > _MAX_SIGNATURES:
        raise CheckpointError("too many signatures")
    return text, sigs


def open_note(note: str, verifier: NoteVerifier) -> str:
    """Verify a signed note with a trusted key and return its text.

    Signatures by unknown keys are ignored (signed-note); a signature by the known key
    that fails, or no signature by it at all, is refused.
    """
    text, sigs = split_note(note)
    known = [s for n, k, s in sigs if n == verifier.name and k == verifier.key_id]
    if not known:
        raise CheckpointError("note is not signed by the expected key")
    if not all(verifier.verify(text, s) for s in known):
        raise CheckpointError("note signature does not verify")
    return text


def open_checkpoint(note: str, verifier: NoteVerifier) -> Checkpoint:
    """Verify a signed checkpoint note with a trusted key and return its checkpoint."""
    checkpoint = Checkpoint.from_text(open_note(note, verifier))
    if checkpoint.origin != verifier.name:
        raise CheckpointError("checkpoint origin does not match the signer")
    return checkpoint
