"""Checkpoints as C2SP signed notes."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.checkpoint import (
    Checkpoint,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    open_note,
    sign_checkpoint,
)
from ledger_client.errors import CheckpointError

# The signed-note example of golang.org/x/mod/sumdb/note (note.go doc and note_test.go):
# signer key, verifier key, text and the published note. Ed25519 is deterministic, so our
# signer must reproduce the note byte for byte.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n")
GO_NOTE = GO_TEXT + "\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuG" \
    "UgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"


def go_signer() -> NoteSigner:
    seed = base64.b64decode(GO_SKEY.split("+", 4)[4])[1:]
    return NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(seed))


def test_reproduces_the_go_signed_note_vector() -> None:
    signer = go_signer()
    assert signer.verifier.vkey() == GO_VKEY
    assert GO_TEXT + "\n" + signer.signature_line(GO_TEXT) == GO_NOTE
    assert open_note(GO_NOTE, NoteVerifier.from_vkey(GO_VKEY)) == GO_TEXT
    with pytest.raises(CheckpointError):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), NoteVerifier.from_vkey(GO_VKEY))


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner("hie-edge/general-hospital", Ed25519PrivateKey.generate())


def test_checkpoint_round_trip(signer: NoteSigner) -> None:
    cp = Checkpoint("general-hospital", 1024, bytes(range(32)), 1_718_000_000_123)
    signed = sign_checkpoint(cp, signer)
    lines = signed.note.split("\n")
    assert lines[:4] == ["hie-edge/general-hospital", "1024",
                         base64.b64encode(bytes(range(32))).decode(), "timestamp 1718000000123"]
    assert lines[4] == "" and lines[5].startswith("\u2014 hie-edge/general-hospital ")
    assert open_checkpoint(signed.note, signer.verifier) == cp
    assert open_checkpoint(signed.note, NoteVerifier.from_vkey(signer.verifier.vkey())) == cp


def test_tampered_or_foreign_checkpoints_are_refused(signer: NoteSigner) -> None:
    cp = Checkpoint("general-hospital", 7, bytes(32), 1)
    note = sign_checkpoint(cp, signer).note
    with pytest.raises(CheckpointError):
        open_checkpoint(note.replace("\n7\n", "\n8\n"), signer.verifier)
    other = NoteSigner("hie-edge/general-hospital", Ed25519PrivateKey.generate())
    with pytest.raises(CheckpointError, match="not signed by the expected key"):
        open_checkpoint(note, other.verifier)
    # A signature by an unknown key is ignored, as long as the known key signed too.
    text = cp.note_text()
    both = text + "\n" + other.signature_line(text).replace("general-hospital", "x") \
        + signer.signature_line(text)
    assert open_checkpoint(both, signer.verifier) == cp
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint("another", 7, bytes(32), 1), signer)


@pytest.mark.parametrize("text", [
    "hie-edge/a\n07\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntimestamp 1\n",
    "hie-edge/a\n7\nAAAA\ntimestamp 1\n",
    "hie-edge/a\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    "other/a\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntimestamp 1\n",
    "hie-edge/a\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntimestamp 1",
])
def test_malformed_checkpoint_text(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.from_text(text)


def test_signer_from_pem_and_repr_hides_the_key(tmp_path: pytest.TempPathFactory) -> None:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    path = tmp_path / "ledger.pem"  # type: ignore[operator]
    path.write_bytes(pem)
    signer = NoteSigner.for_facility("general-hospital", path)
    assert signer.name == "hie-edge/general-hospital"
    assert "PRIVATE" not in repr(signer) and pem.decode() not in repr(signer)
    with pytest.raises(CheckpointError):
        NoteSigner.from_pem("x", b"not a key")


def test_vkey_whose_base64_contains_plus() -> None:
    seed = next(bytes([i]) * 32 for i in range(256)
                if "+" in NoteSigner("n", Ed25519PrivateKey.from_private_bytes(
                    bytes([i]) * 32)).verifier.vkey().split("+", 2)[2])
    signer = NoteSigner("n", Ed25519PrivateKey.from_private_bytes(seed))
    assert NoteVerifier.from_vkey(signer.verifier.vkey()).key_id == signer.verifier.key_id
