"""One call for the daemon: the log, a backend and the anchorer of one facility.

The daemon passes what its config holds: the state database path, the facility id, the
facility's Ed25519 checkpoint key (PEM file), a backend name and that backend's options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger_client.anchorer import Anchorer, AnchorPolicy
from ledger_client.backends import LedgerBackend, open_backend
from ledger_client.checkpoint import NoteSigner
from ledger_client.log import MerkleLog

NOTES_FILENAME = "checkpoints.notes"


@dataclass
class Ledger:
    """``log`` is the intake's writer (its own connection); ``anchorer`` reads the log
    through a second connection and keeps its outbox there, so it never joins an intake
    transaction. Run ``anchorer.run()`` as a task; call ``aclose()`` after stopping it."""

    log: MerkleLog
    anchorer: Anchorer
    backend: LedgerBackend
    _reader: MerkleLog

    async def aclose(self) -> None:
        self.anchorer.stop()
        await self.backend.aclose()
        self._reader.close()
        self.log.close()


def open_ledger(db_path: str | Path, facility: str, signing_key_file: str | Path, *,
                backend: str = "local", backend_options: dict[str, Any] | None = None,
                policy: AnchorPolicy | None = None) -> Ledger:
    """Open the facility's ledger on the state database at ``db_path``.

    ``local`` defaults its options to this database and ``<db dir>/checkpoints.notes``.
    """
    db_path = Path(db_path)
    options = dict(backend_options or {})
    if backend == "local":
        options.setdefault("db", db_path)
        options.setdefault("notes_file", db_path.parent / NOTES_FILENAME)
    chosen = open_backend(backend, **options)
    writer = MerkleLog.open(db_path)
    reader = MerkleLog.open(db_path)
    signer = NoteSigner.for_facility(facility, signing_key_file)
    anchorer = Anchorer(reader, chosen, signer, facility, policy=policy)
    return Ledger(writer, anchorer, chosen, reader)
