"""The one small interface every ledger backend implements.

A backend stores anchored checkpoints: it takes a facility's signed checkpoint and answers,
for any facility, the latest anchored tree head and the head anchored at a given size. It
does not know the log; it never sees records. All methods are coroutines; transport trouble
raises ``BackendUnavailable`` (retriable), a refusal ``AnchorRejected`` (not retriable).

Publishing is idempotent: publishing a checkpoint whose size and root are already anchored
returns the existing anchor; the same size with another root raises ``AnchorConflict``.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ledger_client.checkpoint import SignedCheckpoint
from ledger_client.errors import ReceiptError


@dataclass(frozen=True, slots=True)
class AnchorRef:
    """Where a checkpoint was anchored. Fields a backend has no use for are None.

    ``location`` is the local backend's "<notes file name>@<byte offset>".
    """

    backend: str
    tree_size: int
    chain_id: int | None = None
    contract: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> AnchorRef:
        if not isinstance(data, dict):
            raise ReceiptError("anchor must be an object")
        fields = {"backend": str, "tree_size": int, "chain_id": int, "contract": str,
                  "tx_hash": str, "block_number": int, "location": str}
        if set(data) - set(fields) or not {"backend", "tree_size"} <= set(data):
            raise ReceiptError("anchor has unknown or missing fields")
        for key, typ in fields.items():
            value = data.get(key)
            if value is not None and (not isinstance(value, typ) or isinstance(value, bool)):
                raise ReceiptError(f"anchor.{key} has the wrong type")
        return cls(**data)


@dataclass(frozen=True, slots=True)
class AnchoredCheckpoint:
    """A tree head as a backend holds it. ``note`` is the signed checkpoint note when the
    backend keeps it (local); ``timestamp_ms`` is the checkpoint's or the block's time."""

    facility: str
    tree_size: int
    root_hash: bytes
    anchor: AnchorRef
    timestamp_ms: int | None = None
    note: str | None = None


class LedgerBackend(abc.ABC):
    """A place where facilities anchor their checkpoints."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def publish(self, signed: SignedCheckpoint) -> AnchorRef:
        """Anchor a signed checkpoint of this facility's log; idempotent."""

    @abc.abstractmethod
    async def latest(self, facility: str) -> AnchoredCheckpoint | None:
        """The largest anchored tree head of ``facility``, or None."""

    @abc.abstractmethod
    async def get(self, facility: str, tree_size: int) -> AnchoredCheckpoint | None:
        """The tree head of ``facility`` anchored at exactly ``tree_size``, or None."""

    @abc.abstractmethod
    async def reachable(self) -> bool:
        """True when the backend answers now. Never raises."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release connections and files."""
