"""Shared constants and helpers of the ledger_client tests."""

from __future__ import annotations

from ledger_client import merkle

FACILITY = "general-hospital"


def make_leaves(n: int, start: int = 0) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(start, start + n)]
