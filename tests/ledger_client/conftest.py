from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client import merkle
from ledger_client.checkpoint import NoteSigner, origin_for
from ledger_client.log import MerkleLog

FACILITY = "general-hospital"


def make_leaves(n: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(start, start + n)]


@pytest.fixture
def signer() -> NoteSigner:
    return NoteSigner(origin_for(FACILITY), Ed25519PrivateKey.generate())


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edge.db"


@pytest.fixture
def mlog(db_path: Path) -> Iterator[MerkleLog]:
    lg = MerkleLog.open(db_path)
    yield lg
    lg.close()
