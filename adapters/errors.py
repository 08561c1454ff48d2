"""The root of every error raised by the adapters (the edges that touch the outside)."""

from __future__ import annotations

import os

from edge.errors import EdgeError


class AdapterError(EdgeError):
    """Base of all adapter errors (an :class:`~edge.errors.EdgeError`, so the CLI maps their
    fault to an exit status like any other)."""


class BindError(AdapterError):
    """A listener could not bind its address (in use, not local, no permission)."""

    fault = "environment"

    def __init__(self, what: str, address: str, exc: OSError) -> None:
        # asyncio folds the address into strerror; the errno's own text is enough.
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        super().__init__(f"{what}: cannot listen on {address}: {reason}")
