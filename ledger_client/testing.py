"""Fakes shipped with the code, for tests here and in the daemon: prefer them to mocks.

``FakeBackend`` is an in-memory ledger backend that behaves like the real ones (idempotent
publish, refuses shrinking and conflicting roots and non-members) and can be told to fail:
``unreachable`` (every call raises BackendUnavailable), ``hold()`` (publish waits until
``release()``: a slow chain), ``fail_next(exc)``. ``FakeClock`` is an injectable clock whose
``sleep`` advances time instead of waiting.
"""

from __future__ import annotations

import asyncio

from ledger_client.backends.base import AnchoredCheckpoint, AnchorRef, LedgerBackend
from ledger_client.checkpoint import SignedCheckpoint
from ledger_client.errors import (
    AnchorConflict,
    AnchorRejected,
    BackendUnavailable,
    LedgerError,
)


class FakeClock:
    """Wall-clock seconds that only move when told to (``advance``) or when slept on."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


class FakeBackend(LedgerBackend):
    """An in-memory backend with failure injection."""

    name = "fake"

    def __init__(self, members: set[str] | None = None) -> None:
        self.members = members  # None: everyone may anchor
        self.anchors: dict[str, dict[int, AnchoredCheckpoint]] = {}
        self.published: list[SignedCheckpoint] = []  # every accepted publish call
        self.unreachable = False
        self._failures: list[LedgerError] = []
        self._gate: asyncio.Event | None = None
        self.waiting = 0  # publish calls currently held
        self._tx = 0

    def fail_next(self, error: LedgerError, times: int = 1) -> None:
        self._failures.extend([error] * times)

    def hold(self) -> None:
        """Make publish calls wait until ``release()``: a slow backend."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def _check(self) -> None:
        if self.unreachable:
            raise BackendUnavailable("fake backend unreachable")
        if self._failures:
            raise self._failures.pop(0)

    async def publish(self, signed: SignedCheckpoint) -> AnchorRef:
        self._check()
        if self._gate is not None:
            self.waiting += 1
            try:
                await self._gate.wait()
            finally:
                self.waiting -= 1
            self._check()
        cp = signed.checkpoint
        if self.members is not None and cp.facility not in self.members:
            raise AnchorRejected("not-member")
        mine = self.anchors.setdefault(cp.facility, {})
        if cp.tree_size in mine:
            if mine[cp.tree_size].root_hash != cp.root_hash:
                raise AnchorConflict(cp.tree_size)
            return mine[cp.tree_size].anchor
        if mine and max(mine) > cp.tree_size:
            raise AnchorRejected("tree-shrank")
        self._tx += 1
        ref = AnchorRef(backend=self.name, tree_size=cp.tree_size, chain_id=0,
                        contract="fake", tx_hash=f"0x{self._tx:064x}", block_number=self._tx)
        mine[cp.tree_size] = AnchoredCheckpoint(cp.facility, cp.tree_size, cp.root_hash, ref,
                                                cp.timestamp_ms, signed.note)
        self.published.append(signed)
        return ref

    async def latest(self, facility: str) -> AnchoredCheckpoint | None:
        self._check()
        mine = self.anchors.get(facility)
        return mine[max(mine)] if mine else None

    async def get(self, facility: str, tree_size: int) -> AnchoredCheckpoint | None:
        self._check()
        return self.anchors.get(facility, {}).get(tree_size)

    async def reachable(self) -> bool:
        return not self.unreachable
