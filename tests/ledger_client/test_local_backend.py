"""The embedded backend: checkpoints in SQLite and in an append-only notes file."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger_client.backends import open_backend
from ledger_client.backends.local import LocalBackend
from ledger_client.checkpoint import Checkpoint, NoteSigner, open_checkpoint, sign_checkpoint
from ledger_client.errors import AnchorConflict, AnchorRejected, LedgerError

from .ledger_support import FACILITY


def signed(signer: NoteSigner, size: int, root: bytes = b"\x11" * 32):
    return sign_checkpoint(Checkpoint(FACILITY, size, root, 1000 + size), signer)


async def test_publish_get_latest_and_the_notes_file(tmp_path: Path, signer: NoteSigner) -> None:
    backend = open_backend("local", db=tmp_path / "edge.db", notes_file=tmp_path / "cp.notes")
    assert isinstance(backend, LocalBackend)
    assert await backend.latest(FACILITY) is None
    ref5 = await backend.publish(signed(signer, 5))
    ref9 = await backend.publish(signed(signer, 9, b"\x22" * 32))
    assert ref5.backend == "local" and ref5.tree_size == 5 and ref5.location == "cp.notes@0"
    latest = await backend.latest(FACILITY)
    assert latest is not None and latest.tree_size == 9 and latest.root_hash == b"\x22" * 32
    got = await backend.get(FACILITY, 5)
    assert got is not None and got.anchor == ref5 and got.note == signed(signer, 5).note
    assert await backend.get(FACILITY, 6) is None
    assert await backend.latest("another") is None
    # The file holds both notes, each verifying with the facility key, at their offsets.
    data = (tmp_path / "cp.notes").read_bytes()
    offset = int(ref9.location.split("@")[1])  # type: ignore[union-attr]
    first, second = data[:offset].decode(), data[offset:].decode()  # byte offsets
    assert first.endswith("\n\n") and second.endswith("\n\n")  # a blank line after each
    assert [open_checkpoint(n[:-1], signer.verifier).tree_size for n in (first, second)] == [5, 9]
    assert await backend.reachable()
    await backend.aclose()


async def test_idempotent_refuses_conflict_and_shrink(tmp_path: Path, signer: NoteSigner) -> None:
    backend = LocalBackend(tmp_path / "edge.db", tmp_path / "cp.notes")
    ref = await backend.publish(signed(signer, 5))
    assert await backend.publish(signed(signer, 5)) == ref
    with pytest.raises(AnchorConflict):
        await backend.publish(signed(signer, 5, b"\x33" * 32))
    await backend.publish(signed(signer, 8))
    with pytest.raises(AnchorRejected, match="tree-shrank"):
        await backend.publish(signed(signer, 6))
    # Survives a restart.
    await backend.aclose()
    again = LocalBackend(tmp_path / "edge.db", tmp_path / "cp.notes")
    latest = await again.latest(FACILITY)
    assert latest is not None and latest.tree_size == 8
    await again.aclose()


def test_unknown_backend_name() -> None:
    with pytest.raises(LedgerError, match="unknown ledger backend"):
        open_backend("fabric")
