"""Tamper-evidence for records: an RFC 9162 Merkle log, signed checkpoints anchored to a
ledger backend (``local`` or ``evm``), and receipts a peer can check.

Entry points: ``service.open_ledger`` (the daemon), ``leaf.record_leaf`` (a record version's
leaf), ``receipt.make_receipt`` / ``receipt.check_receipt`` (serve and verify).
"""

from __future__ import annotations
