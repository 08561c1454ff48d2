"""Waiting for whichever comes first: a delay, or a wake-up. The background loops (the
anchorer, the access-notification outbox) sleep between rounds but must start the next at
once when told there is new work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def sleep_or_wake(wake: asyncio.Event, seconds: float,
                        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
    """Return after ``seconds`` (slept by ``sleep``, which tests replace) or as soon as
    ``wake`` is set, whichever is first; ``wake`` is clear again on return. Cancel-safe:
    neither helper task outlives the call."""
    if wake.is_set():
        wake.clear()
        return
    sleeper = asyncio.ensure_future(sleep(seconds))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, waker):
            task.cancel()
        await asyncio.gather(sleeper, waker, return_exceptions=True)
    wake.clear()
