from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ledger_client.checkpoint import NoteSigner, origin_for
from ledger_client.log import MerkleLog

from .ledger_support import FACILITY


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
