"""The one small interface every adapter implements (design.md, "examples to follow" 3).

An adapter moves bytes between the outside and a ``deliver`` callback; it holds no business
logic. The daemon picks adapters by name from the config and imports them only when used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a block of bytes came from: PHI-free, safe to log."""

    listener: str
    peer: str  # "address:port", "tty:/dev/ttyUSB0", ...
    tls_subject: str = ""


@dataclass(frozen=True, slots=True)
class Block:
    """One framed unit of input. ``dropped_bytes`` > 0 means the block broke the size limit
    and its bytes were discarded as they came (``payload`` is then empty)."""

    payload: bytes
    origin: Origin
    dropped_bytes: int = 0

    def __repr__(self) -> str:
        return f"Block(origin={self.origin!r}, size={len(self.payload) or self.dropped_bytes})"


# Takes one block; returns the response payload, or None when nothing is to be sent back.
Deliver = Callable[[Block], Awaitable[bytes | None]]
# Called once, when the adapter is accepting: with what it is bound to (host:port, a device).
Ready = Callable[[list[str]], None]


class Adapter(Protocol):
    name: str

    async def run(self, deliver: Deliver, ready: Ready) -> None:
        """Serve until :meth:`aclose` is called (or the task is cancelled)."""

    async def aclose(self, timeout: float) -> None:
        """Stop accepting, let in-flight blocks finish for up to ``timeout`` s, then cut."""

    def describe(self) -> dict[str, object]:
        """PHI-free state for /status (bound address, connections, ...)."""


def format_address(sockname: Any) -> str:
    """``host:port`` (``[v6]:port``) of a socket address tuple."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
