"""Where the peer API's durable writes go: :class:`AuditSink`.

A request is answered only after its JWT id, AuditEvents and access notice have committed
(:mod:`edge.peer.audit_batch`). In the daemon's own process that is :class:`LocalAuditSink`,
on the daemon's single writer. A peer worker process (:mod:`edge.peer.worker`) has no writer
of its own: its sink sends the same :class:`AuditWrite` to the daemon, which commits it
through a :class:`LocalAuditSink` and answers with the outcome. Either way the service sees
one contract.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from edge.peer.audit_batch import AuditBatcher, AuditWrite, Committer
from edge.store.keys import PatientRef
from edge.store.ledgered import put_prepared
from edge.store.prepared import PreparedRecord
from edge.store.resources import ResourceStore


class AuditSink(Protocol):
    """Commits a peer request's durable record before it is answered."""

    async def write(self, item: AuditWrite) -> int:
        """Commit ``item``; returns the log size after its events. Raises
        :class:`~edge.peer.audit_batch.Replayed` for a JWT id already stored, StorageError
        when the transaction failed."""
        ...

    async def refused(self, events: list[PreparedRecord]) -> int:
        """Commit the AuditEvents of a refused request (no JWT id to keep, no patient: they
        are sealed under the SYSTEM key); returns the log size after them."""
        ...


class LocalAuditSink:
    """Commits through the daemon's group committer; tells ``on_appended`` the log's new size
    (the anchorer's wake-up) and ``on_notice`` that a notice was queued (the outbox's)."""

    def __init__(self, committer: Committer, store: ResourceStore, *,
                 on_appended: Callable[[int], None] = lambda size: None,
                 on_notice: Callable[[], None] = lambda: None) -> None:
        self._committer = committer
        self._store = store
        self._on_appended = on_appended
        self._batcher = AuditBatcher(committer, store, on_notice=on_notice)

    async def write(self, item: AuditWrite) -> int:
        size = await self._batcher.write(item)
        self._on_appended(size)
        return size

    async def refused(self, events: list[PreparedRecord]) -> int:
        return await commit_events(self._committer, self._store, events, None,
                                   self._on_appended)


async def commit_events(committer: Committer, store: ResourceStore,
                        events: list[PreparedRecord], patient: PatientRef | None,
                        on_appended: Callable[[int], None]) -> int:
    """Commit AuditEvents written on their own (not a peer request's batched write: a
    refusal, a local read of the accounting) as one group-commit operation, sealed under
    ``patient``'s key (the SYSTEM key for None), then tell ``on_appended`` the log's new size
    (the anchorer's wake-up); returns it. Raises StorageError when the commit fails."""
    _, size = await committer.run(lambda conn: put_prepared(conn, store, events,
                                                            patient=patient))
    on_appended(size)
    return size
