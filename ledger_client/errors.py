"""The root of every error raised by ``ledger_client``, and its subclasses.

Every error says whether retrying the same operation later can succeed (``retriable``):
transport trouble (a chain node down, a timeout) is retriable; a refusal (not a member, a
shrinking tree, a conflicting root) or bad input is not. Messages never contain record
content: they name tree sizes, leaf indexes and error kinds.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of all ledger errors. ``retriable`` is true for transport trouble (node down)."""

    retriable: bool = False


class LogError(LedgerError):
    """A request the Merkle log cannot answer: an index or size outside the log."""


class ProofError(LedgerError):
    """A proof or hash that is malformed (wrong length, wrong count)."""


class CheckpointError(LedgerError):
    """A checkpoint note that does not parse, or whose signature does not verify."""


class ReceiptError(LedgerError):
    """A receipt that does not parse (missing field, bad encoding)."""


class BackendUnavailable(LedgerError):
    """The backend could not be reached or did not answer in time; try again later."""

    retriable = True


class AnchorRejected(LedgerError):
    """The backend refused an anchor (not a member, a shrinking tree size, a bad argument).

    ``reason`` is a short machine-readable kind such as ``"not-member"`` or ``"tree-shrank"``.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"anchor rejected: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


class AnchorConflict(AnchorRejected):
    """A different root is already anchored for the same tree size: the log was forked or
    rewritten. Never retriable; it is evidence an operator must look at."""

    def __init__(self, tree_size: int) -> None:
        super().__init__("root-conflict", f"tree size {tree_size}")
        self.tree_size = tree_size
