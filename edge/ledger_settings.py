"""The ledger backend a config names, for the daemon and for ``hie-edge verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge.config import Settings


def backend_options(settings: Settings) -> dict[str, Any]:
    """Options of ``[ledger].backend`` (``local`` defaults to the state database)."""
    evm = settings.ledger.evm
    if settings.ledger.backend == "evm" and evm is not None:
        return {"rpc_url": evm.rpc_url, "contract": evm.contract, "chain_id": evm.chain_id,
                "private_key_file": evm.key_file, "confirmations": evm.confirmations}
    return {}


def local_defaults(db_path: Path) -> dict[str, Any]:
    from ledger_client.service import NOTES_FILENAME

    return {"db": db_path, "notes_file": db_path.parent / NOTES_FILENAME}
