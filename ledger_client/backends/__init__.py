"""Ledger backends, chosen by name from config and imported only when configured."""

from __future__ import annotations

from typing import Any

from ledger_client.backends.base import AnchoredCheckpoint, AnchorRef, LedgerBackend
from ledger_client.errors import LedgerError

__all__ = ["AnchorRef", "AnchoredCheckpoint", "LedgerBackend", "open_backend"]

BACKENDS = ("local", "evm")


def open_backend(name: str, **options: Any) -> LedgerBackend:
    """The backend called ``name`` built from its options (see each backend's constructor).

    ``local``: ``db`` (sqlite3 path or connection), ``notes_file``.
    ``evm``: see ``ledger_client.backends.evm.EvmBackend``; needs web3 installed.
    """
    if name == "local":
        from ledger_client.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "evm":
        from ledger_client.backends.evm import EvmBackend

        return EvmBackend(**options)
    raise LedgerError(f"unknown ledger backend {name!r} (known: {', '.join(BACKENDS)})")
